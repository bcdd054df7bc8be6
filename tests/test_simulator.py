"""The relabelling simulator (benchmark.simulation.simulator) against DESIGN.md's simulation semantics.

Most tests are properties over random small tasks: N 5..60, C 2..5, true distributions mixing
one-hot rows, ties and arbitrary rows, random noisy labels, posteriors and seeds. Where a test
needs to know what happened inside a run it replays the run independently: the expert's k-th
draw for sample i is the inverse CDF of ``uniforms(seed, i, k)`` (tested in test_expert.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from helpers import make_context, make_task
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import registry
from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.expert import uniforms
from benchmark.simulation.scoring import oracle_score
from benchmark.simulation.simulator import Trajectory, initial_counts, ranking, simulate
from benchmark.task import CleaningTask

PROPERTY = settings(max_examples=40, deadline=None)


@dataclass
class Run:
    task: CleaningTask
    strategy: Strategy
    ctx: ScoringContext
    seed: int
    traj: Trajectory


def random_rows(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """n distributions over c classes: one-hot rows, ties between 2..c classes, others."""
    rows = np.zeros((n, c))
    for r in range(n):
        kind = rng.integers(3)
        if kind == 0:
            rows[r, rng.integers(c)] = 1.0
        elif kind == 1:
            tied = rng.choice(c, size=rng.integers(2, c + 1), replace=False)
            rows[r, tied] = 1.0
        else:
            rows[r] = rng.integers(0, 6, size=c)
            if rows[r].sum() == 0:
                rows[r, rng.integers(c)] = 1.0
    return rows / rows.sum(axis=1, keepdims=True)


@st.composite
def runs(draw: st.DrawFn, strategies: tuple[str, ...] = ("random", "loss", "oracle")) -> Run:
    n = draw(st.integers(5, 60))
    c = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    true_dist = random_rows(rng, n, c)
    noisy = rng.integers(0, c, size=n)
    posteriors = random_rows(rng, n, c)
    multiplier = draw(st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0, 10.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    strategy = registry.create("strategy", draw(st.sampled_from(strategies)))
    task = make_task(true_dist, noisy, budget_multiplier=multiplier)
    ctx = make_context(task, posteriors=posteriors, seed=seed)
    return Run(task, strategy, ctx, seed, simulate(task, strategy, ctx, seed=seed))


def expert_label(p: np.ndarray, seed: int, sample: int, k: int) -> int:
    """The k-th draw of ``sample``: inverse CDF of its uniform, written out independently."""
    u = uniforms(seed, np.array([sample]), np.array([k]))[0]
    return min(int(np.searchsorted(np.cumsum(p), u, side="right")), p.size - 1)


def strict_majority(counts: np.ndarray) -> bool:
    top = np.sort(counts)
    return bool(top[-1] > top[-2])


@dataclass
class Step:
    sample: int
    correct_before: bool
    correct_after: bool
    counts_before: np.ndarray
    counts_after: np.ndarray
    majority_after_draw: list[bool]


def replay(run: Run) -> tuple[list[Step], np.ndarray]:
    """Replays the run's selections with the expert's draws; returns each step and final counts."""
    task, traj = run.task, run.traj
    counts = initial_counts(task)
    made = np.zeros(task.n_samples, dtype=np.int64)
    truth = task.true_labels
    steps = []
    for i, d in zip(traj.selected.tolist(), traj.draws.tolist(), strict=True):
        before = counts[i].copy()
        majority = []
        for k in range(made[i], made[i] + d):
            counts[i, expert_label(task.true_dist[i], run.seed, i, k)] += 1
            majority.append(strict_majority(counts[i]))
        made[i] += d
        steps.append(
            Step(
                i,
                bool(np.argmax(before) == truth[i]),
                bool(np.argmax(counts[i]) == truth[i]),
                before,
                counts[i].copy(),
                majority,
            )
        )
    return steps, counts


def out_of_samples(run: Run) -> bool:
    """Nothing left to select: every sample selected and (for reselect) none left wrong."""
    traj, task = run.traj, run.task
    if np.unique(traj.selected).size < task.n_samples:
        return False
    if not run.strategy.reselect:
        return True
    return bool(np.all(np.argmax(traj.final_counts, axis=1) == task.true_labels))


# --- cost and budget -------------------------------------------------------------------------


@PROPERTY
@given(runs())
def test_every_selection_costs_at_least_one_draw(run):
    assert run.traj.selected.size >= 1
    assert np.all(run.traj.draws >= 1)
    assert run.traj.total_spent >= run.traj.selected.size


@PROPERTY
@given(runs())
def test_spent_is_the_cumulative_sum_of_draws(run):
    np.testing.assert_array_equal(run.traj.spent, np.cumsum(run.traj.draws))


@PROPERTY
@given(runs())
def test_a_selection_starts_only_while_spent_is_within_budget(run):
    spent_before = run.traj.spent - run.traj.draws
    assert run.traj.budget == run.task.budget
    assert np.all(spent_before <= run.traj.budget)


@PROPERTY
@given(runs())
def test_run_stops_as_soon_as_spent_exceeds_budget_or_samples_run_out(run):
    traj = run.traj
    assert np.all(traj.spent[:-1] <= traj.budget)
    assert traj.spent[-1] > traj.budget or out_of_samples(run)


def test_last_selection_may_finish_past_the_budget():
    # One-hot truth, all 4 labels wrong: every selection costs exactly 2 draws; budget 3
    # -> selections start at 0 and 2 (<= 3), the second ends at 4 > 3.
    task = make_task(np.eye(2)[[0, 0, 0, 0]], [1, 1, 1, 1])
    traj = simulate(task, registry.create("strategy", "random"), make_context(task), seed=0, budget=3)
    assert traj.spent.tolist() == [2, 4]


@PROPERTY
@given(runs(), st.integers(1, 3))
def test_max_draws_caps_every_episode_of_a_run(run, cap):
    traj = simulate(run.task, run.strategy, run.ctx, seed=run.seed, max_draws=cap)
    assert np.all(traj.draws <= cap)


# --- label state and accuracy ----------------------------------------------------------------


@PROPERTY
@given(runs())
def test_final_accuracy_is_recomputed_from_final_counts(run):
    traj, task = run.traj, run.task
    correct = np.argmax(traj.final_counts, axis=1) == task.true_labels
    assert traj.accuracy[-1] == pytest.approx(100.0 * correct.mean())


@PROPERTY
@given(runs())
def test_initial_accuracy_is_that_of_the_noisy_labels(run):
    task = run.task
    assert run.traj.initial_accuracy == pytest.approx(100.0 * np.mean(task.noisy_labels == task.true_labels))


@PROPERTY
@given(runs())
def test_accuracy_changes_by_at_most_one_sample_per_step(run):
    traj, n = run.traj, run.task.n_samples
    steps = np.diff(np.concatenate([[traj.initial_accuracy], traj.accuracy])) * n / 100.0
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert set(np.round(steps).astype(int).tolist()) <= {-1, 0, 1}


@PROPERTY
@given(runs())
def test_accuracy_changes_only_when_the_selected_sample_correctness_changes(run):
    traj, n = run.traj, run.task.n_samples
    steps, _ = replay(run)
    diffs = np.diff(np.concatenate([[traj.initial_accuracy], traj.accuracy]))
    expected = [100.0 * (int(s.correct_after) - int(s.correct_before)) / n for s in steps]
    np.testing.assert_allclose(diffs, expected, atol=1e-9)


@PROPERTY
@given(runs())
def test_final_counts_are_initial_counts_plus_the_expert_draws(run):
    _, counts = replay(run)
    np.testing.assert_array_equal(run.traj.final_counts, counts)


@PROPERTY
@given(runs())
def test_samples_never_selected_keep_their_initial_label(run):
    untouched = np.setdiff1d(np.arange(run.task.n_samples), run.traj.selected)
    np.testing.assert_array_equal(run.traj.final_counts[untouched], initial_counts(run.task)[untouched])


@PROPERTY
@given(runs())
def test_each_episode_ends_at_its_first_strict_majority(run):
    steps, _ = replay(run)
    for s in steps:
        assert s.majority_after_draw[-1], f"sample {s.sample} stopped without a majority"
        assert not any(s.majority_after_draw[:-1]), f"sample {s.sample} drew past its majority"


@PROPERTY
@given(runs())
def test_mislabelled_left_splits_final_errors_into_clear_and_ambiguous(run):
    task, traj = run.task, run.traj
    wrong = np.argmax(traj.final_counts, axis=1) != task.true_labels
    assert traj.mislabelled_clear[-1] == np.sum(wrong & ~task.ambiguous)
    assert traj.mislabelled_ambiguous[-1] == np.sum(wrong & task.ambiguous)
    total_left = traj.mislabelled_clear + traj.mislabelled_ambiguous
    np.testing.assert_allclose(100.0 * (1 - total_left / task.n_samples), traj.accuracy)


# --- selection order -------------------------------------------------------------------------


@PROPERTY
@given(runs(("random", "loss")))
def test_non_reselect_strategies_select_each_sample_at_most_once(run):
    assert np.unique(run.traj.selected).size == run.traj.selected.size


@PROPERTY
@given(runs(("random", "loss")))
def test_static_strategies_select_in_decreasing_score_order(run):
    scores = run.strategy.score(run.ctx)
    chosen = scores[run.traj.selected]
    assert np.all(np.diff(chosen) <= 0)
    rest = np.setdiff1d(np.arange(run.task.n_samples), run.traj.selected)
    assert rest.size == 0 or chosen.min() >= scores[rest].max()


@PROPERTY
@given(runs(("oracle",)))
def test_oracle_reselects_only_samples_whose_majority_is_still_wrong(run):
    steps, _ = replay(run)
    seen: set[int] = set()
    for s in steps:
        if s.sample in seen:
            assert not s.correct_before, f"re-selected sample {s.sample} was already right"
        seen.add(s.sample)


@PROPERTY
@given(runs(("oracle",)))
def test_oracle_always_selects_a_highest_scoring_available_sample(run):
    task = run.task
    steps, _ = replay(run)
    counts = initial_counts(task)
    available = np.ones(task.n_samples, dtype=bool)
    for s in steps:
        scores = oracle_score(task.true_dist, counts)
        assert available[s.sample]
        assert scores[s.sample] >= scores[available].max() - 1e-12
        counts[s.sample] = s.counts_after
        available[s.sample] = not s.correct_after


def test_oracle_returns_to_a_sample_until_it_is_right():
    # Truth [0.6, 0.4] labelled 1, three clean one-hot samples, budget 50: for a seed whose
    # first episode on sample 0 ends on the wrong majority, the oracle comes back to it.
    task = make_task([[0.6, 0.4]] + [[1.0, 0.0]] * 3, [1, 0, 0, 0], budget_multiplier=50)
    oracle = registry.create("strategy", "oracle")
    for seed in range(200):
        traj = simulate(task, oracle, make_context(task, seed=seed), seed=seed)
        if np.sum(traj.selected == 0) >= 2:
            break
    else:
        pytest.fail("no seed made the oracle return to sample 0")
    assert np.argmax(traj.final_counts[0]) == 0


# --- seeds and ties --------------------------------------------------------------------------


@PROPERTY
@given(runs())
def test_identical_seeds_give_identical_runs(run):
    again = simulate(run.task, run.strategy, run.ctx, seed=run.seed)
    for field in ("selected", "draws", "spent", "accuracy", "final_counts"):
        np.testing.assert_array_equal(getattr(again, field), getattr(run.traj, field))


def test_numpy_integer_seed_gives_the_same_run_as_the_python_int():
    # Seeds iterated from an array (np.arange(5), a DataFrame column) are numpy integers.
    task = make_task(np.eye(2)[[0, 1, 0, 1]], [1, 1, 0, 0])
    random = registry.create("strategy", "random")
    expected = simulate(task, random, make_context(task, seed=1), seed=1)
    got = simulate(task, random, make_context(task, seed=1), seed=np.int64(1))
    np.testing.assert_array_equal(got.selected, expected.selected)
    np.testing.assert_array_equal(got.final_counts, expected.final_counts)


def toy_task(n: int = 40) -> CleaningTask:
    rng = np.random.default_rng(0)
    return make_task(rng.dirichlet(np.ones(3), size=n), rng.integers(0, 3, size=n))


def test_different_seeds_give_different_random_orders_and_expert_draws():
    task = toy_task()
    random = registry.create("strategy", "random")
    a = simulate(task, random, make_context(task, seed=0), seed=0)
    b = simulate(task, random, make_context(task, seed=1), seed=1)
    assert not np.array_equal(a.selected, b.selected)
    assert not np.array_equal(a.final_counts, b.final_counts)


def test_expert_answers_a_sample_the_same_whichever_strategy_selects_it():
    task = toy_task()
    posteriors = np.random.default_rng(1).dirichlet(np.ones(3), size=task.n_samples)
    by = {
        name: simulate(
            task,
            registry.create("strategy", name),
            make_context(task, posteriors=posteriors, seed=3),
            seed=3,
        )
        for name in ("random", "loss")
    }
    both = np.intersect1d(by["random"].selected, by["loss"].selected)
    assert both.size > 0
    np.testing.assert_array_equal(by["random"].final_counts[both], by["loss"].final_counts[both])


def equal_score_run(seed: int, n: int = 30) -> np.ndarray:
    # Uniform posteriors and identical labels: every loss score is log C / log C = 1.
    task = make_task(np.full((n, 2), 0.5), np.zeros(n, dtype=int))
    ctx = make_context(task, posteriors=np.full((n, 2), 0.5), seed=seed)
    loss = registry.create("strategy", "loss")
    return simulate(task, loss, ctx, seed=seed, budget=10 * n).selected


def test_equal_scores_are_ordered_by_a_seeded_permutation_not_by_index():
    first, again, other = equal_score_run(0), equal_score_run(0), equal_score_run(1)
    assert sorted(first.tolist()) == list(range(30))
    assert first.tolist() != list(range(30))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_ranking_orders_by_decreasing_score_and_shuffles_only_within_ties():
    scores = np.array([0.0, 2.0, 1.0, 2.0, 0.0, 2.0, 1.0])
    orders = {tuple(ranking(scores, seed).tolist()) for seed in range(20)}
    for order in orders:
        assert [scores[i] for i in order] == sorted(scores, reverse=True)
    assert len(orders) > 1
