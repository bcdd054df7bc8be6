"""Where a strategy's first picks fall (benchmark.simulation.diagnostics), on hand-made tasks."""

from __future__ import annotations

import math

import numpy as np
from helpers import make_task

from benchmark.simulation.diagnostics import PICK_COLUMNS, first_picks

CLEAR, AMBIGUOUS = [1.0, 0.0], [0.55, 0.45]


def test_shares_of_the_top_k_by_group() -> None:
    # samples 0, 1 mislabelled (k = 2); 2 ambiguous and correct; 3, 4 clear and correct
    task = make_task([CLEAR, CLEAR, AMBIGUOUS, CLEAR, CLEAR], [1, 1, 0, 0, 0])
    assert first_picks(task, np.array([0.9, 0.1, 0.8, 0.0, 0.2]), seed=0) == {
        "picks_mislabelled": 0.5,  # sample 0
        "picks_ambiguous_correct": 0.5,  # sample 2
        "picks_clear_correct": 0.0,
    }
    assert first_picks(task, np.array([0.1, 0.2, 0.0, 0.9, 0.5]), seed=0)["picks_clear_correct"] == 1.0
    assert first_picks(task, np.array([0.7, 0.9, 0.0, 0.1, 0.2]), seed=0)["picks_mislabelled"] == 1.0


def test_the_shares_sum_to_one_and_ties_follow_the_seed() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 2, 200)
    noisy = np.where(rng.random(200) < 0.3, 1 - true, true)
    dist = np.where(rng.random(200)[:, None] < 0.2, [[0.5, 0.5]], np.eye(2)[true])
    task = make_task(dist, noisy)
    flat = np.zeros(200)  # every score tied: the seed's permutation decides
    a, b = first_picks(task, flat, seed=1), first_picks(task, flat, seed=2)
    assert math.isclose(sum(a.values()), 1.0)
    assert a != b
    assert a == first_picks(task, flat, seed=1)


def test_no_mislabelled_sample_gives_nan() -> None:
    task = make_task([CLEAR, CLEAR], [0, 0])
    assert all(math.isnan(v) for v in first_picks(task, np.array([1.0, 0.0]), seed=0).values())
    assert set(first_picks(task, np.array([1.0, 0.0]), seed=0)) == set(PICK_COLUMNS)
