"""The relabelling simulator (Bernhardt et al. 2022, and the semantics of DESIGN.md).

Label state is an (N, C) matrix of counts, one-hot at the noisy label at start. The strategy
ranks samples; the expert re-annotates the selected sample until its counts have a strict
majority; cost is the number of draws. A new sample is selected while the annotations spent are
at most the budget, so the last one may finish past it. A sample is selected once, except by
``reselect`` strategies (the oracle), which may return to a sample whose majority is still
wrong. Tied scores are ordered by a seeded random permutation.

A row-local strategy's score of a sample (``Strategy.row_local``, the default) depends only on
that sample's own state, and a sample's state changes only when it is selected, so scores are
computed once and sorted once: a run costs O(N log N) plus vectorised work proportional to the
annotations spent. A strategy that declares ``row_local = False`` is run by the per-step
reference loop (:mod:`benchmark.simulation.reference`) instead: correct, and slower.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.expert import annotate, annotate_one, cumulative
from benchmark.simulation.reference import reference_simulate
from benchmark.simulation.trajectory import (
    MissingInputError,
    Refit,
    StrategyError,
    Trajectory,
    build_trajectory,
    check_requires,
    checked_scores,
    initial_counts,
    ranking,
    tiebreak_permutation,
)
from benchmark.task import CleaningTask

__all__ = [
    "MissingInputError",
    "Refit",
    "StrategyError",
    "Trajectory",
    "checked_scores",
    "initial_counts",
    "ranking",
    "simulate",
]


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

    Raises:
        MissingInputError: ``ctx`` lacks something the strategy ``requires``.
        StrategyError: the strategy raised, or returned scores of the wrong shape or not finite.
    """
    if not strategy.row_local:
        return reference_simulate(
            task,
            strategy,
            ctx,
            seed=seed,
            budget=budget,
            max_draws=max_draws,
            refit=refit,
            refit_every=refit_every,
        )
    check_requires(strategy, ctx)
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
        return build_trajectory(
            task,
            selected,
            draws_arr,
            correct_after,
            correct0,
            budget,
            counts,
            refits,
            reselect=strategy.reselect,
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

    return build_trajectory(
        task, selected, draws_arr, correct_after, correct0, budget, counts, refits, reselect=strategy.reselect
    )


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
    tiebreak = tiebreak_permutation(scores.size, seed)
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
