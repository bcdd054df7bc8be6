"""Speed benchmark of the relabelling simulator (``make perf``).

Times :func:`benchmark.simulator.simulate` on synthetic tasks of 1k to 1M samples (C = 10) for a
static strategy (``loss``) and for the ``oracle``, and compares it with a *reference loop* that
works the way the paper's reference code does (InnerEye-DataQuality's ``DataCurationSimulator``):
at every step it re-scores every sample, argsorts all scores, masks the samples already selected,
takes the first and asks the expert one label at a time until a strict majority. That loop costs
O(N log N) per selection, so it only runs at N <= 10k.

Usage::

    python -m benchmark.perf.simulator --out results/perf           # full run (1k .. 1M)
    python -m benchmark.perf.simulator --out /tmp/perf --quick      # N <= 10k only (smoke test)

Writes ``simulator.csv`` (one row per implementation x strategy x N) and ``simulator.md`` (the
table, the speed-up ratios reference / alcbench, a statistical sanity check that both
implementations simulate the same process, and the machine it ran on) and prints the markdown.
Ratios, not absolute timings, are the claim: absolute seconds depend on the machine and its load.

Timing: wall clock (``time.perf_counter``), best of a few repeats for small N and one run at
N = 1M; it covers scoring, ranking and the whole simulation, not the task construction. Memory:
the peak of ``tracemalloc``'s traced memory (Python objects and NumPy buffers, which NumPy
reports to tracemalloc) allocated during one more, untimed run of the same cell, since tracing
slows allocation down; memory held before the run (the task, the posteriors) is not counted.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import gc
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import registry
from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulator import simulate
from benchmark.task import CleaningTask

#: Task sizes our simulator is timed at (plus every reference size, for the ratios).
SIZES = (1_000, 10_000, 100_000, 1_000_000)
#: Task sizes the O(N log N)-per-step reference loop is timed at.
REFERENCE_SIZES = (1_000, 5_000, 10_000)
#: Largest N of a ``--quick`` run.
QUICK_MAX_N = 10_000
#: Strategies timed: one static, and the oracle (re-selection, priority queue).
TIMED_STRATEGIES = ("loss", "oracle")
#: Strategies of the statistical sanity check (the oracle checks the re-selection path too).
SANITY_STRATEGIES = ("random", "loss", "oracle")
N_CLASSES = 10
BUDGET_MULTIPLIER = 4.0
#: Seed of the synthetic tasks; run seeds are separate.
TASK_SEED = 2022

CSV_COLUMNS = (
    "implementation",
    "strategy",
    "n",
    "seconds",
    "peak_mib",
    "annotations",
    "selections",
)
OURS, REFERENCE = "alcbench", "reference"
#: "A static strategy at N = 1M finishes in seconds", read as: in under this many seconds.
STATIC_TARGET_SECONDS = 10.0


# --------------------------------------------------------------------------------------------
# Synthetic tasks
# --------------------------------------------------------------------------------------------


def synthetic_task(
    n: int,
    *,
    seed: int = TASK_SEED,
    n_classes: int = N_CLASSES,
    flat_fraction: float = 0.15,
    temperature: float = 2.0,
    posterior_noise: float = 1.5,
) -> tuple[CleaningTask, np.ndarray]:
    """A CIFAR-10H-like task of ``n`` samples and its model posteriors, both seeded.

    True distributions: each sample gets a random main class. 85 % of rows are drawn from a
    Dirichlet with concentration 60 on the main class and 0.05 on the others (nearly one-hot,
    median top mass ~0.997); the other ``flat_fraction`` from a flatter Dirichlet (4 on the
    main class, 0.2 elsewhere), about 70 % of which come out ambiguous (normalised entropy
    > 0.3): ~10.5 % of all rows, with mean sorted masses ~0.62, 0.21, 0.09 (CIFAR-10H's
    ambiguous images: 0.64, 0.23, 0.08). Noisy labels are one draw from the tempered
    distribution p^(1/T) with T = 2, as in the paper's CIFAR-10H setting: about 15 % of labels
    are wrong. Posteriors are a noisy version of the truth, softmax(log(p + 1e-3) +
    ``posterior_noise`` * standard normal), so that a posterior-based strategy is better than
    random and worse than the oracle.

    Returns:
        (task, posteriors (n, C) float64).
    """
    rng = np.random.default_rng([seed, n])
    main = rng.integers(0, n_classes, n)
    flat = rng.random(n) < flat_fraction
    rows = np.arange(n)
    alpha = np.where(flat, 0.2, 0.05)[:, None] * np.ones((n, n_classes))
    alpha[rows, main] = np.where(flat, 4.0, 60.0)
    p = rng.gamma(alpha)
    # A row whose gamma draws all underflow to 0 (vanishingly rare) becomes one-hot at its main.
    empty = p.sum(axis=1) == 0
    p[empty, main[empty]] = 1.0
    p /= p.sum(axis=1, keepdims=True)

    tempered = p ** (1.0 / temperature)
    cdf = np.cumsum(tempered, axis=1)
    cdf /= cdf[:, -1:]
    noisy = np.minimum((rng.random(n)[:, None] >= cdf).sum(axis=1), n_classes - 1)

    logits = np.log(p + 1e-3) + posterior_noise * rng.standard_normal((n, n_classes))
    logits -= logits.max(axis=1, keepdims=True)
    posteriors = np.exp(logits)
    posteriors /= posteriors.sum(axis=1, keepdims=True)

    task = CleaningTask(
        name=f"synthetic[n={n},classes={n_classes},seed={seed}]",
        true_dist=p,
        noisy_labels=noisy,
        class_names=tuple(f"class{c}" for c in range(n_classes)),
        budget_multiplier=BUDGET_MULTIPLIER,
        info={"synthetic": True, "temperature": temperature},
    )
    return task, posteriors


def context_for(task: CleaningTask, posteriors: np.ndarray, strategy: Strategy, seed: int) -> ScoringContext:
    """The initial scoring context of a run: the oracle alone sees the truth."""
    counts = np.zeros((task.n_samples, task.n_classes), dtype=np.int64)
    counts[np.arange(task.n_samples), task.noisy_labels] = 1
    return ScoringContext(
        label_counts=counts,
        posteriors=posteriors,
        true_dist=task.true_dist if "truth" in strategy.requires else None,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# The reference loop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """What both implementations report about a run."""

    selected: np.ndarray
    draws: np.ndarray
    final_accuracy: float
    auc: float

    @property
    def annotations(self) -> int:
        return int(self.draws.sum())

    @property
    def selections(self) -> int:
        return int(self.selected.size)

    @property
    def distinct(self) -> int:
        """Distinct samples selected (fewer than selections only for the oracle)."""
        return int(np.unique(self.selected).size)


def reference_simulate(
    task: CleaningTask,
    strategy: Strategy,
    ctx: ScoringContext,
    *,
    seed: int,
    budget: int | None = None,
) -> RunSummary:
    """The straightforward loop of the paper's reference code, for timing and cross-checking.

    At every step: score every sample with the strategy on the current label counts, argsort
    all scores (descending; ties in the order of a permutation seeded like the simulator's),
    drop the samples already selected, take the first; draw expert labels one at a time with
    ``numpy.random.Generator.choice`` from the sample's true distribution until its counts have
    a strict majority; continue while the annotations spent are at most the budget.

    The reference code lets the oracle re-select any sample. Here, as DESIGN.md rule 5 states
    and as :func:`benchmark.simulator.simulate` does, the oracle may return only to a sample
    whose majority is still wrong (without that, once every label is right the oracle would
    re-annotate the same correct but ambiguous sample until the budget runs out).
    """
    budget = task.budget if budget is None else int(budget)
    rng = np.random.default_rng(seed)
    n, n_classes = task.n_samples, task.n_classes
    truth = task.true_labels
    true_dist = task.true_dist
    counts = ctx.label_counts.astype(np.int64, copy=True)
    # Stable argsort on a seeded permutation = ties ordered by that permutation, as the
    # simulator's lexsort((tiebreak, -scores)) orders them.
    tiebreak = np.random.default_rng([seed, 0x7E]).permutation(n)
    perm = np.argsort(tiebreak)
    already = np.zeros(n, dtype=bool)
    correct = np.argmax(counts, axis=1) == truth
    n_correct0 = int(correct.sum())
    n_correct = n_correct0
    selected: list[int] = []
    draws: list[int] = []
    accuracy: list[float] = []
    spent = 0
    while spent <= budget:
        scores = np.asarray(strategy.score(dataclasses.replace(ctx, label_counts=counts)), dtype=np.float64)
        order = perm[np.argsort(-scores[perm], kind="stable")]
        blocked = already & correct if strategy.reselect else already
        order = order[~blocked[order]]
        if order.size == 0:
            break
        i = int(order[0])
        already[i] = True
        n_draws = 0
        while True:
            label = int(rng.choice(n_classes, p=true_dist[i]))
            counts[i, label] += 1
            n_draws += 1
            top = np.sort(counts[i])
            if top[-1] != top[-2]:
                break
        ok = bool(np.argmax(counts[i]) == truth[i])
        n_correct += int(ok) - int(correct[i])
        correct[i] = ok
        spent += n_draws
        selected.append(i)
        draws.append(n_draws)
        accuracy.append(100.0 * n_correct / n)
    draws_arr = np.array(draws, dtype=np.int64)
    return RunSummary(
        selected=np.array(selected, dtype=np.int64),
        draws=draws_arr,
        final_accuracy=accuracy[-1] if accuracy else 100.0 * n_correct0 / n,
        auc=_auc(100.0 * n_correct0 / n, draws_arr, np.array(accuracy), budget),
    )


def ours_simulate(task: CleaningTask, strategy: Strategy, ctx: ScoringContext, *, seed: int) -> RunSummary:
    traj = simulate(task, strategy, ctx, seed=seed)
    return RunSummary(
        selected=traj.selected,
        draws=traj.draws,
        final_accuracy=float(traj.accuracy[-1]) if traj.accuracy.size else traj.initial_accuracy,
        auc=_auc(traj.initial_accuracy, traj.draws, traj.accuracy, traj.budget),
    )


def _auc(acc0: float, draws: np.ndarray, accuracy: np.ndarray, budget: int) -> float:
    """DESIGN.md rule 8: the curve on the grid 0..budget, trapezoidal area / (budget x 100)."""
    x = np.concatenate([[0], np.cumsum(draws)]).astype(np.float64)
    y = np.concatenate([[acc0], accuracy])
    grid = np.interp(np.arange(budget + 1), x, y)
    return float(np.sum((grid[1:] + grid[:-1]) / 2.0) / (budget * 100.0))


IMPLEMENTATIONS: dict[str, Callable[..., RunSummary]] = {
    OURS: ours_simulate,
    REFERENCE: reference_simulate,
}


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    implementation: str
    strategy: str
    n: int
    seconds: float
    peak_mib: float
    annotations: int
    selections: int
    repeats: int
    distinct: int

    def row(self) -> dict[str, object]:
        return {
            "implementation": self.implementation,
            "strategy": self.strategy,
            "n": self.n,
            "seconds": f"{self.seconds:.6f}",
            "peak_mib": f"{self.peak_mib:.3f}",
            "annotations": self.annotations,
            "selections": self.selections,
        }


def repeats_for(n: int, implementation: str) -> int:
    """Best of 5 for small N, 3 at 100k, 1 at 1M; the slow reference: 3 at N <= 1k, else 1."""
    if implementation == REFERENCE:
        return 3 if n <= 1_000 else 1
    if n <= 10_000:
        return 5
    return 3 if n <= 100_000 else 1


def measure(
    implementation: str,
    strategy_name: str,
    task: CleaningTask,
    posteriors: np.ndarray,
    *,
    seed: int = 0,
    repeats: int = 1,
    memory: bool = True,
) -> Measurement:
    """Best-of-``repeats`` wall time of one cell, then its peak traced memory in one more run."""
    run = IMPLEMENTATIONS[implementation]
    strategy = registry.create("strategy", strategy_name)
    ctx = context_for(task, posteriors, strategy, seed)
    best = float("inf")
    summary: RunSummary | None = None
    for _ in range(max(1, repeats)):
        gc.collect()
        start = time.perf_counter()
        summary = run(task, strategy, ctx, seed=seed)
        best = min(best, time.perf_counter() - start)
    assert summary is not None
    peak = float("nan")
    if memory:
        gc.collect()
        tracemalloc.start()
        try:
            run(task, strategy, ctx, seed=seed)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    return Measurement(
        implementation,
        strategy_name,
        task.n_samples,
        best,
        peak,
        summary.annotations,
        summary.selections,
        max(1, repeats),
        summary.distinct,
    )


@dataclass(frozen=True)
class SanityResult:
    """Both implementations on the same task and seeds: means and standard errors over seeds."""

    strategy: str
    n: int
    seeds: int
    metric: str
    ours_mean: float
    ours_se: float
    ref_mean: float
    ref_se: float
    tolerance: float

    @property
    def difference(self) -> float:
        return self.ours_mean - self.ref_mean

    @property
    def compatible(self) -> bool:
        return abs(self.difference) <= self.tolerance


def sanity_check(
    n: int = 1_000,
    seeds: Sequence[int] = tuple(range(10)),
    strategies: Sequence[str] = SANITY_STRATEGIES,
) -> list[SanityResult]:
    """Runs both implementations on one task over ``seeds`` and compares their means.

    The two use different random streams for the expert (a counter-based hash here, a NumPy
    Generator in the reference loop), so single runs differ; the means over seeds must agree.
    The tolerance is four standard errors of the difference, with a floor (0.3 percentage
    points of final accuracy, 0.003 of AUC) for when both implementations have almost no
    variance across seeds.
    """
    task, posteriors = synthetic_task(n)
    out: list[SanityResult] = []
    for name in strategies:
        strategy = registry.create("strategy", name)
        per: dict[str, dict[str, list[float]]] = {}
        for impl, run in IMPLEMENTATIONS.items():
            acc, auc = [], []
            for seed in seeds:
                ctx = context_for(task, posteriors, strategy, seed)
                summary = run(task, strategy, ctx, seed=seed)
                acc.append(summary.final_accuracy)
                auc.append(summary.auc)
            per[impl] = {"final_accuracy": acc, "auc": auc}
        for metric, floor in (("final_accuracy", 0.3), ("auc", 0.003)):
            a = np.asarray(per[OURS][metric])
            b = np.asarray(per[REFERENCE][metric])
            se_a, se_b = _se(a), _se(b)
            out.append(
                SanityResult(
                    name,
                    n,
                    len(seeds),
                    metric,
                    float(a.mean()),
                    se_a,
                    float(b.mean()),
                    se_b,
                    max(floor, 4.0 * float(np.hypot(se_a, se_b))),
                )
            )
    return out


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    processor = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    return {
        "platform": platform.platform(),
        "processor": processor or "unknown",
        "cpu_count": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def speedups(measurements: Sequence[Measurement]) -> list[tuple[str, int, float]]:
    """(strategy, n, reference seconds / alcbench seconds) wherever both ran."""
    ours = {(m.strategy, m.n): m for m in measurements if m.implementation == OURS}
    out = []
    for m in measurements:
        if m.implementation == REFERENCE and (m.strategy, m.n) in ours:
            out.append((m.strategy, m.n, m.seconds / max(ours[m.strategy, m.n].seconds, 1e-12)))
    return sorted(out, key=lambda t: (t[0], t[1]))


def render_markdown(
    measurements: Sequence[Measurement],
    sanity: Sequence[SanityResult],
    info: dict[str, str],
    *,
    command: str,
) -> str:
    lines = [
        "# Simulator speed benchmark",
        "",
        f"Generated by `{command}` on {info['date']}.",
        "",
        f"- Machine: {info['platform']}; {info['processor']}; {info['cpu_count']} logical CPUs;"
        f" {info['ram']} RAM",
        f"- Python {info['python']}, NumPy {info['numpy']}",
        "- Tasks: synthetic, C = 10, ~10 % ambiguous rows, noisy labels from p^(1/2) (~15 %"
        " noise), budget = 4 x initially mislabelled; posteriors = noisy truth"
        " (`benchmark.perf.synthetic_task`).",
        "- `alcbench` = `benchmark.simulator.simulate`; `reference` = the paper's reference loop"
        " (re-score, argsort, mask, one expert draw at a time;"
        " `benchmark.perf.reference_simulate`).",
        "- seconds: wall clock (time.perf_counter) of scoring + ranking + simulation, best of"
        " `repeats` runs. peak MiB: tracemalloc peak (Python objects + NumPy buffers) allocated"
        " during one more, untimed run.",
        "- Absolute timings depend on the machine and its load; the claim is the ratios.",
        "",
        "## Timings",
        "",
        "| implementation | strategy | N | seconds | repeats | peak MiB | annotations | selections |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    order = sorted(measurements, key=lambda m: (m.strategy, m.n, m.implementation != OURS))
    for m in order:
        lines.append(
            f"| {m.implementation} | {m.strategy} | {m.n:,} | {_fmt_seconds(m.seconds)} |"
            f" {m.repeats} | {m.peak_mib:.1f} | {m.annotations:,} | {m.selections:,} |"
        )
    ratios = speedups(measurements)
    lines += ["", "## Speed-up (reference seconds / alcbench seconds)", ""]
    if ratios:
        lines += ["| strategy | N | speed-up |", "|---|---:|---:|"]
        lines += [f"| {s} | {n:,} | {r:,.0f}x |" for s, n, r in ratios]
    else:
        lines.append("No N at which both implementations ran.")
    lines += ["", "## Acceptance", ""]
    at5k = [(s, r) for s, n, r in ratios if n == 5_000]
    if at5k:
        for s, r in at5k:
            verdict = "PASS" if r >= 100 else "FAIL"
            lines.append(
                f"- N = 5,000, {s}: alcbench is **{r:,.0f}x** faster than the reference loop"
                f" (target >= 100x: {verdict})."
            )
    else:
        lines.append("- N = 5,000 not run (no speed-up figure at 5k).")
    largest = max((m.n for m in measurements if m.implementation == OURS), default=0)
    for m in order:
        if m.implementation == OURS and m.n == largest:
            if m.selections == m.distinct:
                kind = "static: scored once, sorted once"
            else:
                kind = (
                    f"{m.selections - m.distinct:,} of the selections are re-selections of"
                    " samples whose majority was still wrong, each re-annotated and re-scored"
                    " on its own"
                )
            verdict = ""
            if m.strategy != "oracle":
                ok = "PASS" if m.seconds < STATIC_TARGET_SECONDS else "FAIL"
                verdict = f" (target: seconds, < {STATIC_TARGET_SECONDS:.0f} s: {ok})"
            lines.append(
                f"- N = {m.n:,}, {m.strategy}: **{_fmt_seconds(m.seconds)} s** for"
                f" {m.annotations:,} annotations over {m.selections:,} selections ({kind})"
                f"{verdict}."
            )
    lines += [
        "",
        "## Sanity check: same process, different random streams",
        "",
        "Both implementations on the same task over the same seeds (expert draws differ: a"
        " counter-based hash here, NumPy's Generator in the reference loop), mean +- standard"
        " error over seeds. Compatible when |difference| <= tolerance (4 standard errors of the"
        " difference, with a floor).",
        "",
        "| strategy | N | seeds | metric | alcbench | reference | difference | tolerance | ok |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for res in sanity:
        digits = 2 if res.metric == "final_accuracy" else 4
        lines.append(
            f"| {res.strategy} | {res.n:,} | {res.seeds} | {res.metric} |"
            f" {res.ours_mean:.{digits}f} +- {res.ours_se:.{digits}f} |"
            f" {res.ref_mean:.{digits}f} +- {res.ref_se:.{digits}f} |"
            f" {res.difference:+.{digits}f} | {res.tolerance:.{digits}f} |"
            f" {'yes' if res.compatible else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def _fmt_seconds(s: float) -> str:
    return f"{s:.4f}" if s < 1 else f"{s:.2f}"


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """A CSV with ``columns`` and one line per row (the perf modules' result tables)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf", description="Simulator speed benchmark."
    )
    parser.add_argument("--out", type=Path, default=Path("results/perf"), help="output folder")
    parser.add_argument("--quick", action="store_true", help=f"only N <= {QUICK_MAX_N:,} (smoke test)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="N at which to time alcbench (default: 1k 10k 100k 1M, plus the reference sizes)",
    )
    parser.add_argument(
        "--reference-sizes",
        type=int,
        nargs="*",
        default=None,
        help="N at which to time the reference loop (default: 1k 5k 10k)",
    )
    parser.add_argument("--strategies", nargs="+", default=list(TIMED_STRATEGIES), help="strategies to time")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per cell (default: by N)")
    parser.add_argument("--sanity-n", type=int, default=1_000, help="N of the sanity check")
    parser.add_argument("--sanity-seeds", type=int, default=10, help="seeds of the sanity check")
    return parser.parse_args(argv)


def planned_sizes(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    """(N at which alcbench is timed, N at which the reference loop is timed).

    alcbench also runs at every reference size, so that each has its speed-up ratio.
    """
    requested = REFERENCE_SIZES if args.reference_sizes is None else args.reference_sizes
    ref_sizes = sorted(set(requested))
    sizes = sorted(set(SIZES if args.sizes is None else args.sizes) | set(ref_sizes))
    if args.quick:
        sizes = [n for n in sizes if n <= QUICK_MAX_N]
        ref_sizes = [n for n in ref_sizes if n <= QUICK_MAX_N]
    return sizes, ref_sizes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, ref_sizes = planned_sizes(args)
    args.out.mkdir(parents=True, exist_ok=True)

    measurements: list[Measurement] = []
    for n in sizes:
        task, posteriors = synthetic_task(n)
        impls = [OURS] + ([REFERENCE] if n in ref_sizes else [])
        for impl in impls:
            for name in args.strategies:
                repeats = args.repeats or repeats_for(n, impl)
                m = measure(impl, name, task, posteriors, repeats=repeats)
                measurements.append(m)
                print(
                    f"[perf] {impl:9s} {name:7s} N={n:>9,}  {m.seconds:10.4f} s"
                    f"  peak {m.peak_mib:8.1f} MiB  ({m.annotations:,} annotations)",
                    file=sys.stderr,
                    flush=True,
                )
        del task, posteriors

    print(f"[perf] sanity check at N={args.sanity_n:,} ...", file=sys.stderr, flush=True)
    sanity = sanity_check(args.sanity_n, tuple(range(args.sanity_seeds)))

    command = "python -m benchmark.perf " + " ".join(sys.argv[1:] if argv is None else list(argv))
    markdown = render_markdown(measurements, sanity, machine_info(), command=command.strip())
    write_csv(args.out / "simulator.csv", CSV_COLUMNS, (m.row() for m in measurements))
    (args.out / "simulator.md").write_text(markdown)
    print(markdown)
    return 0 if all(s.compatible for s in sanity) else 1


if __name__ == "__main__":
    raise SystemExit(main())
