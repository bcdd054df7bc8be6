"""Runs a grid of cells (dataset x learner x strategy x seed) and stores their results.

Each cell is a pure function of its configuration. It writes its own files under
``<out>/cells/`` (the curve first, then the run row, each atomically), so an interrupted or
partly failed benchmark keeps every finished cell and a rerun only does what is missing.
The consolidated long-format tables ``runs.parquet`` / ``runs.csv`` / ``curves.parquet`` are
rebuilt from the cell files at the end. Cells run in parallel through joblib; learner outputs
are computed once per (dataset, learner, seed), before the cells, and shared through the
on-disk cache.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

import benchmark
from benchmark import registry, report
from benchmark.atomic import atomic_path, write_bytes
from benchmark.cache import load_or_fit
from benchmark.dataroot import DataNotFoundError
from benchmark.metrics import DEFAULT_TARGET_ACCURACY, curve_points, run_metrics
from benchmark.plugins import Posteriors, ScoringContext, Strategy, parse_spec
from benchmark.posteriors import load_posteriors_file
from benchmark.simulator import initial_counts, simulate
from benchmark.task import CleaningTask

CELLS = "cells"


@dataclass(frozen=True)
class CellConfig:
    """Everything that determines one run's result.

    ``learner`` is a learner spec, or ``file:<name>`` when posteriors come from a file, in
    which case ``posteriors_sha256`` identifies the file's content.
    """

    dataset: str
    learner: str
    strategy: str
    seed: int
    target: float = DEFAULT_TARGET_ACCURACY
    posteriors_sha256: str = ""
    #: > 0: an active run (paper's Algorithm 1), re-fitting the learner every this many annotations
    active_every: int = 0

    @property
    def hash(self) -> str:
        fields = asdict(self)
        if not self.active_every:  # static cells keep the hashes they had before active runs existed
            del fields["active_every"]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def strategy_label(self) -> str:
        """How tables name the strategy: an active run is told apart from the static one."""
        if self.active_every:
            return f"{self.strategy} (active, re-fit every {self.active_every})"
        return self.strategy

    def row(self) -> dict[str, Any]:
        """The configuration columns of this cell's run row."""
        return {
            "config_hash": self.hash,
            **asdict(self),
            "strategy": self.strategy_label,
            "strategy_spec": self.strategy,
        }


@dataclass(frozen=True)
class Source:
    """Where a cell's posteriors come from: a learner fitted (or cached), or a file."""

    learner: str | None = None
    file: Path | None = None

    @property
    def label(self) -> str:
        if self.file is not None:
            return f"file:{self.file.name}"
        assert self.learner is not None
        return self.learner


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ranges and lists combine."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            first, last = int(lo), int(hi if sep else lo)
            if first < 0 or last < first:
                raise ValueError(part)
            seeds.extend(range(first, last + 1))
    except ValueError as exc:
        raise ValueError(f"cannot read seeds {text!r}: expected e.g. 0-4 or 0,1,2") from exc
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return sorted(set(seeds))


@lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    """Code and package versions recorded with every run (no timestamps: tables stay identical
    across reruns of the same code)."""
    import cleanlab
    import torch

    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    # Only code counts as a local change: results/ is what runs write.
    if _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"):
        commit += "-dirty"
    return {
        "alcbench_version": benchmark.__version__,
        "commit": commit,
        "numpy_version": np.__version__,
        "torch_version": torch.__version__,
        "cleanlab_version": cleanlab.__version__,
    }


def _git(*args: str) -> str:
    """The output of a git command in the project folder, or "" when git cannot tell."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=registry.PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def _task_row(task: CleaningTask) -> dict[str, Any]:
    return {
        "n_samples": task.n_samples,
        "n_classes": task.n_classes,
        "noise_rate": task.noise_rate,
        "budget": task.budget,
        "initially_mislabelled": task.initially_mislabelled,
        # inputs the adapter dropped as unreadable (an explicit dataset option); listed in
        # skipped_inputs.csv
        "skipped_inputs": len(task.info.get("skipped_inputs", [])),
    }


def write_refit_timings(out_dir: Path, configs: Sequence[CellConfig]) -> pd.DataFrame:
    """Writes ``refit_timings.csv``: when each active run re-fitted its learner and the seconds
    it took (wall clock, so kept apart from the result tables)."""
    rows = []
    for config in configs:
        path = out_dir / CELLS / f"{config.hash}.refits.json"
        if config.active_every and path.is_file():
            for i, entry in enumerate(json.loads(path.read_text())):
                rows.append({**config.row(), "refit": i, **entry})
    table = pd.DataFrame(rows)
    if rows:
        write_bytes(out_dir / "refit_timings.csv", table.to_csv(index=False).encode())
    return table


def write_skipped_inputs(out_dir: Path, tasks: dict[str, CleaningTask]) -> pd.DataFrame:
    """Writes ``skipped_inputs.csv``: every input a dataset dropped as unreadable, and why."""
    rows = [
        {"dataset": name, **{k: str(v) for k, v in entry.items()}}
        for name, task in sorted(tasks.items())
        for entry in task.info.get("skipped_inputs", [])
    ]
    table = pd.DataFrame(rows, columns=None if rows else ["dataset", "sample_id", "file", "reason"])
    path = out_dir / "skipped_inputs.csv"
    if rows or path.exists():
        write_bytes(path, table.to_csv(index=False).encode())
    return table


def run_cell(
    config: CellConfig, task: CleaningTask, posteriors: Posteriors, out_dir: Path, posteriors_id: str = ""
) -> dict[str, Any]:
    """Simulates one cell, writes its files and returns its run row. Never raises for a
    problem of the strategy: the row then has status "failed" and the error message."""
    row: dict[str, Any] = {**config.row(), **_task_row(task), "posteriors_id": posteriors_id}
    curve: pd.DataFrame | None = None
    try:
        strategy: Strategy = registry.create("strategy", config.strategy)
        if "stochastic" in strategy.requires and posteriors.stochastic is None:
            row.update(
                status="skipped",
                error=(
                    f"{config.strategy} needs stochastic posteriors (T x N x C); "
                    f"{config.learner} provides none"
                ),
            )
        else:
            ctx = ScoringContext(
                label_counts=initial_counts(task),
                posteriors=posteriors.probs.astype(np.float64),
                stochastic=None
                if posteriors.stochastic is None
                else posteriors.stochastic.astype(np.float64),
                true_dist=task.true_dist if "truth" in strategy.requires else None,
                seed=config.seed,
            )
            refit, timings = _refit_for(config, task) if config.active_every else (None, [])
            traj = simulate(
                task, strategy, ctx, seed=config.seed, refit=refit, refit_every=config.active_every
            )
            row.update(status="ok", error="", **run_metrics(task, traj, target=config.target))
            row.update(n_refits=int(traj.refits.size), refit_at=json.dumps(traj.refits.tolist()))
            if timings:
                # wall-clock cost of the re-fits, apart from the result tables (which stay identical)
                write_bytes(out_dir / CELLS / f"{config.hash}.refits.json", json.dumps(timings).encode())
            x, y = curve_points(traj)
            curve = pd.DataFrame(
                {
                    "config_hash": config.hash,
                    "step": np.arange(x.size, dtype=np.int64),
                    "annotations": x.astype(np.int64),
                    "accuracy": y,
                    "mislabelled_clear": np.r_[traj.initial_clear, traj.mislabelled_clear].astype(np.int64),
                    "mislabelled_ambiguous": np.r_[traj.initial_ambiguous, traj.mislabelled_ambiguous].astype(
                        np.int64
                    ),
                    "sample": np.r_[-1, traj.selected].astype(np.int64),
                }
            )
    except Exception as exc:  # one broken plugin must not take the other cells down
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row.update(provenance())
    cells = out_dir / CELLS
    cells.mkdir(parents=True, exist_ok=True)
    if curve is not None:
        _write_parquet(curve, cells / f"{config.hash}.curve.parquet")
    write_bytes(
        cells / f"{config.hash}.json", json.dumps(row, sort_keys=True, default=_json_default).encode()
    )
    return row


def _refit_for(config: CellConfig, task: CleaningTask) -> tuple[Any, list[dict[str, float]]]:
    """The active loop's re-fit for a cell, and the list it records each re-fit's cost in."""
    if config.learner.startswith("file:"):
        raise ValueError("an active run re-fits a learner; posteriors from a file cannot be re-fitted")
    learner = registry.create("learner", config.learner)
    timings: list[dict[str, float]] = []

    def refit(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        started = time.perf_counter()
        post = learner.refit(task, np.argmax(counts, axis=1), seed=config.seed, progress=False)
        timings.append(
            {"annotations": float(counts.sum() - task.n_samples), "seconds": time.perf_counter() - started}
        )
        stochastic = None if post.stochastic is None else post.stochastic.astype(np.float64)
        return post.probs.astype(np.float64), stochastic

    return refit, timings


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finished_row(out_dir: Path, config: CellConfig) -> dict[str, Any] | None:
    """The stored row of a cell that already finished (ok or skipped), else None."""
    path = out_dir / CELLS / f"{config.hash}.json"
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if row.get("status") == "ok" and not (out_dir / CELLS / f"{config.hash}.curve.parquet").is_file():
        return None
    return row if row.get("status") in ("ok", "skipped") else None


@dataclass
class Plan:
    """The cells to run, with their tasks and posteriors resolved."""

    configs: list[CellConfig]
    tasks: dict[str, CleaningTask]
    posteriors: dict[tuple[str, str, int], Posteriors]
    #: (dataset, learner, seed) -> cache key of the learner output, or sha256 of the file
    posterior_ids: dict[tuple[str, str, int], str]
    unavailable: dict[tuple[str, str, int], tuple[str, str]]  # key -> (status, reason)


def prepare(
    grid: Sequence[tuple[str, Sequence[Source]]],
    strategies: Sequence[str],
    seeds: Sequence[int],
    *,
    data_root: Path | None,
    cache_dir: Path,
    extra_cache_dirs: Sequence[Path] = (),
    refit: bool = False,
    target: float = DEFAULT_TARGET_ACCURACY,
    progress: bool = True,
    active_every: int = 0,
) -> Plan:
    """Loads the tasks and computes (or loads) every posterior the cells need.

    ``grid`` pairs each dataset spec with the posterior sources it is run with; every pair
    is crossed with every strategy and seed. With ``active_every``, each strategy that reads
    the model's posteriors also gets an active cell that re-fits the learner every that many
    annotations.

    A dataset or learner that cannot provide its inputs makes its cells "skipped" (data files
    absent, with the message saying where they were looked for) or "failed" (anything else);
    the rest of the plan goes on.
    """
    plan = Plan(configs=[], tasks={}, posteriors={}, posterior_ids={}, unavailable={})
    for dataset_spec, sources in grid:
        task, dataset_spec, task_problem = _load_task(dataset_spec, data_root)
        if task is not None:
            plan.tasks[dataset_spec] = task
        for source in sources:
            label, sha, fetch, source_problem = _posterior_source(
                source, cache_dir=cache_dir, extra_cache_dirs=extra_cache_dirs, refit=refit, progress=progress
            )
            for seed in seeds:
                key = (dataset_spec, label, seed)
                plan.configs += [CellConfig(dataset_spec, label, s, seed, target, sha) for s in strategies]
                plan.configs += [
                    CellConfig(dataset_spec, label, s, seed, target, sha, active_every)
                    for s in strategies
                    if active_every and registry.get("strategy", parse_spec(s)[0]).uses_model()
                ]
                problem = task_problem or source_problem
                if problem is None:
                    assert task is not None
                    try:
                        plan.posteriors[key], plan.posterior_ids[key] = fetch(task, seed)
                    except DataNotFoundError as exc:
                        problem = ("skipped", f"learner {label}: {exc}")
                    except Exception as exc:
                        problem = ("failed", f"learner {label}: {type(exc).__name__}: {exc}")
                if problem is not None:
                    plan.unavailable[key] = problem
    return plan


Problem = tuple[str, str]  # (status, reason)


def _load_task(spec: str, data_root: Path | None) -> tuple[CleaningTask | None, str, Problem | None]:
    """(task, canonical spec, None), or (None, spec, problem) when it cannot be loaded."""
    try:
        dataset = registry.create("dataset", spec)
        return dataset.load(data_root), dataset.spec, None
    except DataNotFoundError as exc:
        return None, spec, ("skipped", str(exc))
    except Exception as exc:
        return None, spec, ("failed", f"dataset {spec}: {type(exc).__name__}: {exc}")


def _posterior_source(
    source: Source, *, cache_dir: Path, extra_cache_dirs: Sequence[Path], refit: bool, progress: bool
) -> tuple[str, str, Any, Problem | None]:
    """(label, file sha256, fetch(task, seed) -> (posteriors, id), problem) for a source."""
    if source.file is not None:
        path = source.file
        sha = sha256_file(path) if path.is_file() else ""
        loaded: dict[str, Posteriors] = {}

        def from_file(task: CleaningTask, seed: int) -> tuple[Posteriors, str]:
            if task.name not in loaded:  # one file serves every seed
                loaded[task.name] = load_posteriors_file(path, task.n_samples, task.n_classes)
            return loaded[task.name], f"sha256:{sha}"

        return source.label, sha, from_file, None
    try:
        learner = registry.create("learner", source.label)
    except Exception as exc:
        return source.label, "", None, ("failed", f"learner {source.label}: {exc}")

    def from_learner(task: CleaningTask, seed: int) -> tuple[Posteriors, str]:
        return load_or_fit(
            task,
            learner,
            seed,
            cache_dir=cache_dir,
            extra_cache_dirs=extra_cache_dirs,
            refit=refit,
            progress=progress,
        )

    return learner.spec, "", from_learner, None


def execute(
    plan: Plan, out_dir: Path, *, jobs: int = 1, resume: bool = False, progress: bool = True
) -> list[dict[str, Any]]:
    """Runs every cell of the plan and returns their rows.

    With ``resume``, cells already finished in ``out_dir`` (ok or skipped) are read back
    instead of rerun: for picking up an interrupted benchmark, not after changing code.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CELLS).mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    todo: list[CellConfig] = []
    for config in plan.configs:
        key = (config.dataset, config.learner, config.seed)
        done = finished_row(out_dir, config) if resume else None
        if done is not None:
            rows.append(done)
        elif key in plan.unavailable:
            status, reason = plan.unavailable[key]
            rows.append(_unavailable_row(config, plan, status, reason, out_dir))
        else:
            todo.append(config)
    if todo:
        # Tasks travel to worker processes without their image loader (a closure).
        light = {k: replace(t, load_images=None) for k, t in plan.tasks.items()}
        calls = (
            delayed(run_cell)(
                c,
                # an active cell re-fits its learner, which reads the images
                plan.tasks[c.dataset] if c.active_every else light[c.dataset],
                plan.posteriors[key],
                out_dir,
                plan.posterior_ids[key],
            )
            for c in todo
            for key in [(c.dataset, c.learner, c.seed)]
        )
        results: Iterable[dict[str, Any]]
        if jobs == 1:
            results = (fn(*args, **kwargs) for fn, args, kwargs in calls)
        else:
            results = Parallel(n_jobs=jobs, return_as="generator_unordered")(calls)
        for row in tqdm(results, total=len(todo), desc="cells", unit="cell", disable=not progress):
            rows.append(row)
    return rows


def _unavailable_row(
    config: CellConfig, plan: Plan, status: str, reason: str, out_dir: Path
) -> dict[str, Any]:
    row: dict[str, Any] = {**config.row(), "status": status, "error": reason}
    task = plan.tasks.get(config.dataset)
    if task is not None:
        row.update(_task_row(task))
    row.update(provenance())
    cells = out_dir / CELLS
    write_bytes(
        cells / f"{config.hash}.json", json.dumps(row, sort_keys=True, default=_json_default).encode()
    )
    return row


RUN_ORDER = ["dataset", "learner", "strategy", "seed"]
#: The report's curve columns, plus the sample selected at each step (-1 at step 0).
CURVE_COLUMNS = [*report.CURVE_COLUMNS, "sample"]


def write_tables(
    out_dir: Path, rows: Sequence[dict[str, Any]], *, merge: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Writes runs.parquet, runs.csv and curves.parquet for ``rows`` (curves from the cells).

    With ``merge``, rows of other configurations already in the tables are kept, so that
    several ``alcbench run`` calls can fill one folder. Each table is replaced atomically.
    """
    runs = pd.DataFrame(list(rows))
    curve_frames = [
        pd.read_parquet(out_dir / CELLS / f"{h}.curve.parquet")
        for h, status in zip(runs["config_hash"], runs["status"], strict=True)
        if status == "ok"
    ]
    if merge and (out_dir / "runs.parquet").is_file() and (out_dir / "curves.parquet").is_file():
        old_runs, old_curves = report.load_tables(out_dir)
        old_runs = old_runs[~old_runs["config_hash"].isin(runs["config_hash"])]
        old_curves = old_curves[old_curves["config_hash"].isin(old_runs["config_hash"])]
        runs = pd.concat([old_runs, runs], ignore_index=True)
        curve_frames.insert(0, old_curves)
    for column in report.RUN_COLUMNS:  # a table of only failed cells still has every column
        if column not in runs.columns:
            runs[column] = np.nan
    front = ["config_hash", *RUN_ORDER, "status", "error"]
    runs = runs[front + [c for c in runs.columns if c not in front]]
    runs = runs.sort_values(RUN_ORDER, kind="stable").reset_index(drop=True)
    frames = [f for f in curve_frames if len(f)]
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)
    order = {h: i for i, h in enumerate(runs["config_hash"])}
    curves = curves.sort_values(
        ["config_hash", "step"], key=lambda c: c.map(order) if c.name == "config_hash" else c, kind="stable"
    ).reset_index(drop=True)
    _write_parquet(runs, out_dir / "runs.parquet")
    write_bytes(out_dir / "runs.csv", runs.to_csv(index=False).encode())
    _write_parquet(curves, out_dir / "curves.parquet")
    return runs, curves
