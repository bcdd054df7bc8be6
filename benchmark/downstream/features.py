"""The cached encoder features of a task and of its clean evaluation set, that downstream
models are fitted on.

Features are computed once per task with the ``ssl`` learner's stored encoder and cached in
``OUT/downstream/features/`` (not shipped: they are large and need the images).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import write_bytes
from benchmark.dataroot import DataNotFoundError
from benchmark.posteriors.cache import (
    EVAL_SET,
    EVAL_SOURCE,
    EVAL_SOURCE_DEFAULT,
    image_source,
)
from benchmark.posteriors.cache_entry import array_sha256, canonical_json
from benchmark.task import CleaningTask


@dataclass(frozen=True)
class Features:
    """A task's features and its evaluation set's: ``train`` (N, D), ``eval`` (M, D), the
    evaluation labels (M,), and ``key``, the hash of what determines them."""

    train: np.ndarray
    eval: np.ndarray
    eval_labels: np.ndarray
    key: str


def feature_inputs(task: CleaningTask) -> dict[str, Any]:
    """Everything that determines a task's features (no image loaded): its images, its
    evaluation set and the ``ssl`` learner's encoder settings."""
    from benchmark.learners.ssl import SelfSupervised

    return {
        "kind": "ssl",
        "task_images": {
            "sample_ids_sha256": None if task.sample_ids is None else array_sha256(task.sample_ids),
            "n_samples": task.n_samples,
            "image_source": image_source(task),
        },
        "eval_set": {
            "name": task.info.get(EVAL_SET),
            "source": image_source(task, EVAL_SOURCE, EVAL_SOURCE_DEFAULT),
        },
        "encoder": asdict(SelfSupervised().pretrain_settings()),
    }


def task_features(task: CleaningTask, cache_dirs: Sequence[Path]) -> Features:
    """The task's features: read from ``<dir>/features/<key>.npz`` in one of ``cache_dirs``,
    else the ``ssl`` learner's stored encoder applied to the task's images and to its
    evaluation set's (the same weights for both; PyTorch needed), written to the first.

    Raises:
        DataNotFoundError: not cached and the images (or the evaluation set) are absent.
        ValueError: the task has no evaluation set.
    """
    if task.load_eval is None:
        raise ValueError(f"{task.name}: the dataset has no clean evaluation set for downstream results")
    key = hashlib.sha256(canonical_json(feature_inputs(task)).encode()).hexdigest()[:20]
    for folder in cache_dirs:
        path = Path(folder) / "features" / f"{key}.npz"
        if not path.is_file():
            continue
        try:
            with np.load(path) as z:
                found = Features(
                    np.asarray(z["train"], np.float32),
                    np.asarray(z["eval"], np.float32),
                    np.asarray(z["eval_labels"], np.int64),
                    key,
                )
        except Exception:  # a damaged file is computed again
            continue
        if found.train.shape[0] == task.n_samples and found.eval.shape[0] == found.eval_labels.shape[0]:
            return found
    if task.load_images is None:
        raise DataNotFoundError(f"{task.name}: no images to compute downstream features from")
    from benchmark.learners.ssl import SelfSupervised

    images = np.asarray(task.load_images())
    eval_images, eval_labels = task.load_eval()
    train, evaluation = SelfSupervised().encode_with_stored(images, [images, eval_images])
    found = Features(train, evaluation, np.asarray(eval_labels, np.int64), key)
    buffer = io.BytesIO()
    np.savez(buffer, train=found.train, eval=found.eval, eval_labels=found.eval_labels)
    write_bytes(Path(cache_dirs[0]) / "features" / f"{key}.npz", buffer.getvalue())
    return found
