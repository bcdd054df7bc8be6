"""Per-run metrics (benchmark.simulation.metrics): curves, AUC, annotations to a target, corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import make_context, make_task, one_hot

from benchmark import registry
from benchmark.simulation.metrics import annotations_to_reach, auc, curve_on_grid, curve_points, run_metrics
from benchmark.simulation.simulator import Trajectory, simulate


def trajectory(
    spent: list[int],
    accuracy: list[float],
    *,
    initial_accuracy: float,
    budget: int,
    final_counts: np.ndarray | None = None,
) -> Trajectory:
    spent_arr = np.asarray(spent, dtype=np.int64)
    draws = np.diff(np.concatenate([[0], spent_arr]))
    zeros = np.zeros(len(spent), dtype=np.int64)
    return Trajectory(
        selected=np.arange(len(spent)),
        draws=draws,
        spent=spent_arr,
        accuracy=np.asarray(accuracy, dtype=np.float64),
        mislabelled_clear=zeros,
        mislabelled_ambiguous=zeros,
        initial_accuracy=initial_accuracy,
        initial_clear=0,
        initial_ambiguous=0,
        budget=budget,
        final_counts=np.zeros((1, 2), dtype=np.int64) if final_counts is None else final_counts,
    )


def test_curve_points_start_at_zero_annotations_with_initial_accuracy():
    x, y = curve_points(trajectory([2, 5], [85.0, 90.0], initial_accuracy=80.0, budget=5))
    assert x.tolist() == [0.0, 2.0, 5.0]
    assert y.tolist() == [80.0, 85.0, 90.0]


def test_curve_on_grid_interpolates_linearly_and_holds_the_last_value():
    grid = curve_on_grid(np.array([0.0, 2.0]), np.array([80.0, 90.0]), 4)
    assert grid.tolist() == [80.0, 85.0, 90.0, 90.0, 90.0]


def test_auc_of_flat_curve_at_80_percent_is_0_8():
    assert auc(np.array([0.0, 10.0]), np.array([80.0, 80.0]), 10) == pytest.approx(0.8)


def test_auc_of_linear_rise_from_80_to_100_over_the_budget_is_0_9():
    # area = 10 * (80 + 100) / 2 = 900; / (10 * 100) = 0.9
    assert auc(np.array([0.0, 10.0]), np.array([80.0, 100.0]), 10) == pytest.approx(0.9)
    # The same line through an intermediate point.
    assert auc(np.array([0.0, 3.0, 10.0]), np.array([80.0, 86.0, 100.0]), 10) == pytest.approx(0.9)


def test_auc_holds_final_accuracy_past_the_last_point():
    # rise 80 -> 100 over 5 annotations (area 450), then flat at 100 for 5 (area 500): 0.95
    assert auc(np.array([0.0, 5.0]), np.array([80.0, 100.0]), 10) == pytest.approx(0.95)


def test_auc_ignores_points_past_the_budget():
    # The grid stops at 10: a rise 80 -> 100 over 20 annotations reaches 90 at 10.
    # area = 10 * (80 + 90) / 2 = 850 -> 0.85
    assert auc(np.array([0.0, 20.0]), np.array([80.0, 100.0]), 10) == pytest.approx(0.85)


def test_annotations_to_reach_is_first_point_at_or_above_target():
    x = np.array([0.0, 3.0, 7.0, 9.0])
    y = np.array([80.0, 90.0, 95.0, 97.0])
    assert annotations_to_reach(x, y, 95.0) == 7.0
    assert annotations_to_reach(x, y, 91.0) == 7.0
    assert annotations_to_reach(x, y, 80.0) == 0.0


def test_annotations_to_reach_is_nan_when_target_is_never_reached():
    assert math.isnan(annotations_to_reach(np.array([0.0, 3.0]), np.array([80.0, 90.0]), 95.0))


def test_pct_mislabelled_corrected_counts_only_initially_wrong_samples_now_right():
    # truth [0, 0, 1, 1, 0], noisy [1, 0, 0, 1, 1]: initially wrong {0, 2, 4}.
    # final majorities [0, 1, 0, 1, 0]: 0 fixed, 2 still wrong, 4 fixed; 1 broken (was right),
    # 3 right all along. Corrected = 2 of 3 = 66.67 % (not 3 or 4 "now right").
    task = make_task(one_hot([0, 0, 1, 1, 0], 2), [1, 0, 0, 1, 1])
    final = np.array([[2, 1], [1, 2], [3, 0], [0, 1], [2, 0]])
    traj = trajectory(
        [2, 4, 6, 7], [60.0, 40.0, 40.0, 60.0], initial_accuracy=40.0, budget=12, final_counts=final
    )
    assert run_metrics(task, traj)["pct_mislabelled_corrected"] == pytest.approx(200 / 3)


def test_pct_mislabelled_corrected_is_nan_without_mislabelled_samples():
    task = make_task(one_hot([0, 1], 2), [0, 1])
    traj = trajectory([1], [100.0], initial_accuracy=100.0, budget=2, final_counts=np.array([[2, 0], [0, 1]]))
    assert math.isnan(run_metrics(task, traj)["pct_mislabelled_corrected"])


def test_run_metrics_reports_auc_on_budget_grid_and_endpoints():
    # Two wrong samples, budget 4: (0, 50) -> (2, 75) -> (4, 100): AUC = 4 * 75 / 400 = 0.75
    task = make_task(one_hot([0, 0, 1, 1], 2), [1, 0, 0, 1], budget_multiplier=2)
    traj = trajectory(
        [2, 4],
        [75.0, 100.0],
        initial_accuracy=50.0,
        budget=4,
        final_counts=np.array([[2, 1], [1, 0], [1, 2], [0, 1]]),
    )
    m = run_metrics(task, traj, target=75.0)
    assert m["auc"] == pytest.approx(0.75)
    assert (m["initial_accuracy"], m["final_accuracy"]) == (50.0, 100.0)
    assert (m["annotations_spent"], m["selections"]) == (4.0, 2.0)
    assert m["annotations_to_target"] == 2.0
    assert m["pct_mislabelled_corrected"] == 100.0


def test_run_metrics_of_a_simulated_oracle_run_fixes_one_hot_noise_within_budget():
    # One-hot truth: the oracle fixes each wrong label with exactly 2 draws; budget 4 x 3 = 12.
    truth = [0, 1, 2, 0, 1, 2, 0, 1]
    noisy = [1, 1, 0, 0, 1, 0, 0, 1]  # wrong at 0, 2, 5
    task = make_task(one_hot(truth, 3), noisy)
    traj = simulate(task, registry.create("strategy", "oracle"), make_context(task), seed=0)
    m = run_metrics(task, traj)
    assert m["final_accuracy"] == 100.0
    assert m["pct_mislabelled_corrected"] == 100.0
    # Fixed after 2, 4, 6 annotations: 100 % is first reached at 6.
    assert m["annotations_to_target"] == 6.0
