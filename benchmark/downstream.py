"""What cleaning buys downstream: models trained, evaluated and selected with cleaned labels.

The paper's second claim (Bernhardt et al. 2022, Tables 1 and 2): cleaning noisy labels
mitigates their harm to model training, evaluation and model selection. For the runs of one
posterior group per dataset (every strategy, every seed), this stage takes the labels as they
stood at fractions of the budget (:mod:`benchmark.snapshots`, stored by each cell) and

- **training**: re-trains a downstream model on them and measures its accuracy on the
  dataset's clean evaluation set (``CleaningTask.load_eval``; for CIFAR-10H the 50,000 CIFAR-10
  training images with their official labels); two reference rows per seed: the model trained
  on the initial noisy labels and on the true labels;
- **model selection**: holds out a seeded :data:`VALIDATION_SHARE` of the samples, trains
  :data:`CANDIDATES` (models that differ as people select between them) on the rest with the
  noisy labels, and scores each on the held-out samples against the noisy labels, the labels
  each strategy left at each budget fraction, and the true labels: the bias of the measured
  accuracy, Kendall's tau between the candidates' ranking and their ranking under the true
  labels, whether the pick is the one the true labels make, and the clean-set accuracy the
  wrong pick costs.

Downstream models are classifiers on fixed features that fit in seconds (:class:`Model`): by
default the paper's linear head on the frozen self-supervised encoder of the ``ssl`` learner.
Every fit is cached as a small JSON file under a content hash of what determines it (the task,
the training labels and rows, the model, the features, the evaluation set and the seed), in
``OUT/downstream/fits/`` and read also from the fits shipped in ``results/downstream/fits/``,
so that results reproduce without the images. Features are computed once per task and cached
in ``OUT/downstream/features/`` (not shipped: they are large and need the images).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.atomic import write_bytes
from benchmark.cache import (
    EVAL_SET,
    EVAL_SOURCE,
    EVAL_SOURCE_DEFAULT,
    image_source,
)
from benchmark.cache_entry import array_sha256, canonical_json
from benchmark.dataroot import DataNotFoundError
from benchmark.learners._linear_head import predict_head, standardiser, train_head
from benchmark.registry import PROJECT_ROOT
from benchmark.results import cell_snapshots
from benchmark.task import CleaningTask

#: Bump when a change alters what a downstream fit computes; old entries then miss.
DOWNSTREAM_VERSION = "1"
#: One character per class index in stored predictions (up to 62 classes).
PREDICTION_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Share of the samples held out as the noisy validation split of the model-selection study.
VALIDATION_SHARE = 0.2
#: Folder (under a results folder) of this stage's cache and tables.
DOWNSTREAM = "downstream"
#: The fits shipped with the project (in a checkout), read by every run of this stage.
SHIPPED_FITS = PROJECT_ROOT / "results" / DOWNSTREAM / "fits"


@dataclass(frozen=True)
class Model:
    """A downstream classifier on fixed features.

    ``kind="head"``: multinomial logistic regression by SGD with input dropout (the ``ssl``
    learner's head, :mod:`benchmark.learners._linear_head`); ``kind="knn"``: the majority of
    the ``k`` nearest training samples (cosine similarity of standardised features; a tie goes
    to the class of the nearer neighbour).
    """

    name: str
    kind: str = "head"
    epochs: int = 120
    lr: float = 0.01
    weight_decay: float = 1e-3
    dropout: float = 0.2
    k: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("head", "knn"):
            raise ValueError(f"model {self.name}: kind={self.kind!r} must be head or knn")
        if self.kind == "knn" and self.k < 1:
            raise ValueError(f"model {self.name}: a knn model needs k >= 1")

    def predict(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, targets: Sequence[np.ndarray], seed: int
    ) -> list[np.ndarray]:
        """Class predictions for each array of ``targets`` of a model fitted on ``x``, ``y``."""
        if self.kind == "knn":
            return [knn_predict(x, y, n_classes, t, self.k) for t in targets]
        head = train_head(
            x,
            y,
            n_classes,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            seed=seed,
        )
        return [predict_head(head, t, mc_samples=0, seed=seed)[0].argmax(axis=1) for t in targets]


#: The model re-trained on the labels at each budget fraction: the paper's linear head (dropout
#: 0.2, SGD lr 0.01, weight decay 1e-3, 120 epochs) on the frozen self-supervised encoder.
RETRAIN = Model("ssl linear head")
#: The models ``alcbench downstream --model`` can re-train, by name.
RETRAIN_MODELS = {
    "ssl-head": RETRAIN,
    "ssl-15nn": Model("ssl 15-NN", kind="knn", k=15),
}

#: The candidates of the model-selection study: what people choose between when they tune a
#: model on frozen features (training length, learning rate, weight decay, dropout) and a second
#: model family (k nearest neighbours); close enough in accuracy that noisy labels can misorder them.
CANDIDATES = (
    Model("ssl head, 120 epochs (paper)"),
    Model("ssl head, 5 epochs", epochs=5),
    Model("ssl head, 10 epochs", epochs=10),
    Model("ssl head, 40 epochs", epochs=40),
    Model("ssl head, weight decay 0.01", weight_decay=0.01),
    Model("ssl head, weight decay 0.03", weight_decay=0.03),
    Model("ssl head, no dropout", dropout=0.0),
    Model("ssl head, dropout 0.5", dropout=0.5),
    Model("ssl head, lr 0.05", lr=0.05),
    Model("ssl head, lr 0.1, unregularised", lr=0.1, weight_decay=0.0, dropout=0.0),
    Model("ssl 15-NN", kind="knn", k=15),
    Model("ssl 50-NN", kind="knn", k=50),
)


def knn_predict(x: np.ndarray, y: np.ndarray, n_classes: int, targets: np.ndarray, k: int) -> np.ndarray:
    """(m,) the majority class of each target row's ``k`` nearest rows of ``x`` (cosine
    similarity after standardising with ``x``'s statistics); a tie goes to the class whose
    nearest member is nearer."""
    mean, std = standardiser(x)

    def unit(a: np.ndarray) -> np.ndarray:
        z = (np.asarray(a, dtype=np.float32) - mean) / std
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    train = unit(x)
    k = min(k, train.shape[0])
    # rank r of the k nearest weighs 1 + (k - r) / (k + 1)^2: below one vote, so only ties move
    weights = 1.0 + (k - np.arange(k)) / (k + 1) ** 2
    out = np.empty(targets.shape[0], dtype=np.int64)
    for start in range(0, targets.shape[0], 2048):
        sim = unit(targets[start : start + 2048]) @ train.T
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, nearest, axis=1), axis=1, kind="stable")
        nearest = np.take_along_axis(nearest, order, axis=1)
        votes = np.zeros((nearest.shape[0], n_classes))
        np.add.at(votes, (np.arange(nearest.shape[0])[:, None], y[nearest]), weights[None, :])
        out[start : start + 2048] = votes.argmax(axis=1)
    return out


# --------------------------------------------------------------------------- features


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


# --------------------------------------------------------------------------- cached fits


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
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()[:20]


# --------------------------------------------------------------------------- the stage


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


def validation_split(n: int, seed: int, share: float = VALIDATION_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows), sorted: a seeded random ``share`` of ``n`` held out."""
    order = np.random.default_rng([seed, 0xD0]).permutation(n)
    n_val = max(1, int(round(share * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class DownstreamResult:
    """The stage's long tables and what it could not do."""

    training: pd.DataFrame
    selection: pd.DataFrame
    candidates: pd.DataFrame
    notes: list[str]


#: The label versions of the reference rows.
NOISY, TRUE = "noisy labels", "true labels"


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
    reads = [SHIPPED_FITS] if read_dirs is None else [Path(p) for p in read_dirs]
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
    selection = _selection(cand, snapshots, tasks, groups)
    return DownstreamResult(training, selection, cand.drop(columns="predictions", errors="ignore"), notes)


def _selection(
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
