"""The relabelling simulator (Bernhardt et al. 2022, and the semantics of DESIGN.md).

Label state is an (N, C) matrix of counts, one-hot at the noisy label at start. The strategy
ranks samples; the expert re-annotates the selected sample until its counts have a strict
majority; cost is the number of draws. A new sample is selected while the annotations spent are
at most the budget, so the last one may finish past it. A sample is selected once, except by
``reselect`` strategies (the oracle), which may return to a sample whose majority is still
wrong. Tied scores are ordered by a seeded random permutation.

A strategy's score of a sample depends only on that sample's own state, and a sample's state
changes only when it is selected, so scores are computed once and sorted once: a run costs
O(N log N) plus vectorised work proportional to the annotations spent.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from benchmark.expert import annotate, annotate_one, cumulative
from benchmark.plugins import ScoringContext, Strategy
from benchmark.task import CleaningTask


class StrategyError(RuntimeError):
    """A strategy raised or returned scores that cannot be used."""


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
    counts = np.zeros((task.n_samples, task.n_classes), dtype=np.int64)
    counts[np.arange(task.n_samples), task.noisy_labels] = 1
    return counts


def checked_scores(strategy: Strategy, ctx: ScoringContext) -> np.ndarray:
    """Runs ``strategy.score`` and validates what it returns, naming the strategy on error."""
    try:
        scores = strategy.score(ctx)
    except Exception as exc:
        raise StrategyError(f"strategy {strategy.spec} raised {type(exc).__name__}: {exc}") from exc
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (ctx.n_samples,):
        raise StrategyError(
            f"strategy {strategy.spec} returned scores of shape {scores.shape}; "
            f"expected ({ctx.n_samples},), one score per sample"
        )
    if np.isnan(scores).any():
        bad = int(np.isnan(scores).sum())
        raise StrategyError(f"strategy {strategy.spec} returned {bad} NaN scores")
    return scores


def ranking(scores: np.ndarray, seed: int) -> np.ndarray:
    """Sample indices by decreasing score, ties ordered by a permutation seeded by ``seed``."""
    tiebreak = np.random.default_rng([seed, 0x7E]).permutation(scores.size)
    return np.lexsort((tiebreak, -scores))


def simulate(
    task: CleaningTask,
    strategy: Strategy,
    ctx: ScoringContext,
    *,
    seed: int,
    budget: int | None = None,
    max_draws: int | None = None,
    refit: Refit | None = None,
    refit_every: int | None = None,
) -> Trajectory:
    """Runs one relabelling simulation.

    Args:
        task: the task; its ``true_dist`` drives the expert.
        strategy: the ranking strategy.
        ctx: what the strategy sees (label counts must be the initial ones).
        seed: seeds the expert's draws and the tie-breaking permutation.
        budget: annotations to spend; defaults to ``task.budget``.
        max_draws: optional cap on the draws of one selection.
        refit: the active loop of the paper's Algorithm 1: called with the current label
            counts (N, C) once at least ``refit_every`` more annotations have been spent, it
            returns new (posteriors, stochastic posteriors or None), and the samples not yet
            selected are re-scored and re-ranked. Ignored for strategies that read no
            posteriors (random, the oracle): their runs are static.
    """
    budget = task.budget if budget is None else int(budget)
    counts = ctx.label_counts.astype(np.int64, copy=True)
    truth = task.true_labels
    correct0 = np.argmax(counts, axis=1) == truth
    refits = np.zeros(0, dtype=np.int64)
    if refit is not None and strategy.uses_model():
        if refit_every is None or refit_every < 1:
            raise ValueError(f"refit_every must be a positive number of annotations, got {refit_every}")
        selected, draws_arr, correct_after, refits = _active_loop(
            task, strategy, ctx, counts, seed, budget, max_draws, refit, refit_every
        )
        return _trajectory(
            task, strategy, selected, draws_arr, correct_after, correct0, budget, counts, refits
        )
    scores = checked_scores(strategy, ctx)
    order = ranking(scores, seed)

    # Each selection costs at least one draw, so no run selects more than budget + 1 samples
    # from the ranking; their first annotation episodes are independent of one another
    # (the expert's draws are keyed by sample), so they are simulated in one vectorised pass.
    head = order[: budget + 1]
    cdf = cumulative(task.true_dist[head])
    after, draws = annotate(counts[head], cdf, head, np.zeros(head.size, np.int64), seed, max_draws)

    if strategy.reselect:
        selected, draws_arr, correct_after = _reselect_loop(
            task, strategy, ctx, scores, counts, head, after, draws, seed, budget, max_draws
        )
    else:
        spent_before = np.concatenate([[0], np.cumsum(draws)[:-1]])
        n_sel = int(np.searchsorted(spent_before, budget, side="right"))
        selected, draws_arr = head[:n_sel], draws[:n_sel]
        counts[selected] = after[:n_sel]
        correct_after = np.argmax(after[:n_sel], axis=1) == truth[selected]

    return _trajectory(task, strategy, selected, draws_arr, correct_after, correct0, budget, counts, refits)


def _trajectory(
    task: CleaningTask,
    strategy: Strategy,
    selected: np.ndarray,
    draws_arr: np.ndarray,
    correct_after: np.ndarray,
    correct0: np.ndarray,
    budget: int,
    counts: np.ndarray,
    refits: np.ndarray,
) -> Trajectory:
    """The per-step record of a run from its selections and their outcomes."""
    ambiguous = task.ambiguous
    gain = correct_after.astype(np.int64) - _correct_before(
        selected, correct0, correct_after, strategy.reselect
    )
    n = task.n_samples
    wrong0_clear = int(np.sum(~correct0 & ~ambiguous))
    wrong0_amb = int(np.sum(~correct0 & ambiguous))
    amb_sel = ambiguous[selected]
    return Trajectory(
        selected=selected,
        draws=draws_arr,
        spent=np.cumsum(draws_arr),
        accuracy=100.0 * (int(correct0.sum()) + np.cumsum(gain)) / n,
        mislabelled_clear=_left(wrong0_clear, gain, ~amb_sel),
        mislabelled_ambiguous=_left(wrong0_amb, gain, amb_sel),
        initial_accuracy=100.0 * float(correct0.mean()),
        initial_clear=wrong0_clear,
        initial_ambiguous=wrong0_amb,
        budget=budget,
        final_counts=counts,
        refits=refits,
    )


#: The active loop's re-fit: current label counts (N, C) -> (posteriors, stochastic or None).
Refit = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def _active_loop(
    task: CleaningTask,
    strategy: Strategy,
    ctx: ScoringContext,
    counts: np.ndarray,
    seed: int,
    budget: int,
    max_draws: int | None,
    refit: Refit,
    every: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Algorithm 1: static segments between re-fits.

    Each segment ranks the samples not yet selected by their current scores and takes them in
    that order, as a static run does, until the annotations spent reach the next multiple of
    ``every`` (or the budget); then the learner is re-fitted on the current labels and the rest
    is re-scored. The expert's answers are keyed by sample, so a sample is answered the same
    whichever segment selects it. Updates ``counts`` in place.
    """
    truth = task.true_labels
    available = np.ones(task.n_samples, dtype=bool)
    selected: list[np.ndarray] = []
    draws_list: list[np.ndarray] = []
    correct: list[np.ndarray] = []
    refits: list[int] = []
    spent, milestone = 0, every
    while spent <= budget and available.any():
        order = ranking(checked_scores(strategy, ctx), seed)
        # every selection costs a draw, so a segment ends within this many selections
        head = order[available[order]][: min(budget, milestone) - spent + 1]
        after, draws = annotate(
            counts[head],
            cumulative(task.true_dist[head]),
            head,
            np.zeros(head.size, np.int64),
            seed,
            max_draws,
        )
        total = spent + np.cumsum(draws)
        within_budget = int(np.searchsorted(total - draws, budget, side="right"))
        to_milestone = int(np.searchsorted(total, milestone, side="left")) + 1
        n = min(within_budget, to_milestone, head.size)
        taken = head[:n]
        counts[taken] = after[:n]
        available[taken] = False
        selected.append(taken)
        draws_list.append(draws[:n])
        correct.append(np.argmax(after[:n], axis=1) == truth[taken])
        spent = int(total[n - 1])
        if spent >= milestone and spent <= budget and available.any():
            posteriors, stochastic = refit(counts.copy())
            ctx = replace(ctx, label_counts=counts.copy(), posteriors=posteriors, stochastic=stochastic)
            refits.append(spent)
            milestone += every * ((spent - milestone) // every + 1)
    return (
        np.concatenate(selected),
        np.concatenate(draws_list),
        np.concatenate(correct),
        np.array(refits, dtype=np.int64),
    )


def _left(initial: int, gain: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mislabelled samples left after each step, counting only the steps in ``mask``."""
    return initial - np.cumsum(np.where(mask, gain, 0))


def _correct_before(
    selected: np.ndarray, correct0: np.ndarray, correct_after: np.ndarray, reselect: bool
) -> np.ndarray:
    """Whether each selected sample was correct just before its selection.

    For a sample's first selection that is its initial state; for a re-selection it is the
    state its previous selection left.
    """
    before = correct0[selected].astype(np.int64)
    last: dict[int, int] = {}
    if reselect:
        for step, i in enumerate(selected.tolist()):
            if i in last:
                before[step] = int(correct_after[last[i]])
            last[i] = step
    return before


def _reselect_loop(
    task: CleaningTask,
    strategy: Strategy,
    ctx: ScoringContext,
    scores: np.ndarray,
    counts: np.ndarray,
    head: np.ndarray,
    after: np.ndarray,
    draws: np.ndarray,
    seed: int,
    budget: int,
    max_draws: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selection with returns: the ranking plus a heap of re-queued samples.

    A sample whose majority is still wrong after its annotation is re-scored on its own row and
    pushed on a heap; each step takes whichever is higher, the heap's top or the next sample of
    the ranking (ties go to the ranking). Updates ``counts`` in place.
    """
    truth = task.true_labels.tolist()
    head_scores = scores[head].tolist()
    head_list = head.tolist()
    tiebreak = np.random.default_rng([seed, 0x7E]).permutation(scores.size)
    by_majority: dict[int, list[float]] = {}
    if strategy.majority_only:
        # Only samples left wrong by their first annotation are ever re-scored.
        wrong = head[np.argmax(after, axis=1) != task.true_labels[head]]
        by_majority = dict(
            zip(wrong.tolist(), _majority_table(strategy, ctx.rows(wrong)).tolist(), strict=True)
        )
    draws_made: dict[int, int] = {}
    rows: dict[int, list[int]] = {}
    heap: list[tuple[float, int, int]] = []
    selected: list[int] = []
    spent_list: list[int] = []
    correct: list[bool] = []
    ptr, spent = 0, 0
    while spent <= budget:
        if heap and (ptr >= len(head_list) or -heap[0][0] > head_scores[ptr]):
            _, _, i = heapq.heappop(heap)
            row = rows[i]
            cdf = list(itertools.accumulate(task.true_dist[i].tolist()))
            cdf = [v / cdf[-1] for v in cdf]
            n = annotate_one(row, cdf, i, draws_made[i], seed, max_draws)
        elif ptr < len(head_list):
            i = head_list[ptr]
            row = after[ptr].tolist()
            n = int(draws[ptr])
            ptr += 1
        else:
            break
        rows[i] = row
        draws_made[i] = draws_made.get(i, 0) + n
        spent += n
        selected.append(i)
        spent_list.append(n)
        majority = max(range(len(row)), key=row.__getitem__)
        correct.append(majority == truth[i])
        if majority != truth[i]:
            if strategy.majority_only:
                new_score = by_majority[i][majority]
            else:
                row_ctx = replace(ctx.rows(np.array([i])), label_counts=np.array([row]))
                new_score = float(checked_scores(strategy, row_ctx)[0])
            heapq.heappush(heap, (-new_score, int(tiebreak[i]), i))
    for i, row in rows.items():
        counts[i] = row
    return np.array(selected, dtype=np.int64), np.array(spent_list, dtype=np.int64), np.array(correct)


def _majority_table(strategy: Strategy, ctx: ScoringContext) -> np.ndarray:
    """(N, C) the strategy's score of every sample as if its counts were one-hot at each class."""
    n, c = ctx.label_counts.shape
    table = np.empty((n, c))
    for k in range(c):
        one_hot = np.zeros((n, c), dtype=np.int64)
        one_hot[:, k] = 1
        table[:, k] = checked_scores(strategy, replace(ctx, label_counts=one_hot))
    return table
