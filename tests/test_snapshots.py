"""Labels part-way through a run's budget (benchmark.simulation.snapshots): read off the trajectory, they
must be the labels a run with the smaller budget ends with."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_context, make_task
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import registry
from benchmark.simulation.simulator import simulate
from benchmark.simulation.snapshots import FRACTIONS, budgets_at, labels_at


def random_task(seed: int, n: int, c: int):
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.full(c, 0.4), size=n)
    noisy = np.array([rng.choice(c, p=row) for row in dist])
    return make_task(dist, noisy, name=f"toy{seed}"), rng.dirichlet(np.ones(c), size=n)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(8, 50),
    c=st.integers(2, 4),
    strategy=st.sampled_from(["loss", "random", "oracle", "entropy"]),
)
def test_labels_part_way_equal_a_run_with_that_budget(seed, n, c, strategy):
    task, posteriors = random_task(seed, n, c)
    plugin = registry.create("strategy", strategy)
    ctx = make_context(task, posteriors=posteriors)
    traj = simulate(task, plugin, ctx, seed=seed)
    budgets = list(range(0, traj.budget + 1))

    def resimulate(b):
        return simulate(task, plugin, ctx, seed=seed, budget=b)

    got = labels_at(task, traj, budgets, resimulate=resimulate)
    for row, b in enumerate(budgets):
        expected = task.noisy_labels if b == 0 else np.argmax(resimulate(b).final_counts, axis=1)
        np.testing.assert_array_equal(got[row], expected, err_msg=f"{strategy} at budget {b}")


def test_active_run_labels_part_way_match_a_shorter_active_run():
    task, posteriors = random_task(3, 60, 3)
    plugin = registry.create("strategy", "loss")
    ctx = make_context(task, posteriors=posteriors)

    def refit(counts):  # a deterministic "learner": posteriors pulled towards the current labels
        return 0.5 * posteriors + 0.5 * counts / counts.sum(axis=1, keepdims=True), None

    full = simulate(task, plugin, ctx, seed=1, refit=refit, refit_every=7)
    assert full.refits.size >= 2
    budgets = [0, 5, 7, 8, 15, 30, full.budget]
    got = labels_at(task, full, budgets)
    for row, b in enumerate(budgets[1:], start=1):
        short = simulate(task, plugin, ctx, seed=1, budget=b, refit=refit, refit_every=7)
        np.testing.assert_array_equal(got[row], np.argmax(short.final_counts, axis=1), err_msg=f"budget {b}")


def test_end_points_are_the_noisy_and_the_final_labels():
    task, posteriors = random_task(5, 40, 3)
    traj = simulate(
        task, registry.create("strategy", "loss"), make_context(task, posteriors=posteriors), seed=0
    )
    got = labels_at(task, traj, budgets_at(traj.budget).tolist())
    np.testing.assert_array_equal(got[0], task.noisy_labels)
    np.testing.assert_array_equal(got[-1], np.argmax(traj.final_counts, axis=1))
    # labels only ever change for selected samples
    untouched = np.setdiff1d(np.arange(task.n_samples), traj.selected)
    assert (got[:, untouched] == task.noisy_labels[untouched]).all()


def test_reselecting_run_without_resimulate_is_refused():
    task, _ = random_task(7, 40, 3)
    traj = simulate(task, registry.create("strategy", "oracle"), make_context(task), seed=0)
    if np.unique(traj.selected).size == traj.selected.size:
        pytest.skip("this oracle run returned to no sample")
    with pytest.raises(ValueError, match="resimulate"):
        labels_at(task, traj, [traj.budget // 2])


def test_budgets_at_fractions():
    np.testing.assert_array_equal(budgets_at(3076), [0, 769, 1538, 2307, 3076])
    assert len(FRACTIONS) == 5
    with pytest.raises(ValueError, match="fractions"):
        budgets_at(10, [0.5, 1.5])
