"""The base heads of the ``ssl`` learner (:mod:`benchmark.learners.ssl`): the linear heads its
fit trains on a task's initial (noisy) labels, stored so that every active re-fit can start
from them without training them again.

A file ``<artifact dir>/ssl/heads/<key>.npz`` holds the heads of one fit (one for
``posteriors=insample``, one per fold for ``oof``) as float32 arrays, with its key and the key's
inputs: the encoder's key, the head's training settings, the fit's seed, the posteriors mode
and folds, and the sha256 of the labels they were trained on. Files are written atomically
to the write folder and read from it, then from the read folders
(:func:`benchmark.posteriors.cache.artifact_dirs`); one that fails its checks is reported
with a warning naming it and passed over. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import atomic_path, file_lock
from benchmark.learners._linear_head import BATCH_SIZE, LinearHead, check_head
from benchmark.posteriors.cache import artifact_dirs
from benchmark.posteriors.cache_entry import canonical_json
from benchmark.task import CleaningTask

#: Bump when a change to the head's training or to the stored file changes what a file holds.
HEADS_VERSION = "1"


class BadHeadsError(ValueError):
    """A base-head file that cannot be trusted; the message says what is wrong."""


def heads_dirs() -> tuple[Path, list[Path]]:
    """(write folder, read folders) of base-head files: ``ssl/heads`` in each folder of
    :func:`benchmark.posteriors.cache.artifact_dirs`, beside ``ssl/encoders``."""
    write, read = artifact_dirs()
    sub = Path("ssl") / "heads"
    return write / sub, [d / sub for d in read if d != write]


def heads_key(
    config: Any, insample: bool, encoder_key: str, seed: int, task: CleaningTask
) -> tuple[str, dict[str, Any]]:
    """(key, its inputs) of the base heads that an ``ssl`` learner of ``config`` (in-sample or
    not) trains with ``seed`` on ``task.noisy_labels`` over the features of encoder
    ``encoder_key``: the key is the first 20 hex digits of the sha256 of the inputs as
    canonical JSON."""
    labels = np.ascontiguousarray(task.noisy_labels, dtype=np.int64)
    inputs = {
        "format": 1,
        "version": HEADS_VERSION,
        "encoder_key": encoder_key,
        "head": {
            "epochs": config.head_epochs,
            "lr": config.head_lr,
            "weight_decay": config.head_weight_decay,
            "dropout": config.dropout,
            "batch_size": BATCH_SIZE,
        },
        "seed": int(seed),
        "posteriors": "insample" if insample else "oof",
        "folds": None if insample else config.folds,
        "n_samples": int(labels.shape[0]),
        "n_classes": int(task.n_classes),
        "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
    }
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()[:20], inputs


def load_or_train(
    key: str, inputs: dict[str, Any], shape: tuple[int, int, int], train: Callable[[], list[LinearHead]]
) -> list[LinearHead]:
    """The heads of ``<key>.npz`` in the write folder, else in each read folder
    (:func:`heads_dirs`), else ``train()``'s, stored in the write folder. Training runs under
    a lock, so that parallel cells needing the same heads wait for one another; a folder that
    cannot be written to is warned about, and the heads are used all the same."""
    write_dir, read_dirs = heads_dirs()
    heads = find_heads(key, inputs, shape, [write_dir, *read_dirs])
    if heads is not None:
        return heads
    try:
        write_dir.mkdir(parents=True, exist_ok=True)
        lock: AbstractContextManager[None] = file_lock(write_dir / f"{key}.lock")
    except OSError:
        lock = nullcontext()
    with lock:
        heads = find_heads(key, inputs, shape, [write_dir], quiet=True)
        if heads is None:
            heads = train()
            store(key, inputs, heads)
    return heads


def store(key: str, inputs: dict[str, Any], heads: list[LinearHead]) -> None:
    """Writes ``heads`` to ``<key>.npz`` in the write folder unless a good one is there or in
    a read folder; an error writing is warned about."""
    write_dir, read_dirs = heads_dirs()
    shape = (len(heads), *heads[0].weights.shape)
    if find_heads(key, inputs, shape, [write_dir, *read_dirs], quiet=True) is not None:
        return
    try:
        write_heads(write_dir / f"{key}.npz", key, inputs, heads)
    except OSError as exc:  # a folder not writable here: the heads are still used
        warnings.warn(f"{write_dir}: cannot store the base heads {key} ({exc})", RuntimeWarning, stacklevel=3)


def find_heads(
    key: str, inputs: dict[str, Any], shape: tuple[int, int, int], folders: list[Path], *, quiet: bool = False
) -> list[LinearHead] | None:
    """The heads of the first good ``<key>.npz`` in ``folders``, or None; each bad one is
    reported with a RuntimeWarning naming it (unless ``quiet``). ``shape``: (heads, D, C)."""
    for folder in folders:
        path = folder / f"{key}.npz"
        if not path.exists():
            continue
        try:
            return read_heads(path, key, inputs, shape)
        except Exception as exc:  # a bad file is trained again, never trusted
            if not quiet:
                reason = str(exc) if isinstance(exc, BadHeadsError) else f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"{path}: bad base-head file ({reason}); training the base heads again",
                    RuntimeWarning,
                    stacklevel=4,
                )
    return None


def read_heads(path: Path, key: str, inputs: dict[str, Any], shape: tuple[int, int, int]) -> list[LinearHead]:
    """The heads stored at ``path``, checked against the key, its inputs and ``shape`` (heads,
    D, C); BadHeadsError saying what is wrong."""
    count, d, n_classes = shape
    with np.load(path, allow_pickle=False) as z:
        missing = [
            name for name in ("key", "inputs", "dropout", "weights", "bias", "mean", "std") if name not in z
        ]
        if missing:
            raise BadHeadsError(f"it lacks {', '.join(missing)}")
        stored_key, stored_inputs = str(z["key"]), json.loads(str(z["inputs"]))
        dropout = float(z["dropout"])
        arrays = {name: np.asarray(z[name]) for name in ("weights", "bias", "mean", "std")}
    problems = []
    if stored_key != key:
        problems.append(f"it records key {stored_key}, not {key}")
    if stored_inputs != inputs:
        problems.append("it was trained with other labels, settings or features")
    expected = {
        "weights": (count, d, n_classes),
        "bias": (count, n_classes),
        "mean": (count, d),
        "std": (count, d),
    }
    for name, want in expected.items():
        if arrays[name].shape != want or arrays[name].dtype != np.float32:
            problems.append(
                f"its {name} are {arrays[name].dtype} of shape {arrays[name].shape}, not float32 {want}"
            )
    if problems:
        raise BadHeadsError("; ".join(problems))
    heads = [
        LinearHead(
            weights=arrays["weights"][k],
            bias=arrays["bias"][k],
            mean=arrays["mean"][k],
            std=arrays["std"][k],
            dropout=dropout,
        )
        for k in range(count)
    ]
    for head in heads:
        try:
            check_head(head, d, n_classes)
        except ValueError as exc:
            raise BadHeadsError(str(exc)) from None
    return heads


def write_heads(path: Path, key: str, inputs: dict[str, Any], heads: list[LinearHead]) -> None:
    """Stores ``heads`` (float32) with their key and its inputs at ``path``, atomically."""
    arrays = {
        "key": np.asarray(key),
        "inputs": np.asarray(canonical_json(inputs)),
        "dropout": np.asarray(heads[0].dropout),
        **{
            name: np.stack([np.asarray(getattr(h, name), dtype=np.float32) for h in heads])
            for name in ("weights", "bias", "mean", "std")
        },
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
