"""What cleaning buys downstream: models trained, evaluated and selected with cleaned labels.

The paper's second claim (Bernhardt et al. 2022, Tables 1 and 2): cleaning noisy labels
mitigates their harm to model training, evaluation and model selection. For the runs of one
posterior group per dataset (every strategy, every seed), this stage takes the labels as they
stood at fractions of the budget (:mod:`benchmark.simulation.snapshots`, stored by each cell) and

- **training**: re-trains a downstream model on them and measures its accuracy on the
  dataset's clean evaluation set (``CleaningTask.load_eval``; for CIFAR-10H the 50,000 CIFAR-10
  training images with their official labels); two reference rows per seed: the model trained
  on the initial noisy labels and on the true labels;
- **model selection**: holds out a seeded
  :data:`~benchmark.downstream.selection.VALIDATION_SHARE` of the samples, trains
  :data:`~benchmark.downstream.models.CANDIDATES` (models that differ as people select between
  them) on the rest with the noisy labels, and scores each on the held-out samples against the
  noisy labels, the labels each strategy left at each budget fraction, and the true labels: the
  bias of the measured accuracy, Kendall's tau between the candidates' ranking and their ranking
  under the true labels, whether the pick is the one the true labels make, and the clean-set
  accuracy the wrong pick costs.

This module runs the stage (:func:`run_downstream`, one :class:`DownstreamResult`); the models
are in :mod:`benchmark.downstream.models`, the cached features and fits in
:mod:`benchmark.downstream.features` and :mod:`benchmark.downstream.fits`, the scoring of the
validation labels in :mod:`benchmark.downstream.selection`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.downstream import fits
from benchmark.downstream.fits import DOWNSTREAM, FitCache, Request, resolve
from benchmark.downstream.models import CANDIDATES, RETRAIN, Model
from benchmark.downstream.selection import NOISY, TRUE, selection_table, validation_split
from benchmark.posteriors.cache import EVAL_SET
from benchmark.results.tables import cell_snapshots
from benchmark.task import CleaningTask


@dataclass
class DownstreamResult:
    """The stage's long tables and what it could not do."""

    training: pd.DataFrame
    selection: pd.DataFrame
    candidates: pd.DataFrame
    notes: list[str]


def run_downstream(
    out_dir: Path,
    runs: pd.DataFrame,
    tasks: dict[str, CleaningTask],
    groups: dict[str, str],
    *,
    model: Model = RETRAIN,
    candidates: Sequence[Model] = CANDIDATES,
    read_dirs: Iterable[Path] | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> DownstreamResult:
    """The downstream tables of the ``ok`` runs of ``groups`` (dataset spec -> learner spec);
    fits are read from ``OUT/downstream/fits`` and ``read_dirs`` (default: the shipped fits)."""
    reads = [fits.SHIPPED_FITS] if read_dirs is None else [Path(p) for p in read_dirs]
    cache = FitCache(Path(out_dir) / DOWNSTREAM / "fits", reads)
    feature_dirs = [Path(out_dir) / DOWNSTREAM]
    notes: list[str] = []
    runs = runs[(runs["status"] == "ok") & runs["dataset"].isin(list(groups))]
    runs = runs[[groups[d] == learner for d, learner in zip(runs["dataset"], runs["learner"], strict=True)]]

    # what every run's labels were at each budget fraction
    snapshots: list[tuple[pd.Series, dict[str, np.ndarray]]] = []
    for _, row in runs.iterrows():
        snap = cell_snapshots(Path(out_dir), str(row["config_hash"]))
        if snap is None:
            notes.append(
                f"{row['dataset']} {row['strategy']} seed {row['seed']}: the cell stored no label snapshots"
            )
            continue
        if row["dataset"] not in tasks:
            continue
        snapshots.append((row, snap))

    # training on the labels at each fraction, with the noisy and true references
    train_requests: list[Request] = []
    train_meta: list[dict[str, Any]] = []
    seeds_by_dataset: dict[str, set[int]] = {}
    for row, snap in snapshots:
        task = tasks[row["dataset"]]
        seed = int(row["seed"])
        seeds_by_dataset.setdefault(row["dataset"], set()).add(seed)
        for fraction, budget, labels in zip(snap["fractions"], snap["budgets"], snap["labels"], strict=True):
            train_requests.append(Request(task, model, labels.astype(np.int64), seed))
            train_meta.append(
                {
                    "dataset": row["dataset"],
                    "learner": row["learner"],
                    "strategy": row["strategy"],
                    "seed": seed,
                    "fraction": float(fraction),
                    "annotations": int(budget),
                    "label_accuracy": 100.0 * float(np.mean(labels == task.true_labels)),
                }
            )
    for dataset, seeds in seeds_by_dataset.items():
        task = tasks[dataset]
        for seed in sorted(seeds):
            for name, labels in ((NOISY, task.noisy_labels), (TRUE, task.true_labels)):
                train_requests.append(Request(task, model, np.asarray(labels, np.int64), seed))
                train_meta.append(
                    {
                        "dataset": dataset,
                        "learner": groups[dataset],
                        "strategy": name,
                        "seed": seed,
                        "fraction": np.nan,
                        "annotations": np.nan,
                        "label_accuracy": 100.0 * float(np.mean(labels == task.true_labels)),
                    }
                )
    entries, why = resolve(
        train_requests, cache, feature_dirs, progress=progress, jobs=jobs, desc="re-training"
    )
    notes += why
    training = pd.DataFrame(
        [
            {
                **meta,
                "model": model.name,
                "eval_set": tasks[meta["dataset"]].info.get(EVAL_SET),
                "test_accuracy": None if e is None else e["test_accuracy"],
                "fit_key": None if e is None else e["key"],
            }
            for meta, e in zip(train_meta, entries, strict=True)
        ]
    )

    # model selection with noisy, cleaned and true validation labels
    cand_requests: list[Request] = []
    cand_meta: list[dict[str, Any]] = []
    for dataset, seeds in seeds_by_dataset.items():
        task = tasks[dataset]
        for seed in sorted(seeds):
            train_rows, val_rows = validation_split(task.n_samples, seed)
            for c in candidates:
                cand_requests.append(
                    Request(
                        task, c, task.noisy_labels[train_rows], seed, rows=train_rows, predict_rows=val_rows
                    )
                )
                cand_meta.append({"dataset": dataset, "seed": seed, "candidate": c.name})
    entries, why = resolve(
        cand_requests, cache, feature_dirs, progress=progress, jobs=jobs, desc="candidates"
    )
    notes += why
    cand_rows = []
    for meta, e in zip(cand_meta, entries, strict=True):
        cand_rows.append(
            {
                **meta,
                "test_accuracy": None if e is None else e["test_accuracy"],
                "predictions": None if e is None else e.get("predictions"),
            }
        )
    cand = pd.DataFrame(cand_rows)
    selection = selection_table(cand, snapshots, tasks, groups)
    return DownstreamResult(training, selection, cand.drop(columns="predictions", errors="ignore"), notes)
