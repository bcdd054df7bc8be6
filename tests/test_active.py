"""The active loop (paper's Algorithm 1): re-fit every b annotations, re-rank the rest."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_context, make_task
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import registry
from benchmark.simulation.simulator import simulate


def _random_task(seed: int, n: int = 200, c: int = 4):
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.full(c, 0.3), size=n)
    noisy = np.array([rng.choice(c, p=np.sqrt(row) / np.sqrt(row).sum()) for row in dist])
    task = make_task(dist, noisy)
    posteriors = 0.6 * dist + 0.4 * rng.dirichlet(np.ones(c), size=n)
    return task, posteriors


@pytest.mark.parametrize("spec", ["loss", "eq2", "entropy", "cleanlab"])
def test_refits_that_change_nothing_give_the_static_run(spec):
    task, post = _random_task(1)
    strategy = registry.create("strategy", spec)
    ctx = make_context(task, posteriors=post)
    static = simulate(task, strategy, ctx, seed=4)
    active = simulate(task, strategy, ctx, seed=4, refit=lambda counts: (post, None), refit_every=20)
    np.testing.assert_array_equal(active.selected, static.selected)
    np.testing.assert_array_equal(active.accuracy, static.accuracy)
    assert active.refits.size > 0 and static.refits.size == 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), every=st.integers(1, 60))
def test_refits_happen_once_per_b_annotations_and_see_the_current_labels(seed, every):
    task, post = _random_task(seed % 50, n=80)
    strategy = registry.create("strategy", "loss")
    seen: list[np.ndarray] = []
    rng = np.random.default_rng(seed)

    def refit(counts):
        seen.append(counts.copy())
        return rng.dirichlet(np.ones(task.n_classes), size=task.n_samples), None

    traj = simulate(
        task, strategy, make_context(task, posteriors=post), seed=seed, refit=refit, refit_every=every
    )
    assert len(np.unique(traj.selected)) == traj.selected.size  # no re-selection
    assert traj.refits.size == len(seen)
    # each re-fit happens at the first selection reaching the next multiple of b, within budget
    for k, at in enumerate(traj.refits):
        assert at in traj.spent and at <= traj.budget
        assert at >= (k + 1) * every
    assert np.all(np.diff(traj.refits) > 0)
    # the learner is re-fitted on the labels as they stood: counts add up to the draws spent
    for at, counts in zip(traj.refits, seen, strict=True):
        assert counts.sum() == task.n_samples + at


def test_a_refit_reorders_the_samples_not_yet_selected():
    n = 30
    dist = np.tile([0.9, 0.1], (n, 1))
    task = make_task(dist, np.zeros(n, dtype=np.int64), budget_multiplier=1.0)
    # every label is right, so the budget is 0; give the run a budget to spend
    post = np.tile([0.5, 0.5], (n, 1))
    post[:, 0] -= np.linspace(0, 0.4, n)  # loss ranks the last samples first
    post[:, 1] = 1 - post[:, 0]
    late = np.tile([0.99, 0.01], (n, 1))
    late[3] = [0.01, 0.99]  # after the re-fit, sample 3 looks mislabelled

    strategy = registry.create("strategy", "loss")
    traj = simulate(
        task,
        strategy,
        make_context(task, posteriors=post),
        seed=0,
        budget=10,
        refit=lambda counts: (late, None),
        refit_every=3,
    )
    first_refit_step = int(np.searchsorted(traj.spent, traj.refits[0]))
    assert traj.selected[first_refit_step + 1] == 3


@pytest.mark.parametrize("spec", ["random", "oracle"])
def test_strategies_that_read_no_model_stay_static(spec):
    task, post = _random_task(2)
    calls: list[np.ndarray] = []

    def refit(counts):
        calls.append(counts)
        return post, None

    strategy = registry.create("strategy", spec)
    traj = simulate(task, strategy, make_context(task, posteriors=post), seed=1, refit=refit, refit_every=5)
    assert calls == [] and traj.refits.size == 0


def test_refit_every_must_be_positive():
    task, post = _random_task(3)
    with pytest.raises(ValueError, match="refit_every"):
        simulate(
            task,
            registry.create("strategy", "loss"),
            make_context(task, posteriors=post),
            seed=0,
            refit=lambda counts: (post, None),
            refit_every=0,
        )
