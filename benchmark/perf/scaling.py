"""How the suite's cells scale with workers: cells per second on this machine's local backend
and on a local Dask cluster of 1 and 2 workers (``make perf``; ``python -m benchmark.perf.scaling``).

The grid is the default suite's static cells on CIFAR-10H (T=2 and T=10) for the learners whose
posteriors ship (no fit, no downstream stage: what scales with cells). Each configuration runs
into a fresh folder; the local single-process run is the baseline of the ratios. Writes
``scaling.csv`` and ``scaling.md`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmark.perf.machine import machine_info

#: (label, backend, jobs) of the configurations timed, the first being the baseline.
CONFIGS = (
    ("local, 1 process", "local", 1),
    ("local, 2 processes", "local", 2),
    ("dask, 1 worker", "dask", 1),
    ("dask, 2 workers", "dask", 2),
)
DATASETS = ("cifar10h[temperature=2]", "cifar10h[temperature=10]")
LEARNERS = ("smallcnn", "elr", "truth")


def time_suite(backend: str, jobs: int, out: Path, seeds: str) -> tuple[int, float, float]:
    """(cells, seconds running them, seconds starting and stopping the engine) of the grid run
    once with ``backend`` and ``jobs``: the posteriors are loaded first, untimed."""
    from benchmark.config import parse_seeds
    from benchmark.posteriors.cache import SHIPPED_POSTERIORS
    from benchmark.run import runner
    from benchmark.run.engines import open_engine
    from benchmark.run.suite import expand, source_for

    strategies, _ = expand("strategy")
    grid = [(d, [source_for(name) for name in LEARNERS]) for d in DATASETS]
    started = time.perf_counter()
    with open_engine(backend, workers=jobs) as engine:
        opened = time.perf_counter()
        plan = runner.prepare(
            grid, strategies, parse_seeds(seeds), data_root=None, cache_dir=out / "cache",
            extra_cache_dirs=[SHIPPED_POSTERIORS], progress=False,
        )  # fmt: skip
        plan.configs = [
            c for c in plan.configs if c.source_key not in plan.unavailable and not c.active_every
        ]
        cells_started = time.perf_counter()
        rows = runner.execute(plan, out, jobs=jobs, progress=False, engine=engine)
        seconds = time.perf_counter() - cells_started
        closing = time.perf_counter()
    overhead = (opened - started) + (time.perf_counter() - closing)
    return sum(r["status"] == "ok" for r in rows), seconds, overhead


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf.scaling", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/perf"), help="output folder")
    parser.add_argument("--seeds", default="0-4", help="seeds of the grid (default 0-4)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float | int | str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, backend, jobs in CONFIGS:
            cells, seconds, overhead = time_suite(
                backend, jobs, Path(scratch) / f"{backend}-{jobs}", args.seeds
            )
            rows.append(
                {
                    "configuration": label,
                    "cells": cells,
                    "seconds": round(seconds, 2),
                    "engine_s": round(overhead, 1),
                }
            )
            print(f"[perf_scaling] {label}: {cells} cells in {seconds:.1f} s", file=sys.stderr, flush=True)
    base = float(rows[0]["cells"]) / float(rows[0]["seconds"])
    for r in rows:
        rate = float(r["cells"]) / float(r["seconds"])
        r["cells_per_second"] = round(rate, 2)
        r["vs_local"] = round(rate / base, 2)
    import pandas as pd

    table = pd.DataFrame(rows)
    table.to_csv(args.out / "scaling.csv", index=False)
    info = machine_info()
    lines = [
        "# Scaling of the suite's cells with workers",
        "",
        f"Grid: {', '.join(DATASETS)} × learners {', '.join(LEARNERS)} × every strategy × "
        f"seeds {args.seeds}; "
        "static cells from the shipped posteriors (no fit, no downstream stage, no report). Seconds: "
        "running the cells; engine s: starting and stopping the cluster (once per command). Ratios are "
        "against the local single process measured in the same run.",
        "",
        "| configuration | cells | seconds | cells / s | vs local, 1 process | engine s |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['configuration']} | {r['cells']} | {r['seconds']:.1f} | {r['cells_per_second']:.2f} | "
            f"{r['vs_local']:.2f}× | {r['engine_s']} |"
            for r in rows
        ],
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    (args.out / "scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
