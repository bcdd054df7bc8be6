"""The paper's scoring functions (benchmark.simulation.scoring) on hand-computed cases.

All logarithms are normalised by log C, so for C = 2 they are log2 and for C = 3 log3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.simulation.scoring import (
    bald,
    correctness_minus_difficulty,
    cross_entropy,
    entropy,
    expected_draws,
    oracle_score,
)

LOG2, LOG3 = math.log(2), math.log(3)
# H([0.25, 0.75]) / log 2 = -(0.25 log 0.25 + 0.75 log 0.75) / log 2 = 0.8112781...
H_QUARTER = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / LOG2


def approx(x: float) -> object:
    # LOG_EPS = 1e-12 inside the logs shifts results by ~1e-11.
    return pytest.approx(x, abs=1e-9)


# --- cross-entropy ---------------------------------------------------------------------------


def test_cross_entropy_of_one_hot_label_is_minus_log_prob_over_log2_for_two_classes():
    # q = [1, 0], p = [0.25, 0.75]: -log(0.25) / log 2 = 2
    assert cross_entropy(np.array([[1.0, 0.0]]), np.array([[0.25, 0.75]]))[0] == approx(2.0)


def test_cross_entropy_is_normalised_by_log3_for_three_classes():
    # q = [0, 1, 0], p = [0.5, 0.25, 0.25]: -log(0.25) / log 3 = 2 log 2 / log 3 = 1.26186...
    ce = cross_entropy(np.array([[0.0, 1.0, 0.0]]), np.array([[0.5, 0.25, 0.25]]))
    assert ce[0] == approx(2 * LOG2 / LOG3)


def test_cross_entropy_weights_log_probs_by_soft_label_distribution():
    # q = [2/3, 1/3] (counts [2, 1]), p = [0.5, 0.5]: -(2/3 + 1/3) log 0.5 / log 2 = 1
    # q = [0.5, 0.5], p = [0.25, 0.75]: -(0.5 log 0.25 + 0.5 log 0.75) / log 2 = 1.20751...
    q = np.array([[2 / 3, 1 / 3], [0.5, 0.5]])
    p = np.array([[0.5, 0.5], [0.25, 0.75]])
    expected = [1.0, -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) / LOG2]
    np.testing.assert_allclose(cross_entropy(q, p), expected, atol=1e-9)


def test_cross_entropy_stays_finite_when_the_label_has_zero_posterior():
    ce = cross_entropy(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    # -log(1e-12) / log 2 = 39.86...
    assert np.isfinite(ce[0]) and ce[0] == pytest.approx(-math.log(1e-12) / LOG2, rel=1e-6)


def test_cross_entropy_is_higher_when_posterior_disagrees_with_label():
    q = np.array([[1.0, 0.0], [1.0, 0.0]])
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    agree, disagree = cross_entropy(q, p)
    assert disagree > agree


# --- entropy ---------------------------------------------------------------------------------


def test_entropy_is_one_for_uniform_and_zero_for_one_hot():
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(entropy(p), [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(entropy(np.full((1, 3), 1 / 3)), [1.0], atol=1e-9)


def test_entropy_of_two_and_three_class_rows_matches_hand_values():
    # [0.25, 0.75]: 0.811278...; [0.25, 0.25, 0.5]: (0.5 log 4 + 0.5 log 2) / log 3
    #   = 1.5 log 2 / log 3 = 0.946395...
    assert entropy(np.array([[0.25, 0.75]]))[0] == approx(H_QUARTER)
    assert entropy(np.array([[0.25, 0.25, 0.5]]))[0] == approx(1.5 * LOG2 / LOG3)


# --- Eq. 2 -----------------------------------------------------------------------------------


def test_eq2_without_hinge_is_cross_entropy_minus_entropy():
    # q = [1, 0], p = [0.25, 0.75]: CE = 2, H = 0.811278 -> 1.188722
    s = correctness_minus_difficulty(np.array([[1.0, 0.0]]), np.array([[0.25, 0.75]]))
    assert s[0] == approx(2.0 - H_QUARTER)


def test_eq2_with_hinge_subtracts_only_entropy_above_the_hinge():
    # H = 0.811278 > 0.3: 2 - (0.811278 - 0.3) = 1.488722
    s = correctness_minus_difficulty(np.array([[1.0, 0.0]]), np.array([[0.25, 0.75]]), hinge=0.3)
    assert s[0] == approx(2.0 - (H_QUARTER - 0.3))


def test_eq2_with_hinge_subtracts_nothing_when_entropy_is_below_the_hinge():
    # q = [0, 1], p = [0.95, 0.05]: CE = -log(0.05)/log 2 = 4.321928, H = 0.286397 < 0.3
    q, p = np.array([[0.0, 1.0]]), np.array([[0.95, 0.05]])
    h = -(0.95 * math.log(0.95) + 0.05 * math.log(0.05)) / LOG2
    ce = -math.log(0.05) / LOG2
    assert h < 0.3
    assert correctness_minus_difficulty(q, p, hinge=0.3)[0] == approx(ce)
    assert correctness_minus_difficulty(q, p)[0] == approx(ce - h)


def test_eq2_prefers_confidently_wrong_label_over_ambiguous_sample():
    # Same cross-entropy-ish disagreement, but the second posterior is ambiguous.
    q = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    p = np.array([[0.05, 0.9, 0.05], [0.05, 0.475, 0.475]])
    clear, ambiguous = correctness_minus_difficulty(q, p)
    assert clear > ambiguous


# --- BALD ------------------------------------------------------------------------------------


def test_bald_is_zero_when_all_stochastic_samples_agree():
    row = np.array([0.2, 0.3, 0.5])
    stochastic = np.broadcast_to(row, (4, 2, 3)).copy()
    np.testing.assert_allclose(bald(stochastic), [0.0, 0.0], atol=1e-9)


def test_bald_is_positive_when_stochastic_samples_disagree():
    stochastic = np.array([[[0.9, 0.1]], [[0.1, 0.9]], [[0.5, 0.5]]])
    assert bald(stochastic)[0] > 0.1


def test_bald_on_two_samples_one_sample_two_classes_matches_formula():
    # T=2, N=1, C=2: p1 = [0.5, 0.5] (H = 1), p2 = [1, 0] (H = 0).
    # mean = [0.75, 0.25], H(mean) = 0.811278; mean H = 0.5 -> BALD = 0.311278
    stochastic = np.array([[[0.5, 0.5]], [[1.0, 0.0]]])
    assert bald(stochastic)[0] == approx(H_QUARTER - 0.5)


def test_bald_is_one_for_two_confident_samples_that_disagree():
    # mean = [0.5, 0.5] (H = 1), each sample one-hot (H = 0) -> 1
    assert bald(np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))[0] == approx(1.0)


# --- expected draws (the reference recursion, truncated at depth 3) ---------------------------


def reference_expected_draws(p: list[float], current: int, max_depth: int = 3) -> float:
    """A straightforward transcription of the reference code's recursion."""

    def f(remaining: frozenset[int], ctr: int) -> float:
        ctr += 1
        if not remaining:
            return 0.0
        if ctr >= max_depth:
            return sum(p[j] for j in remaining)
        return sum(p[j] * (1.0 + f(remaining - {j}, ctr)) for j in remaining)

    others = frozenset(range(len(p))) - {current}
    return 1.0 + f(others, 0)


@st.composite
def distribution_and_label(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    n_classes = draw(st.sampled_from([2, 3, 10]))
    weights = draw(
        st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n_classes, max_size=n_classes).filter(
            lambda w: sum(w) > 1e-6
        )
    )
    p = np.asarray(weights) / sum(weights)
    return p, draw(st.integers(0, n_classes - 1))


@settings(max_examples=150, deadline=None)
@given(distribution_and_label())
def test_expected_draws_equals_reference_recursion(case):
    p, current = case
    got = expected_draws(p[None, :], np.array([current]))[0]
    assert got == pytest.approx(reference_expected_draws(p.tolist(), current), rel=1e-12, abs=1e-12)


def test_expected_draws_on_hand_cases():
    # p = [0.7, 0.3]: current 0 -> 1 + 0.3 = 1.3; current 1 -> 1 + 0.7 = 1.7
    # p = [0.5, 0.3, 0.2], current 0 -> 1 + 0.3 (1 + 0.2) + 0.2 (1 + 0.3) = 1.62
    np.testing.assert_allclose(
        expected_draws(np.array([[0.7, 0.3], [0.7, 0.3]]), np.array([0, 1])), [1.3, 1.7]
    )
    assert expected_draws(np.array([[0.5, 0.3, 0.2]]), np.array([0]))[0] == pytest.approx(1.62)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_expected_draws_for_one_hot_is_one_if_right_and_two_if_wrong(n_classes):
    p = np.zeros((2, n_classes))
    p[:, 1] = 1.0
    np.testing.assert_allclose(expected_draws(p, np.array([1, 0])), [1.0, 2.0])


def test_expected_draws_is_vectorised_row_by_row():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=20)
    current = rng.integers(0, 4, size=20)
    expected = [reference_expected_draws(row.tolist(), int(c)) for row, c in zip(p, current, strict=True)]
    np.testing.assert_allclose(expected_draws(p, current), expected, rtol=1e-12)


# --- oracle score ----------------------------------------------------------------------------


def test_oracle_score_is_error_of_current_majority_over_expected_draws():
    # p = [0.7, 0.3]; counts [0, 1] -> current 1: (1 - 0.3) / 1.7 = 0.411765
    #                 counts [1, 0] -> current 0: (1 - 0.7) / 1.3 = 0.230769
    p = np.array([[0.7, 0.3], [0.7, 0.3]])
    counts = np.array([[0, 1], [1, 0]])
    np.testing.assert_allclose(oracle_score(p, counts), [0.7 / 1.7, 0.3 / 1.3])


def test_oracle_score_for_one_hot_truth_is_half_if_wrong_and_zero_if_right():
    # wrong: (1 - 0) / 2 = 0.5; right: (1 - 1) / 1 = 0
    p = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    counts = np.array([[0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(oracle_score(p, counts), [0.5, 0.0])


def test_oracle_score_uses_majority_of_accumulated_counts():
    # counts [1, 3, 0] -> current 1; p = [0.5, 0.3, 0.2]:
    # E = 1 + 0.5 (1 + 0.2) + 0.2 (1 + 0.5) = 1.9; score = (1 - 0.3) / 1.9
    p = np.array([[0.5, 0.3, 0.2]])
    assert oracle_score(p, np.array([[1, 3, 0]]))[0] == pytest.approx(0.7 / 1.9)
