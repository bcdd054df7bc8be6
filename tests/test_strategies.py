"""Each built-in strategy, loaded through the registry, on small hand-checked contexts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cleanlab.rank import get_label_quality_scores
from helpers import make_context, make_task, one_hot

from benchmark import registry
from benchmark.plugins import ScoringContext

LOG2 = math.log(2)

# Three 2-class samples labelled 0; the posterior agrees, is unsure, then disagrees.
POSTERIORS = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
LABELS_0 = np.array([[1, 0], [1, 0], [1, 0]])


def strategy(spec: str):
    return registry.create("strategy", spec)


def ctx_with(counts, posteriors=None, stochastic=None, true_dist=None, seed=0) -> ScoringContext:
    return ScoringContext(
        label_counts=np.asarray(counts, dtype=np.int64),
        posteriors=None if posteriors is None else np.asarray(posteriors, dtype=np.float64),
        stochastic=stochastic,
        true_dist=true_dist,
        seed=seed,
    )


def h2(p: float) -> float:
    """Binary entropy in bits."""
    return -sum(x * math.log(x) for x in (p, 1 - p) if x > 0) / LOG2


# --- random ----------------------------------------------------------------------------------


def test_random_scores_are_deterministic_for_a_seed():
    ctx = ctx_with(np.eye(3, dtype=np.int64)[np.zeros(50, dtype=int)], seed=4)
    np.testing.assert_array_equal(strategy("random").score(ctx), strategy("random").score(ctx))


def test_random_scores_differ_across_seeds():
    counts = np.eye(3, dtype=np.int64)[np.zeros(50, dtype=int)]
    a = strategy("random").score(ctx_with(counts, seed=4))
    b = strategy("random").score(ctx_with(counts, seed=5))
    assert not np.array_equal(np.argsort(a), np.argsort(b))


def test_random_needs_no_posteriors():
    assert strategy("random").requires == frozenset()
    assert strategy("random").score(ctx_with(LABELS_0)).shape == (3,)


# --- oracle ----------------------------------------------------------------------------------


def test_oracle_requires_the_truth_and_may_reselect():
    oracle = strategy("oracle")
    assert oracle.requires == frozenset({"truth"})
    assert oracle.reselect


def test_oracle_scores_mislabelled_one_hot_samples_above_correct_ones():
    # truth one-hot [0, 1, 0, 1], labels [0, 0, 1, 1]: samples 1 and 2 are wrong -> 0.5, else 0.
    task = make_task(one_hot([0, 1, 0, 1], 2), [0, 0, 1, 1])
    scores = strategy("oracle").score(make_context(task))
    np.testing.assert_allclose(scores, [0.0, 0.5, 0.5, 0.0])


def test_oracle_prefers_wrong_label_that_is_cheap_to_fix():
    # Both labelled 1 with truth class 0. Clear p = [0.9, 0.1]: (1 - 0.1) / (1 + 0.9) = 0.4737
    # ambiguous p = [0.6, 0.4]: (1 - 0.4) / (1 + 0.6) = 0.375.
    task = make_task([[0.9, 0.1], [0.6, 0.4]], [1, 1])
    scores = strategy("oracle").score(make_context(task))
    np.testing.assert_allclose(scores, [0.9 / 1.9, 0.6 / 1.6])


# --- loss ------------------------------------------------------------------------------------


def test_loss_is_cross_entropy_of_label_under_posterior():
    # -log2(0.9), -log2(0.5) = 1, -log2(0.2)
    scores = strategy("loss").score(ctx_with(LABELS_0, POSTERIORS))
    np.testing.assert_allclose(scores, [-math.log2(0.9), 1.0, -math.log2(0.2)], atol=1e-9)


def test_loss_ranks_the_sample_the_model_disagrees_with_first():
    scores = strategy("loss").score(ctx_with(LABELS_0, POSTERIORS))
    assert np.argsort(-scores).tolist() == [2, 1, 0]


def test_loss_uses_the_accumulated_label_distribution():
    # counts [2, 1] -> q = [2/3, 1/3]; p = [0.5, 0.5] -> CE = 1 whatever q is;
    # p = [0.8, 0.2] -> -(2/3 log2 0.8 + 1/3 log2 0.2)
    scores = strategy("loss").score(ctx_with([[2, 1], [2, 1]], [[0.5, 0.5], [0.8, 0.2]]))
    expected = [1.0, -(2 / 3 * math.log2(0.8) + 1 / 3 * math.log2(0.2))]
    np.testing.assert_allclose(scores, expected, atol=1e-9)


# --- entropy ---------------------------------------------------------------------------------


def test_entropy_scores_posterior_entropy_ignoring_labels():
    # H2(0.9) = 0.468996, H2(0.5) = 1, H2(0.2) = 0.721928
    a = strategy("entropy").score(ctx_with(LABELS_0, POSTERIORS))
    b = strategy("entropy").score(ctx_with([[0, 1], [0, 1], [0, 1]], POSTERIORS))
    np.testing.assert_allclose(a, [h2(0.9), 1.0, h2(0.2)], atol=1e-9)
    np.testing.assert_array_equal(a, b)


def test_entropy_ranks_the_most_uncertain_posterior_first():
    scores = strategy("entropy").score(ctx_with(LABELS_0, POSTERIORS))
    assert np.argsort(-scores).tolist() == [1, 2, 0]


# --- eq2 -------------------------------------------------------------------------------------


def test_eq2_default_is_cross_entropy_minus_entropy():
    # [-log2 0.9 - H2(0.9), 1 - 1, -log2 0.2 - H2(0.2)] = [-0.3170, 0, 1.6000]
    eq2 = strategy("eq2")
    assert eq2.params["hinge"] is None
    expected = [-math.log2(0.9) - h2(0.9), 0.0, -math.log2(0.2) - h2(0.2)]
    np.testing.assert_allclose(eq2.score(ctx_with(LABELS_0, POSTERIORS)), expected, atol=1e-9)


def test_eq2_with_hinge_subtracts_only_entropy_above_point_three():
    # H2(0.9) = 0.469 -> subtract 0.169; H2(0.5) = 1 -> 0.7; H2(0.2) = 0.722 -> 0.422
    scores = strategy("eq2[hinge=0.3]").score(ctx_with(LABELS_0, POSTERIORS))
    expected = [
        -math.log2(0.9) - (h2(0.9) - 0.3),
        1.0 - 0.7,
        -math.log2(0.2) - (h2(0.2) - 0.3),
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-9)


def test_eq2_hinge_leaves_low_entropy_samples_at_their_cross_entropy():
    # p = [0.05, 0.95], label 0: H2(0.05) = 0.2864 < 0.3 -> score = -log2 0.05 = 4.3219
    scores = strategy("eq2[hinge=0.3]").score(ctx_with([[1, 0]], [[0.05, 0.95]]))
    assert scores[0] == pytest.approx(-math.log2(0.05), abs=1e-9)


def test_eq2_ranks_clear_disagreement_first_and_the_unsure_sample_below_it():
    for spec in ("eq2", "eq2[hinge=0.3]"):
        scores = strategy(spec).score(ctx_with(LABELS_0, POSTERIORS))
        assert int(np.argmax(scores)) == 2, spec


# --- bald ------------------------------------------------------------------------------------


def test_bald_requires_stochastic_posteriors():
    assert strategy("bald").requires == frozenset({"stochastic"})


def test_bald_scores_disagreement_between_stochastic_posteriors():
    # Sample 0: all T agree -> 0. Sample 1: [1,0] and [0,1] -> 1.
    # Sample 2: [0.5,0.5] and [1,0] -> H2(0.75) - 0.5 = 0.311278.
    stochastic = np.array(
        [
            [[0.7, 0.3], [1.0, 0.0], [0.5, 0.5]],
            [[0.7, 0.3], [0.0, 1.0], [1.0, 0.0]],
        ]
    )
    scores = strategy("bald").score(ctx_with(LABELS_0, stochastic=stochastic))
    np.testing.assert_allclose(scores, [0.0, 1.0, h2(0.75) - 0.5], atol=1e-9)


# --- cleanlab --------------------------------------------------------------------------------

CLEANLAB_METHODS = ["self_confidence", "normalized_margin", "confidence_weighted_entropy"]


def cleanlab_context() -> ScoringContext:
    rng = np.random.default_rng(0)
    posteriors = rng.dirichlet(np.ones(3), size=12)
    labels = np.argmax(posteriors, axis=1)
    # Sample 5 is labelled 0 but the model is nearly certain it is class 2.
    posteriors[5] = [0.01, 0.02, 0.97]
    labels[5] = 0
    return ctx_with(np.eye(3, dtype=np.int64)[labels], posteriors)


def test_cleanlab_default_method_is_self_confidence():
    assert strategy("cleanlab").params["method"] == "self_confidence"


@pytest.mark.parametrize("method", CLEANLAB_METHODS)
def test_cleanlab_score_is_one_minus_cleanlab_label_quality(method):
    ctx = cleanlab_context()
    assert ctx.posteriors is not None
    quality = get_label_quality_scores(ctx.current_labels, ctx.posteriors, method=method)
    scores = strategy(f"cleanlab[method={method}]").score(ctx)
    np.testing.assert_allclose(scores, 1.0 - quality, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", CLEANLAB_METHODS)
def test_cleanlab_ranks_the_obviously_mislabelled_sample_first(method):
    scores = strategy(f"cleanlab[method={method}]").score(cleanlab_context())
    assert int(np.argmax(scores)) == 5
