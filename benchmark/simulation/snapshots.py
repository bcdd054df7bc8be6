"""The labels of a run as they stood part-way through its budget (for the downstream results).

A run's labels once the expert has spent ``b`` annotations are those a run with budget ``b``
would end with: the selections that started while the annotations spent were at most ``b``
(the simulator's own stopping rule, DESIGN.md rule 4), so the last one may finish past ``b``.
``b = 0`` is the initial noisy labels and ``b = budget`` the run's final labels.

The expert's answers are keyed by sample, so the run with the smaller budget makes the same
selections as the first part of the full run. For a run that selects each sample at most once
they are read off its trajectory; a run that may return to a sample (the oracle) is simulated
again with the smaller budget (its steps depend on the order of the returns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from benchmark.simulation.trajectory import Trajectory
from benchmark.task import CleaningTask

#: The budget fractions the downstream results are measured at.
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def budgets_at(budget: int, fractions: Sequence[float] = FRACTIONS) -> np.ndarray:
    """The annotation counts of ``fractions`` of ``budget`` (rounded to whole annotations)."""
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or ((fr < 0) | (fr > 1)).any():
        raise ValueError(f"budget fractions must lie in [0, 1], got {list(fractions)}")
    return np.rint(fr * budget).astype(np.int64)


def labels_at(
    task: CleaningTask,
    traj: Trajectory,
    budgets: Sequence[int],
    *,
    resimulate: Callable[[int], Trajectory] | None = None,
) -> np.ndarray:
    """(len(budgets), N) int64: the majority labels after ``b`` annotations, for each ``b``.

    Args:
        traj: the full run.
        budgets: annotation counts, at most the run's budget.
        resimulate: ``b -> `` the same run with budget ``b``; needed when ``traj`` selects a
            sample more than once (its intermediate label states are not in the trajectory).
    """
    spent_before = traj.spent - traj.draws
    reselects = np.unique(traj.selected).size < traj.selected.size
    out = np.empty((len(budgets), task.n_samples), dtype=np.int64)
    final = np.argmax(traj.final_counts, axis=1)
    for row, b in enumerate(int(v) for v in budgets):
        if b <= 0:
            out[row] = task.noisy_labels
        elif b >= traj.budget:
            out[row] = final
        elif reselects:
            if resimulate is None:
                raise ValueError("a run that re-selects samples needs `resimulate` for its labels part-way")
            out[row] = np.argmax(resimulate(b).final_counts, axis=1)
        else:
            taken = traj.selected[spent_before <= b]
            labels = np.asarray(task.noisy_labels, dtype=np.int64).copy()
            labels[taken] = final[taken]
            out[row] = labels
    return out
