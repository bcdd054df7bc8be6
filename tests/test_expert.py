"""The simulated expert (benchmark.simulation.expert): i.i.d. seeded draws and the stopping rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.simulation.expert import annotate, cumulative, draw_labels, has_strict_majority, uniforms


def run_annotate(counts, p, *, seed=0, samples=None, draws_made=None, max_draws=None):
    counts = np.atleast_2d(np.asarray(counts, dtype=np.int64))
    p = np.atleast_2d(np.asarray(p, dtype=np.float64))
    m = counts.shape[0]
    samples = np.arange(m) if samples is None else np.asarray(samples)
    draws_made = np.zeros(m, dtype=np.int64) if draws_made is None else np.asarray(draws_made)
    return annotate(counts, cumulative(p), samples, draws_made, seed, max_draws)


# --- stopping rule ---------------------------------------------------------------------------


def test_strict_majority_means_largest_count_exceeds_second_largest():
    counts = np.array([[2, 1, 0], [2, 2, 0], [1, 1, 1], [0, 3, 3], [0, 0, 1]])
    assert has_strict_majority(counts).tolist() == [True, False, False, False, True]


def test_initial_label_counts_as_vote_so_agreeing_expert_needs_one_draw():
    # counts [1, 0], truth one-hot at 0: one draw gives [2, 0], a majority.
    new, draws = run_annotate([[1, 0]], [[1.0, 0.0]])
    assert draws.tolist() == [1]
    assert new.tolist() == [[2, 0]]


def test_disagreeing_expert_needs_two_draws_to_break_the_tie_with_initial_label():
    # counts [0, 1], truth one-hot at 0: [1, 1] is a tie after one draw, then [2, 1].
    new, draws = run_annotate([[0, 1]], [[1.0, 0.0]])
    assert draws.tolist() == [2]
    assert new.tolist() == [[2, 1]]


def test_at_least_one_draw_even_when_counts_already_have_a_majority():
    # counts [3, 1, 0] already have a majority; truth one-hot at 1 -> [3, 2, 0] after one draw.
    new, draws = run_annotate([[3, 1, 0]], [[0.0, 1.0, 0.0]])
    assert draws.tolist() == [1]
    assert new.tolist() == [[3, 2, 0]]


def test_a_tie_between_the_two_largest_counts_is_not_a_majority():
    # counts [2, 2, 0], truth one-hot at 2: [2,2,1] and [2,2,2] have no strict majority.
    new, draws = run_annotate([[2, 2, 0]], [[0.0, 0.0, 1.0]])
    assert draws.tolist() == [3]
    assert new.tolist() == [[2, 2, 3]]


def test_max_draws_caps_an_episode():
    # counts [3, 3, 0], truth one-hot at 2: [3,3,1], [3,3,2], [3,3,3] have no strict majority,
    # [3,3,4] has: 4 draws; a cap of 2 stops at [3, 3, 2].
    uncapped, n_uncapped = run_annotate([[3, 3, 0]], [[0.0, 0.0, 1.0]])
    capped, n_capped = run_annotate([[3, 3, 0]], [[0.0, 0.0, 1.0]], max_draws=2)
    assert n_uncapped.tolist() == [4] and uncapped.tolist() == [[3, 3, 4]]
    assert n_capped.tolist() == [2] and capped.tolist() == [[3, 3, 2]]


def test_annotate_does_not_modify_its_input_counts():
    counts = np.array([[0, 1]], dtype=np.int64)
    annotate(counts, cumulative(np.array([[1.0, 0.0]])), np.array([0]), np.array([0]), 0)
    assert counts.tolist() == [[0, 1]]


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    weights=st.lists(st.integers(0, 4), min_size=2, max_size=5).filter(lambda w: sum(w) > 0),
    data=st.data(),
)
def test_annotate_stops_at_the_first_strict_majority_of_its_draw_sequence(seed, weights, data):
    p = np.asarray(weights, dtype=np.float64) / sum(weights)
    n_classes = p.size
    start = data.draw(st.integers(0, n_classes - 1))
    sample = data.draw(st.integers(0, 10_000))
    new, draws = run_annotate(np.eye(n_classes, dtype=np.int64)[start], p, seed=seed, samples=[sample])
    # Replay the same draw sequence one label at a time.
    counts = np.eye(n_classes, dtype=np.int64)[start]
    cdf = cumulative(p[None, :])
    k = 0
    while True:
        label = draw_labels(cdf, uniforms(seed, np.array([sample]), np.array([k])))[0]
        counts[label] += 1
        k += 1
        top = np.sort(counts)
        if top[-1] > top[-2]:
            break
    assert draws[0] == k
    assert new[0].tolist() == counts.tolist()


def test_a_resumed_episode_continues_the_sample_own_draw_sequence():
    # An episode that starts with draws_made = 3 uses draws 3, 4, ... of that sample.
    p = np.array([[0.4, 0.35, 0.25]])
    cdf = cumulative(p)
    new, n = run_annotate([[0, 0, 1]], p, seed=11, samples=[42], draws_made=[3])
    labels = draw_labels(np.repeat(cdf, n[0], axis=0), uniforms(11, np.full(n[0], 42), 3 + np.arange(n[0])))
    expected = np.array([0, 0, 1]) + np.bincount(labels, minlength=3)
    assert new[0].tolist() == expected.tolist()


def test_vectorised_annotation_equals_one_sample_at_a_time():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=30)
    counts = np.eye(4, dtype=np.int64)[rng.integers(0, 4, size=30)]
    samples = rng.permutation(1000)[:30]
    together, n_together = run_annotate(counts, p, seed=5, samples=samples)
    for j in range(30):
        alone, n_alone = run_annotate(counts[j : j + 1], p[j : j + 1], seed=5, samples=samples[j : j + 1])
        assert n_alone[0] == n_together[j]
        assert alone[0].tolist() == together[j].tolist()


# --- draws -----------------------------------------------------------------------------------


def chi_square(observed: np.ndarray, p: np.ndarray) -> float:
    expected = observed.sum() * p
    keep = expected > 0
    return float(np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep]))


def test_draws_across_samples_follow_the_true_distribution():
    # 4 classes, one with probability 0: it must never be drawn. chi2 with 2 dof: 99.99 % < 18.4.
    p = np.array([0.5, 0.0, 0.2, 0.3])
    m = 200_000
    u = uniforms(7, np.arange(m), np.zeros(m, dtype=np.int64))
    labels = draw_labels(np.repeat(cumulative(p[None, :]), m, axis=0), u)
    observed = np.bincount(labels, minlength=4)
    assert observed[1] == 0
    assert chi_square(observed, p) < 18.4


def test_draws_of_one_sample_over_its_draw_index_follow_the_true_distribution():
    p = np.array([0.1, 0.6, 0.3])
    m = 100_000
    u = uniforms(123, np.full(m, 9), np.arange(m))
    labels = draw_labels(np.repeat(cumulative(p[None, :]), m, axis=0), u)
    assert chi_square(np.bincount(labels, minlength=3), p) < 18.4


def test_successive_draws_of_a_sample_are_uncorrelated():
    m = 100_000
    u = uniforms(1, np.full(m, 3), np.arange(m))
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02
    # Uniform on [0, 1): mean 1/2, variance 1/12.
    assert u.min() >= 0.0 and u.max() < 1.0
    assert u.mean() == pytest.approx(0.5, abs=0.005)
    assert u.var() == pytest.approx(1 / 12, abs=0.002)


def test_draw_labels_inverts_the_cdf_at_class_boundaries():
    # p = [0.25, 0.25, 0.5] -> cdf [0.25, 0.5, 1]: u in [0, .25) -> 0, [.25, .5) -> 1, else 2.
    cdf = np.repeat(cumulative(np.array([[0.25, 0.25, 0.5]])), 5, axis=0)
    u = np.array([0.0, 0.2499, 0.25, 0.5, 0.9999])
    assert draw_labels(cdf, u).tolist() == [0, 0, 1, 2, 2]


# --- uniforms --------------------------------------------------------------------------------


def test_uniforms_are_a_pure_function_of_seed_sample_and_draw():
    samples = np.array([0, 5, 5, 17, 2**40])
    draws = np.array([0, 0, 3, 1, 7])
    first = uniforms(99, samples, draws)
    again = uniforms(99, samples, draws)
    one_by_one = [uniforms(99, samples[j : j + 1], draws[j : j + 1])[0] for j in range(5)]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, one_by_one)


def test_uniforms_differ_across_seeds():
    samples, draws = np.arange(1000), np.zeros(1000, dtype=np.int64)
    a, b = uniforms(0, samples, draws), uniforms(1, samples, draws)
    assert np.mean(a == b) < 0.01
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1


def test_uniforms_differ_across_samples_and_draws():
    grid_s, grid_k = np.meshgrid(np.arange(100), np.arange(100), indexing="ij")
    u = uniforms(0, grid_s.ravel(), grid_k.ravel())
    assert np.unique(u).size == u.size


@pytest.mark.parametrize("seed_type", [np.int64, np.int32, np.uint64])
def test_uniforms_accept_numpy_integer_seeds(seed_type):
    # A seed taken from an array (np.arange(5), a DataFrame column) is a numpy integer.
    samples, draws = np.arange(4), np.zeros(4, dtype=np.int64)
    np.testing.assert_array_equal(uniforms(seed_type(3), samples, draws), uniforms(3, samples, draws))
