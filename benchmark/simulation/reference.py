"""The per-step reference loop: re-score every sample and re-sort at every selection.

This is how the paper's reference code (InnerEye-DataQuality's ``DataCurationSimulator``)
simulates relabelling, written out plainly. It costs O(N log N) per selection, so the fast
simulator (:mod:`benchmark.simulation.simulator`) is checked and timed against it, and it runs the
strategies the fast one cannot: those whose score of a sample depends on other samples'
state (``Strategy.row_local = False``, e.g. scores normalised over the whole dataset).

It follows the same rules as the simulator with the same expert (draw ``k`` of sample ``i`` is
keyed by ``(seed, i, k)``, see :mod:`benchmark.simulation.expert`), so for a row-local strategy both give
identical trajectories:

- at every step every sample is scored on the current label counts; the candidates are the
  samples never selected and, for ``reselect`` strategies, those whose majority is still
  wrong; the next one is the highest score, ties going first to a sample never selected and
  then to the seeded tie-break permutation;
- the expert annotates it until its counts have a strict majority (at least one draw, the
  noisy label counts as a vote); selection goes on while the annotations spent are at most
  the budget;
- in an active run (``refit``), once the annotations spent reach the next multiple of
  ``refit_every`` the learner is re-fitted on the current labels before the next selection.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.expert import annotate_one
from benchmark.simulation.trajectory import (
    Refit,
    Trajectory,
    build_trajectory,
    check_requires,
    checked_scores,
    tiebreak_permutation,
)
from benchmark.task import CleaningTask


def reference_simulate(
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
    """Runs one relabelling simulation step by step; arguments as
    :func:`benchmark.simulation.simulator.simulate`."""
    check_requires(strategy, ctx)
    budget = task.budget if budget is None else int(budget)
    active = refit is not None and strategy.uses_model()
    if active and (refit_every is None or refit_every < 1):
        raise ValueError(f"refit_every must be a positive number of annotations, got {refit_every}")
    n = task.n_samples
    counts = ctx.label_counts.astype(np.int64, copy=True)
    truth = task.true_labels
    correct = np.argmax(counts, axis=1) == truth
    correct0 = correct.copy()
    tiebreak = tiebreak_permutation(n, seed)
    cdfs = [
        [v / row[-1] for v in row] for row in (list(itertools.accumulate(p)) for p in task.true_dist.tolist())
    ]
    ever_selected = np.zeros(n, dtype=bool)
    draws_made = np.zeros(n, dtype=np.int64)
    selected: list[int] = []
    draws: list[int] = []
    correct_after: list[bool] = []
    refits: list[int] = []
    spent = 0
    milestone = refit_every if active and refit_every else 0
    while spent <= budget:
        candidates = ~ever_selected | (~correct if strategy.reselect else False)
        if not candidates.any():
            break
        scores = checked_scores(strategy, replace(ctx, label_counts=counts.copy()))
        idx = np.flatnonzero(candidates)
        # Highest score; then never selected before; then the seeded tie-break order.
        i = int(idx[np.lexsort((tiebreak[idx], ever_selected[idx], -scores[idx]))[0]])
        row = counts[i].tolist()
        made = annotate_one(row, cdfs[i], i, int(draws_made[i]), seed, max_draws)
        counts[i] = row
        draws_made[i] += made
        ever_selected[i] = True
        correct[i] = int(np.argmax(counts[i])) == truth[i]
        spent += made
        selected.append(i)
        draws.append(made)
        correct_after.append(bool(correct[i]))
        if active and spent >= milestone and spent <= budget and not ever_selected.all():
            assert refit is not None and refit_every is not None
            posteriors, stochastic = refit(counts.copy())
            ctx = replace(ctx, posteriors=posteriors, stochastic=stochastic)
            refits.append(spent)
            milestone += refit_every * ((spent - milestone) // refit_every + 1)
    return build_trajectory(
        task,
        np.array(selected, dtype=np.int64),
        np.array(draws, dtype=np.int64),
        np.array(correct_after, dtype=bool),
        correct0,
        budget,
        counts,
        np.array(refits, dtype=np.int64),
        reselect=strategy.reselect,
    )
