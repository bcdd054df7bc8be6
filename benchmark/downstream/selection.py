"""Model selection with noisy against cleaned validation labels: the seeded validation split, and
how well each version of the validation labels evaluates and selects the candidate models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from benchmark.downstream.fits import decode_predictions
from benchmark.task import CleaningTask

#: Share of the samples held out as the noisy validation split of the model-selection study.
VALIDATION_SHARE = 0.2
#: The label versions of the reference rows (of the training and the selection tables).
NOISY, TRUE = "noisy labels", "true labels"


def validation_split(n: int, seed: int, share: float = VALIDATION_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows), sorted: a seeded random ``share`` of ``n`` held out."""
    order = np.random.default_rng([seed, 0xD0]).permutation(n)
    n_val = max(1, int(round(share * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def selection_table(
    cand: pd.DataFrame,
    snapshots: list[tuple[pd.Series, dict[str, np.ndarray]]],
    tasks: dict[str, CleaningTask],
    groups: dict[str, str],
) -> pd.DataFrame:
    """One row per (dataset, seed, label version): the candidates scored on the validation split."""
    rows: list[dict[str, Any]] = []
    if cand.empty or cand["predictions"].isna().any():
        return pd.DataFrame(rows)
    for (dataset_key, seed_key), group in cand.groupby(["dataset", "seed"], sort=True):
        dataset, seed = str(dataset_key), int(seed_key)  # type: ignore[call-overload]
        task = tasks[dataset]
        _, val_rows = validation_split(task.n_samples, int(seed))
        preds = np.stack([decode_predictions(p) for p in group["predictions"]])
        test_acc = group["test_accuracy"].to_numpy(dtype=np.float64)
        versions: list[tuple[str, float, np.ndarray]] = [
            (NOISY, np.nan, task.noisy_labels[val_rows]),
            (TRUE, np.nan, task.true_labels[val_rows]),
        ]
        for row, snap in snapshots:
            if row["dataset"] == dataset and int(row["seed"]) == int(seed):
                for fraction, labels in zip(snap["fractions"], snap["labels"], strict=True):
                    versions.append(
                        (str(row["strategy"]), float(fraction), labels[val_rows].astype(np.int64))
                    )
        truth = 100.0 * (preds == task.true_labels[val_rows][None, :]).mean(axis=1)
        for name, fraction, labels in versions:
            rows.append(
                {
                    "dataset": dataset,
                    "learner": groups[dataset],
                    "seed": int(seed),
                    "strategy": name,
                    "fraction": fraction,
                    **selection_metrics(preds, labels, truth, test_acc),
                }
            )
    return pd.DataFrame(rows)


def selection_metrics(
    predictions: np.ndarray, labels: np.ndarray, true_accuracy: np.ndarray, test_accuracy: np.ndarray
) -> dict[str, float]:
    """How well validation ``labels`` (n,) evaluate and select the candidates whose validation
    ``predictions`` are (K, n), against their accuracy under the true labels (K,) (%).

    Returns: ``bias`` (mean over candidates of measured minus true accuracy, points), ``tau``
    (Kendall's tau-b between measured and true accuracies), ``right_pick`` (1 when the
    candidate with the best measured accuracy has the best true accuracy, ties counting as
    right), ``pick_cost`` (clean-set accuracy of the true labels' pick minus the pick's, points).
    """
    from scipy.stats import kendalltau

    measured = 100.0 * (predictions == labels[None, :]).mean(axis=1)
    tau = kendalltau(measured, true_accuracy).statistic
    pick = int(np.argmax(measured))
    best = int(np.argmax(true_accuracy))
    return {
        "bias": float(np.mean(measured - true_accuracy)),
        "tau": float(tau) if np.isfinite(tau) else float("nan"),
        "right_pick": float(true_accuracy[pick] >= true_accuracy[best]),
        "pick_cost": float(test_accuracy[best] - test_accuracy[pick]),
        "picked": float(pick),
    }
