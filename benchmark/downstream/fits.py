"""The cached downstream fits: what determines one fit (its key), the cache of fits on disk, and
resolving requests from it or by fitting what is missing.

Every fit is cached as a small JSON file under a content hash of what determines it (the task,
the training labels and rows, the model, the features, the evaluation set and the seed), in
``OUT/downstream/fits/`` and read also from the fits shipped in ``results/downstream/fits/``
(:data:`SHIPPED_FITS`), so that results reproduce without the images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import write_bytes
from benchmark.dataroot import DataNotFoundError
from benchmark.downstream.features import Features, feature_inputs, task_features
from benchmark.downstream.models import Model
from benchmark.posteriors.cache_entry import array_sha256, canonical_json
from benchmark.registry import PROJECT_ROOT
from benchmark.task import CleaningTask

#: Bump when a change alters what a downstream fit computes; old entries then miss.
DOWNSTREAM_VERSION = "1"
#: One character per class index in stored predictions (up to 62 classes).
PREDICTION_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Folder (under a results folder) of this stage's cache and tables.
DOWNSTREAM = "downstream"
#: The fits shipped with the project (in a checkout), read by every run of this stage.
SHIPPED_FITS = PROJECT_ROOT / "results" / DOWNSTREAM / "fits"


@dataclass
class FitCache:
    """Downstream fits on disk: written to ``write_dir``, read from it and ``read_dirs``."""

    write_dir: Path
    read_dirs: list[Path] = field(default_factory=list)
    hits: int = 0
    fitted: int = 0

    def get(self, key: str) -> dict[str, Any] | None:
        for folder in [self.write_dir, *self.read_dirs]:
            path = Path(folder) / f"{key}.json"
            if not path.is_file():
                continue
            try:
                entry = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # a damaged entry is fitted again
            if isinstance(entry, dict) and entry.get("key") == key and "test_accuracy" in entry:
                self.hits += 1
                return entry
        return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.fitted += 1
        write_bytes(
            self.write_dir / f"{key}.json", json.dumps({"key": key, **entry}, sort_keys=True).encode()
        )


def fit_inputs(
    task: CleaningTask, model: Model, labels: np.ndarray, rows: np.ndarray | None, seed: int
) -> dict[str, Any]:
    """Everything that determines one downstream fit, without loading features."""
    return {
        "version": DOWNSTREAM_VERSION,
        "task": task.name,
        "features": feature_inputs(task),
        "model": asdict(model) | {"name": None},  # the name labels tables; it fits nothing
        "labels_sha256": array_sha256(np.asarray(labels, dtype=np.int64)),
        "rows_sha256": None if rows is None else array_sha256(np.asarray(rows, dtype=np.int64)),
        "seed": int(seed),
    }


def fit_key(inputs: dict[str, Any]) -> str:
    """The cache key of a fit: a hash of :func:`fit_inputs`."""
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()[:20]


@dataclass
class Request:
    """One downstream fit: ``model`` on ``labels`` (of every sample, or of ``rows``), tested on
    the evaluation set (and predicting ``predict_rows``, when given)."""

    task: CleaningTask
    model: Model
    labels: np.ndarray
    seed: int
    rows: np.ndarray | None = None
    predict_rows: np.ndarray | None = None

    @property
    def key(self) -> str:
        return fit_key(fit_inputs(self.task, self.model, self.labels, self.rows, self.seed))


def run_fit(request: Request, features: Features) -> dict[str, Any]:
    """Fits ``request``: its clean-set accuracy (%), and its predictions of ``predict_rows``."""
    x = features.train if request.rows is None else features.train[request.rows]
    y = np.asarray(request.labels, dtype=np.int64)
    targets = [features.eval]
    if request.predict_rows is not None:
        targets.append(features.train[request.predict_rows])
    predictions = request.model.predict(x, y, request.task.n_classes, targets, request.seed)
    entry: dict[str, Any] = {
        "test_accuracy": 100.0 * float(np.mean(predictions[0] == features.eval_labels)),
        "n_test": int(features.eval_labels.size),
        "model": request.model.name,
    }
    if request.predict_rows is not None:
        entry["predictions"] = "".join(_digit(int(v)) for v in predictions[1])
    return entry


def _digit(v: int) -> str:
    """One character per class index (0-9, then letters), for compact stored predictions."""
    return PREDICTION_ALPHABET[v]


def decode_predictions(text: str) -> np.ndarray:
    """The class indices of stored predictions (the inverse of :func:`_digit`)."""
    return np.array([PREDICTION_ALPHABET.index(ch) for ch in text], dtype=np.int64)


def resolve(
    requests: Sequence[Request],
    cache: FitCache,
    feature_dirs: Sequence[Path],
    *,
    progress: bool = True,
    jobs: int = 1,
    desc: str = "downstream fits",
) -> tuple[list[dict[str, Any] | None], list[str]]:
    """The entry of every request (None where it could not be fitted) and the reasons why not.

    Cached entries are read; the rest are fitted (features loaded once per task, the
    fits spread over ``jobs`` processes) and each is written as it finishes, so an interrupted
    stage keeps the fits it finished. Identical requests are fitted once.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    entries: list[dict[str, Any] | None] = [None] * len(requests)
    todo: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        found = cache.get(request.key)
        if found is not None:
            entries[i] = found
        else:
            todo.setdefault(request.key, []).append(i)
    reasons: list[str] = []
    by_task: dict[str, list[str]] = {}
    for key, idx in todo.items():
        by_task.setdefault(requests[idx[0]].task.name, []).append(key)
    bar = tqdm(total=len(todo), desc=desc, unit="fit", disable=not progress or not todo)
    for task_name, keys in by_task.items():
        first = requests[todo[keys[0]][0]]
        try:
            features = task_features(first.task, feature_dirs)
        except (DataNotFoundError, ValueError, ImportError) as exc:
            reasons.append(f"{task_name}: {len(keys)} fits not cached and cannot be made here: {exc}")
            bar.update(len(keys))
            continue
        work = [requests[todo[k][0]] for k in keys]
        results = Parallel(n_jobs=jobs, return_as="generator", prefer="processes" if jobs != 1 else None)(
            delayed(run_fit)(r, features) for r in work
        )
        for key, entry in zip(keys, results, strict=True):
            cache.put(key, entry)
            for i in todo[key]:
                entries[i] = {"key": key, **entry}
            bar.update(1)
    bar.close()
    return entries, reasons
