"""What a simulated run records, and the checks every simulation applies to a strategy.

Shared by the fast simulator (:mod:`benchmark.simulation.simulator`) and the per-step reference loop
(:mod:`benchmark.simulation.reference`), so both report a run in exactly the same form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.task import CleaningTask

#: The active loop's re-fit: current label counts (N, C) -> (posteriors, stochastic or None).
Refit = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


class StrategyError(RuntimeError):
    """A strategy raised or returned scores that cannot be used."""


class MissingInputError(StrategyError):
    """A strategy needs an input (``requires``) that the run does not have."""


@dataclass(frozen=True, eq=False)
class Trajectory:
    """What happened in one run, one entry per selection.

    Attributes:
        selected: (S,) index of the sample selected at each step (repeats only for reselect).
        draws: (S,) expert draws spent on that selection (>= 1).
        spent: (S,) annotations spent in total after the step.
        accuracy: (S,) label accuracy in % after the step.
        mislabelled_clear, mislabelled_ambiguous: (S,) mislabelled samples left after the
            step whose true distribution is clear / ambiguous.
        initial_accuracy, initial_clear, initial_ambiguous: the same before any selection.
        budget: the annotations the run was allowed to start spending.
        final_counts: (N, C) the label counts at the end.
        refits: annotations spent when the learner was re-fitted (active runs; empty if static).
    """

    selected: np.ndarray
    draws: np.ndarray
    spent: np.ndarray
    accuracy: np.ndarray
    mislabelled_clear: np.ndarray
    mislabelled_ambiguous: np.ndarray
    initial_accuracy: float
    initial_clear: int
    initial_ambiguous: int
    budget: int
    final_counts: np.ndarray
    refits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def total_spent(self) -> int:
        return int(self.spent[-1]) if self.spent.size else 0


def initial_counts(task: CleaningTask) -> np.ndarray:
    """(N, C) int64 label counts one-hot at the noisy labels: the state a run starts from."""
    counts = np.zeros((task.n_samples, task.n_classes), dtype=np.int64)
    counts[np.arange(task.n_samples), task.noisy_labels] = 1
    return counts


#: What each ``Strategy.requires`` entry names in a scoring context.
REQUIREMENTS = {
    "posteriors": ("posteriors", "posteriors (N x C)"),
    "stochastic": ("stochastic", "stochastic posteriors (T x N x C)"),
    "truth": ("true_dist", "the true label distribution"),
}


def missing_inputs(strategy: Strategy, ctx: ScoringContext) -> list[str]:
    """What ``strategy.requires`` names that ``ctx`` lacks, described for a message."""
    missing = []
    for need in sorted(strategy.requires):
        if need not in REQUIREMENTS:
            raise StrategyError(
                f"strategy {strategy.spec} requires {need!r}; known inputs: {', '.join(sorted(REQUIREMENTS))}"
            )
        attribute, description = REQUIREMENTS[need]
        if getattr(ctx, attribute) is None:
            missing.append(description)
    return missing


def check_requires(strategy: Strategy, ctx: ScoringContext) -> None:
    """Raises :class:`MissingInputError` naming the strategy when ``ctx`` lacks what it reads."""
    missing = missing_inputs(strategy, ctx)
    if missing:
        raise MissingInputError(f"strategy {strategy.spec} needs {' and '.join(missing)}; the run has none")


def checked_scores(strategy: Strategy, ctx: ScoringContext) -> np.ndarray:
    """Runs ``strategy.score`` and validates what it returns, naming the strategy on error:
    one finite float per sample (NaN and +-inf are refused)."""
    try:
        scores = strategy.score(ctx)
    except Exception as exc:
        raise StrategyError(f"strategy {strategy.spec} raised {type(exc).__name__}: {exc}") from exc
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"strategy {strategy.spec} returned scores that are not numbers: {exc}") from exc
    if scores.shape != (ctx.n_samples,):
        raise StrategyError(
            f"strategy {strategy.spec} returned scores of shape {scores.shape}; "
            f"expected ({ctx.n_samples},), one score per sample"
        )
    bad = ~np.isfinite(scores)
    if bad.any():
        kinds = [
            f"{int(k.sum())} {name}"
            for name, k in (
                ("NaN", np.isnan(scores)),
                ("+inf", scores == np.inf),
                ("-inf", scores == -np.inf),
            )
            if k.any()
        ]
        raise StrategyError(
            f"strategy {strategy.spec} returned non-finite scores ({', '.join(kinds)}; first at sample "
            f"{int(np.argmax(bad))}); scores must be finite numbers"
        )
    return scores


def ranking(scores: np.ndarray, seed: int) -> np.ndarray:
    """Sample indices by decreasing score, ties ordered by a permutation seeded by ``seed``."""
    return np.lexsort((tiebreak_permutation(scores.size, seed), -scores))


def tiebreak_permutation(n: int, seed: int) -> np.ndarray:
    """(n,) the seeded random order that breaks ties between equal scores (DESIGN.md rule 9)."""
    return np.random.default_rng([seed, 0x7E]).permutation(n)


def build_trajectory(
    task: CleaningTask,
    selected: np.ndarray,
    draws: np.ndarray,
    correct_after: np.ndarray,
    correct0: np.ndarray,
    budget: int,
    counts: np.ndarray,
    refits: np.ndarray,
    *,
    reselect: bool,
) -> Trajectory:
    """The per-step record of a run from its selections and their outcomes.

    Args:
        selected, draws, correct_after: (S,) per selection: the sample, the draws spent on
            it, and whether its majority was right afterwards.
        correct0: (N,) whether each sample's initial label was right.
        counts: (N, C) the final label counts.
        reselect: whether a sample may appear more than once in ``selected``.
    """
    ambiguous = task.ambiguous
    gain = correct_after.astype(np.int64) - _correct_before(selected, correct0, correct_after, reselect)
    wrong0_clear = int(np.sum(~correct0 & ~ambiguous))
    wrong0_amb = int(np.sum(~correct0 & ambiguous))
    amb_sel = ambiguous[selected]
    return Trajectory(
        selected=selected,
        draws=draws,
        spent=np.cumsum(draws),
        accuracy=100.0 * (int(correct0.sum()) + np.cumsum(gain)) / task.n_samples,
        mislabelled_clear=_left(wrong0_clear, gain, ~amb_sel),
        mislabelled_ambiguous=_left(wrong0_amb, gain, amb_sel),
        initial_accuracy=100.0 * float(correct0.mean()),
        initial_clear=wrong0_clear,
        initial_ambiguous=wrong0_amb,
        budget=budget,
        final_counts=counts,
        refits=refits,
    )


def _left(initial: int, gain: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mislabelled samples left after each step, counting only the steps in ``mask``."""
    return initial - np.cumsum(np.where(mask, gain, 0))


def _correct_before(
    selected: np.ndarray, correct0: np.ndarray, correct_after: np.ndarray, reselect: bool
) -> np.ndarray:
    """Whether each selected sample was correct just before its selection: its initial state
    for a first selection, the state its previous selection left for a re-selection."""
    before = correct0[selected].astype(np.int64)
    last: dict[int, int] = {}
    if reselect:
        for step, i in enumerate(selected.tolist()):
            if i in last:
                before[step] = int(correct_after[last[i]])
            last[i] = step
    return before
