"""Per-run metrics of a relabelling trajectory (DESIGN.md, "Curves and AUC")."""

from __future__ import annotations

import numpy as np

from benchmark.config import DEFAULT_TARGET_ACCURACY
from benchmark.simulation.trajectory import Trajectory
from benchmark.task import CleaningTask


def curve_points(traj: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """(annotations, accuracy %) with the initial state at 0 annotations followed by one point
    after each selection."""
    x = np.concatenate([[0], traj.spent]).astype(np.float64)
    y = np.concatenate([[traj.initial_accuracy], traj.accuracy])
    return x, y


def curve_on_grid(x: np.ndarray, y: np.ndarray, max_annotations: int) -> np.ndarray:
    """The curve linearly interpolated at 0, 1, ..., max_annotations (np.interp, as the
    reference does; past the last point the last value holds)."""
    return np.interp(np.arange(max_annotations + 1), x, y)


def auc(x: np.ndarray, y: np.ndarray, max_annotations: int) -> float:
    """Trapezoidal area under the accuracy curve on 0..max, divided by max x 100 (1 = perfect).

    With a zero budget (nothing mislabelled) the AUC is the accuracy itself, divided by 100.
    """
    if max_annotations <= 0:
        return float(y[0] / 100.0)
    grid = curve_on_grid(x, y, max_annotations)
    return float(np.trapezoid(grid) / (max_annotations * 100.0))


def annotations_to_reach(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Annotations spent when accuracy first reaches ``target`` %, or NaN if it never does."""
    hit = np.nonzero(y >= target - 1e-9)[0]
    return float(x[hit[0]]) if hit.size else float("nan")


def run_metrics(
    task: CleaningTask, traj: Trajectory, *, target: float = DEFAULT_TARGET_ACCURACY
) -> dict[str, float]:
    """Scalar metrics of one run; the AUC is taken on the grid 0..budget."""
    x, y = curve_points(traj)
    initially_wrong = task.noisy_labels != task.true_labels
    now_right = np.argmax(traj.final_counts, axis=1) == task.true_labels
    fixed = int(np.sum(initially_wrong & now_right))
    initial_wrong = int(initially_wrong.sum())
    final_clear = int(traj.mislabelled_clear[-1]) if traj.spent.size else traj.initial_clear
    final_amb = int(traj.mislabelled_ambiguous[-1]) if traj.spent.size else traj.initial_ambiguous
    return {
        "auc": auc(x, y, traj.budget),
        "initial_accuracy": float(y[0]),
        "final_accuracy": float(y[-1]),
        "annotations_spent": float(traj.total_spent),
        "selections": float(traj.selected.size),
        "pct_mislabelled_corrected": 100.0 * fixed / initial_wrong if initial_wrong else float("nan"),
        "target_accuracy": float(target),
        "annotations_to_target": annotations_to_reach(x, y, target),
        "clear_mislabelled_left": float(final_clear),
        "ambiguous_mislabelled_left": float(final_amb),
    }
