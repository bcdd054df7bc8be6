"""The encoder cache of the ``ssl`` learner (:mod:`benchmark.learners.ssl`): its pretraining
settings, the key of an encoder and the folders its files live in, their checked reading and
atomic writing, and the index that finds an encoder's features without the images.

An encoder file ``<key>.npz`` holds the (N, D) features (float16), the key and its inputs, the
channel statistics and, when small enough, the encoder's weights; its ``.json`` sidecar holds
the pretraining record. No torch here: stored features are read on the lean install.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import atomic_path, write_bytes
from benchmark.posteriors.cache import artifact_dirs
from benchmark.posteriors.cache_entry import canonical_json
from benchmark.task import CleaningTask

#: Bump when a change to pretraining or to the stored file changes what an encoder file holds.
ENCODER_VERSION = "1"
#: Encoder weights are stored beside the features only when they take at most this many bytes.
MAX_WEIGHT_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that determines a pretrained encoder besides the images (its key inputs)."""

    scale: str
    width: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    tau: float
    projector_hidden: int
    projector_dim: int
    seed: int
    bf16: bool

    @property
    def feature_dim(self) -> int:
        """D, the width of the encoder's features."""
        return 4 * self.width if self.scale == "cpu" else 2048


#: Per scale, the pretraining defaults. cpu: an epoch of 5,000 32x32 images takes about 35 s on
#: one core, about 20 s on two free cores, so 100 epochs take about 35 minutes.
SCALES: dict[str, dict[str, Any]] = {
    "cpu": dict(epochs=100, batch_size=64, lr=4e-3, projector_hidden=512, projector_dim=128),
    "paper": dict(epochs=2500, batch_size=512, lr=1e-3, projector_hidden=4096, projector_dim=256),
}


class BadEncoderError(ValueError):
    """An encoder file that cannot be trusted; the message says what is wrong."""


# --------------------------------------------------------------------------- encoder files


def encoder_inputs(images: np.ndarray, settings: PretrainSettings) -> dict[str, Any]:
    """The key inputs of the encoder of ``images`` (uint8) pretrained with ``settings``."""
    data = np.ascontiguousarray(images, dtype=np.uint8)
    return {
        "format": 1,
        "version": ENCODER_VERSION,
        "images_sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        "images_shape": list(data.shape),
        "settings": dataclasses.asdict(settings),
    }


def encoder_dirs() -> tuple[Path, list[Path]]:
    """(write folder, read folders) of encoder files: ``ssl/encoders`` in each folder of
    :func:`benchmark.posteriors.cache.artifact_dirs`."""
    write, read = artifact_dirs()
    sub = Path("ssl") / "encoders"
    return write / sub, [d / sub for d in read if d != write]


def find_encoder(
    key: str, inputs: dict[str, Any], shape: tuple[int, int], folders: list[Path], *, quiet: bool = False
) -> tuple[Path, np.ndarray] | None:
    """(path, float32 features) of the first good ``<key>.npz`` in ``folders``, or None; each bad
    one is reported with a RuntimeWarning naming it (unless ``quiet``)."""
    for folder in folders:
        path = folder / f"{key}.npz"
        if not path.exists():
            continue
        try:
            return path, read_encoder(path, key, inputs, shape)
        except Exception as exc:  # a bad file is pretrained again, never trusted
            if not quiet:
                reason = str(exc) if isinstance(exc, BadEncoderError) else f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"{path}: bad encoder file ({reason}); pretraining the encoder again",
                    RuntimeWarning,
                    stacklevel=4,
                )
    return None


def read_encoder(path: Path, key: str, inputs: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """The (N, D) features stored at ``path`` as float32, checked against the key, its inputs
    and ``shape``; BadEncoderError saying what is wrong."""
    with np.load(path, allow_pickle=False) as z:
        missing = [name for name in ("features", "key", "inputs") if name not in z]
        if missing:
            raise BadEncoderError(f"it lacks {', '.join(missing)}")
        stored_key, stored_inputs = str(z["key"]), json.loads(str(z["inputs"]))
        features = np.asarray(z["features"], dtype=np.float32)
    problems = []
    if stored_key != key:
        problems.append(f"it records key {stored_key}, not {key}")
    if stored_inputs != inputs:
        problems.append("it was made from other images or settings")
    if features.shape != shape:
        problems.append(f"its features have shape {features.shape}, not {shape}")
    elif not np.isfinite(features).all():
        problems.append("its features are not all finite")
    if problems:
        raise BadEncoderError("; ".join(problems))
    return features


def write_encoder(
    path: Path,
    features: np.ndarray,
    weights: dict[str, np.ndarray],
    extra: dict[str, np.ndarray],
    record: dict[str, Any],
) -> None:
    """Stores features (float16), weights and record at ``path``, and the record in its ``.json``
    sidecar, each atomically (the sidecar first: the ``.npz`` is what makes the entry)."""
    arrays = {
        "features": np.asarray(features, dtype=np.float16),
        "key": np.asarray(record["key"]),
        "inputs": np.asarray(canonical_json(record["inputs"])),
        **extra,
        **{f"weights/{name}": w for name, w in weights.items()},
    }
    write_bytes(path.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


#: ``<encoders folder>/index.json``: encoder key by (dataset, its samples, pretraining
#: settings), recorded whenever the features are computed from the images, so that a re-fit
#: finds them without the images (the key itself hashes the image bytes).
INDEX = "index.json"


def index_key(task: CleaningTask, settings: Any) -> str:
    """The entry of ``task``'s samples and the pretraining ``settings`` in :data:`INDEX`."""
    ids = task.sample_ids if task.sample_ids is not None else np.arange(task.n_samples)
    ident = {
        "sample_ids": hashlib.sha256(np.ascontiguousarray(ids).tobytes()).hexdigest(),
        "n": task.n_samples,
        "dataset": task.name.split("[")[0],
        "settings": dataclasses.asdict(settings),
    }
    return hashlib.sha256(canonical_json(ident).encode("utf-8")).hexdigest()[:20]


def write_index(task: CleaningTask, settings: Any, key: str) -> None:
    """Records ``key`` as the encoder of ``task``'s samples and ``settings`` in the write folder's
    :data:`INDEX`."""
    write_dir, _ = encoder_dirs()
    index_path = write_dir / INDEX
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    entry = index_key(task, settings)
    if index.get(entry) != key:
        index[entry] = key
        write_bytes(index_path, json.dumps(index, indent=1, sort_keys=True).encode())
