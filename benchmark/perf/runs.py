"""The two simulator implementations on a synthetic task: timed, and checked to agree."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmark import registry
from benchmark.perf.synthetic import context_for, synthetic_task
from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.metrics import auc, curve_points
from benchmark.simulation.reference import reference_simulate
from benchmark.simulation.simulator import Trajectory, simulate
from benchmark.task import CleaningTask

#: Strategies of the agreement check (the oracle checks the re-selection path too).
AGREEMENT_STRATEGIES = ("random", "loss", "oracle")
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

    @classmethod
    def of(cls, traj: Trajectory) -> RunSummary:
        return cls(
            selected=traj.selected,
            draws=traj.draws,
            final_accuracy=float(traj.accuracy[-1]) if traj.accuracy.size else traj.initial_accuracy,
            auc=auc(*curve_points(traj), traj.budget),
        )


def ours_simulate(task: CleaningTask, strategy: Strategy, ctx: ScoringContext, *, seed: int) -> RunSummary:
    return RunSummary.of(simulate(task, strategy, ctx, seed=seed))


def reference_summary(
    task: CleaningTask, strategy: Strategy, ctx: ScoringContext, *, seed: int
) -> RunSummary:
    return RunSummary.of(reference_simulate(task, strategy, ctx, seed=seed))


IMPLEMENTATIONS: dict[str, Callable[..., RunSummary]] = {
    OURS: ours_simulate,
    REFERENCE: reference_summary,
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
class AgreementResult:
    """Both implementations on the same task and seeds: how many runs were identical (same
    samples selected in the same order, same draws), and the mean metrics of each."""

    strategy: str
    n: int
    seeds: int
    identical: int
    ours_accuracy: float
    ref_accuracy: float
    ours_auc: float
    ref_auc: float

    @property
    def agree(self) -> bool:
        return self.identical == self.seeds


def agreement_check(
    n: int = 1_000,
    seeds: Sequence[int] = tuple(range(10)),
    strategies: Sequence[str] = AGREEMENT_STRATEGIES,
) -> list[AgreementResult]:
    """Runs both implementations on one task over ``seeds``; every run must be identical.

    Both follow the same rules with the same expert (draws keyed by seed, sample and draw
    number), so the fast simulator's sort-once shortcut, vectorised annotation and priority
    queue must reproduce the reference loop's runs exactly.
    """
    task, posteriors = synthetic_task(n)
    out: list[AgreementResult] = []
    for name in strategies:
        strategy = registry.create("strategy", name)
        ours, ref = [], []
        for seed in seeds:
            ctx = context_for(task, posteriors, strategy, seed)
            ours.append(ours_simulate(task, strategy, ctx, seed=seed))
            ref.append(reference_summary(task, strategy, ctx, seed=seed))
        identical = sum(
            np.array_equal(a.selected, b.selected) and np.array_equal(a.draws, b.draws)
            for a, b in zip(ours, ref, strict=True)
        )
        out.append(
            AgreementResult(
                name,
                n,
                len(seeds),
                identical,
                float(np.mean([r.final_accuracy for r in ours])),
                float(np.mean([r.final_accuracy for r in ref])),
                float(np.mean([r.auc for r in ours])),
                float(np.mean([r.auc for r in ref])),
            )
        )
    return out
