"""The per-step reference loop (benchmark.simulation.reference) and the strategy contract it backs.

The fast simulator scores once and sorts once, which is right only for row-local strategies;
the reference loop re-scores every sample at every step, as the paper's reference code does.
Both follow the same rules with the same expert, so for row-local strategies they must give
identical runs, and a strategy that declares ``row_local = False`` must be run by the loop.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_context, make_task
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import registry
from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.reference import reference_simulate
from benchmark.simulation.scoring import cross_entropy
from benchmark.simulation.simulator import MissingInputError, StrategyError, simulate

PROPERTY = settings(max_examples=40, deadline=None)


def random_case(seed: int, n: int, c: int, multiplier: float):
    rng = np.random.default_rng(seed)
    dist = rng.dirichlet(np.full(c, 0.4), size=n)
    # a few one-hot rows and exact ties, where tie-breaking decides the order
    dist[: n // 5] = np.eye(c)[rng.integers(0, c, n // 5)]
    noisy = rng.integers(0, c, n)
    posteriors = rng.dirichlet(np.ones(c), size=n)
    posteriors[n // 5 : 2 * n // 5] = 1.0 / c
    return make_task(dist, noisy, budget_multiplier=multiplier), posteriors


def assert_same_run(a, b) -> None:
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_array_equal(a.draws, b.draws)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    np.testing.assert_array_equal(a.mislabelled_clear, b.mislabelled_clear)
    np.testing.assert_array_equal(a.mislabelled_ambiguous, b.mislabelled_ambiguous)
    np.testing.assert_array_equal(a.final_counts, b.final_counts)
    np.testing.assert_array_equal(a.refits, b.refits)


@PROPERTY
@given(
    case=st.integers(0, 10_000),
    n=st.integers(3, 50),
    c=st.integers(2, 5),
    multiplier=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]),
    spec=st.sampled_from(["random", "loss", "eq2", "entropy", "oracle", "cleanlab"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_fast_simulator_gives_the_reference_loops_run(case, n, c, multiplier, spec, seed):
    task, post = random_case(case, n, c, multiplier)
    strategy = registry.create("strategy", spec)
    ctx = make_context(task, posteriors=post, seed=seed)
    assert_same_run(
        simulate(task, strategy, ctx, seed=seed), reference_simulate(task, strategy, ctx, seed=seed)
    )


@PROPERTY
@given(case=st.integers(0, 10_000), every=st.integers(1, 40), seed=st.integers(0, 1000))
def test_active_runs_agree_with_the_reference_loop(case, every, seed):
    task, post = random_case(case, 40, 3, 4.0)
    strategy = registry.create("strategy", "loss")
    ctx = make_context(task, posteriors=post, seed=seed)

    def refit(counts: np.ndarray):  # a "model" that believes the current labels a little more
        return 0.5 * post + 0.5 * counts / counts.sum(axis=1, keepdims=True), None

    fast = simulate(task, strategy, ctx, seed=seed, refit=refit, refit_every=every)
    slow = reference_simulate(task, strategy, ctx, seed=seed, refit=refit, refit_every=every)
    assert_same_run(fast, slow)


def test_the_max_draws_cap_applies_in_the_reference_loop_too():
    task, post = random_case(3, 30, 4, 4.0)
    strategy = registry.create("strategy", "loss")
    ctx = make_context(task, posteriors=post, seed=1)
    slow = reference_simulate(task, strategy, ctx, seed=1, max_draws=2)
    assert slow.draws.max() <= 2
    assert_same_run(simulate(task, strategy, ctx, seed=1, max_draws=2), slow)


class ClassRelativeLoss(Strategy):
    """Loss relative to the mean loss of the samples that currently share the label: a score
    that depends on other samples' labels, so it changes as they are relabelled."""

    name = "class_relative_loss"
    row_local = False

    def score(self, ctx: ScoringContext) -> np.ndarray:
        loss = cross_entropy(ctx.label_dist, ctx.posteriors)
        labels = ctx.current_labels
        means = np.array([loss[labels == k].mean() for k in range(ctx.n_classes)])
        return loss - means[labels]


class ClassRelativeLossSortedOnce(ClassRelativeLoss):
    name = "class_relative_loss_sorted_once"
    row_local = True  # a false declaration: the simulator then sorts once


def dataset_wide_case():
    rng = np.random.default_rng(11)
    n, c = 300, 3
    truth = rng.integers(0, c, n)
    dist = np.eye(c)[truth] * 0.7 + 0.1
    noisy = np.where(rng.random(n) < 0.3, rng.integers(0, c, n), truth)
    post = 0.5 * dist + 0.5 * rng.dirichlet(np.ones(c), size=n)
    return make_task(dist, noisy, budget_multiplier=2.0), post


def test_a_strategy_that_is_not_row_local_is_run_by_the_reference_loop():
    task, post = dataset_wide_case()
    ctx = make_context(task, posteriors=post, seed=2)
    strategy = ClassRelativeLoss()
    assert_same_run(simulate(task, strategy, ctx, seed=2), reference_simulate(task, strategy, ctx, seed=2))


def test_sorting_once_would_simulate_a_dataset_wide_score_wrongly():
    # The reason row_local exists: the same score sorted once gives another run.
    task, post = dataset_wide_case()
    ctx = make_context(task, posteriors=post, seed=2)
    right = simulate(task, ClassRelativeLoss(), ctx, seed=2)
    wrong = simulate(task, ClassRelativeLossSortedOnce(), ctx, seed=2)
    assert not np.array_equal(right.selected, wrong.selected)


def test_strategies_are_row_local_unless_they_say_otherwise():
    for info in registry.discover("strategy").values():
        if info.cls is not None and info.origin.endswith(".py"):
            assert info.cls.row_local is True, info.name


class Infinite(Strategy):
    name = "infinite"
    requires = frozenset()

    def score(self, ctx: ScoringContext) -> np.ndarray:
        scores = np.zeros(ctx.n_samples)
        scores[3] = np.inf
        return scores


class NeedsPosteriors(Strategy):
    name = "needs_posteriors"

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return ctx.posteriors.max(axis=1)


@pytest.mark.parametrize("simulator", [simulate, reference_simulate])
def test_infinite_scores_are_refused_naming_the_strategy(simulator):
    task, post = random_case(0, 10, 2, 2.0)
    with pytest.raises(StrategyError, match=r"strategy infinite returned non-finite scores \(1 \+inf"):
        simulator(task, Infinite(), make_context(task, posteriors=post), seed=0)


@pytest.mark.parametrize("simulator", [simulate, reference_simulate])
def test_the_engine_checks_what_a_strategy_requires_before_scoring(simulator):
    task, _ = random_case(0, 10, 2, 2.0)
    with pytest.raises(MissingInputError, match=r"strategy needs_posteriors needs posteriors \(N x C\)"):
        simulator(task, NeedsPosteriors(), make_context(task), seed=0)
    with pytest.raises(MissingInputError, match="oracle needs the true label distribution"):
        simulator(task, registry.create("strategy", "oracle"), make_context(task, with_truth=False), seed=0)
