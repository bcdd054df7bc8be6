"""On-disk cache of learner outputs, named by a content hash of everything that determines them.

A benchmark runs many strategies and seeds on the same posteriors; the learner is fitted once
per (task, learner configuration, seed) and every cell reads the result from here. The key is
computed from the task's identity and noisy labels, the learner's name, parameters (defaults
included) and ``version``, and the seed, without loading any image, so a warm cache never
touches the images.

Layout: ``<cache_dir>/<learner name>/<key>.npz`` holds ``probs`` (N, C), optionally
``stochastic`` (T, N, C), and ``info`` (a JSON string); ``<key>.json`` beside it records the
key's inputs for humans. Entries are written to a temporary file in the same folder and
renamed into place, so a crash or Ctrl-C never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import atomic_path
from benchmark.plugins import Learner, Posteriors
from benchmark.task import CleaningTask

#: Bump when the layout of an entry changes; old entries then simply miss.
CACHE_FORMAT = 1
KEY_LENGTH = 20


def key_inputs(task: CleaningTask, learner: Learner, seed: int) -> dict[str, Any]:
    """Everything that determines a learner's output, as a JSON-ready dict (no images loaded)."""
    return {
        "format": CACHE_FORMAT,
        "task": {
            "name": task.name,
            "n_samples": task.n_samples,
            "n_classes": task.n_classes,
            "noisy_labels_sha256": _sha256(np.asarray(task.noisy_labels, dtype=np.int64)),
            "sample_ids_sha256": None if task.sample_ids is None else _sha256(task.sample_ids),
        },
        "learner": {
            "name": learner.name,
            "params": {k: _canonical(k, v) for k, v in sorted(learner.params.items())},
            "version": str(learner.version),
        },
        "seed": int(seed),
    }


def cache_key(task: CleaningTask, learner: Learner, seed: int) -> str:
    """The first 20 hex digits of the sha256 of :func:`key_inputs` as canonical JSON."""
    text = json.dumps(key_inputs(task, learner, seed), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def entry_path(task: CleaningTask, learner: Learner, seed: int, cache_dir: Path) -> Path:
    """Where the entry of (task, learner, seed) lives: ``<cache_dir>/<learner>/<key>.npz``."""
    return Path(cache_dir) / learner.name / f"{cache_key(task, learner, seed)}.npz"


def load_or_fit(
    task: CleaningTask,
    learner: Learner,
    seed: int,
    *,
    cache_dir: Path,
    extra_cache_dirs: Sequence[Path] = (),
    refit: bool = False,
    progress: bool = True,
) -> tuple[Posteriors, str]:
    """The learner's posteriors for ``task`` and ``seed``, from the cache or freshly fitted.

    An entry is looked up in ``cache_dir``, then in each of ``extra_cache_dirs`` (read-only
    caches with the same layout, such as the posteriors shipped with the committed results).
    A hit returns the stored arrays without calling the learner (or loading images). A miss,
    ``refit=True``, or only unreadable entries (each reported with a warning naming the file)
    fit the learner and store the result atomically in ``cache_dir``. Learners whose class
    sets ``cache = False`` are fitted every time and nothing is read or written.

    Returns:
        The posteriors and the cache key (recorded in results as the posteriors' provenance).
    """
    key = cache_key(task, learner, seed)
    if not type(learner).cache:
        return learner.fit_predict(task, seed=seed, progress=progress), key
    path = Path(cache_dir) / learner.name / f"{key}.npz"
    for folder in [] if refit else [Path(cache_dir), *map(Path, extra_cache_dirs)]:
        candidate = folder / learner.name / f"{key}.npz"
        if not candidate.exists():
            continue
        try:
            return _read_entry(candidate, task), key
        except Exception as exc:  # an unreadable entry is skipped and refitted, never trusted
            warnings.warn(
                f"{candidate}: unreadable cache entry ({type(exc).__name__}: {exc}); ignoring "
                f"it for {learner.spec} on {task.name} (seed {seed})",
                RuntimeWarning,
                stacklevel=2,
            )
    posteriors = learner.fit_predict(task, seed=seed, progress=progress)
    _check_shape(posteriors, task, what=f"{learner.spec}.fit_predict")
    _write_entry(path, posteriors, key_inputs(task, learner, seed), key)
    # What was stored, not what was fitted: a fresh fit and a later cache hit give identical runs.
    return _read_entry(path, task), key


def _read_entry(path: Path, task: CleaningTask) -> Posteriors:
    with np.load(path, allow_pickle=False) as z:
        probs = np.asarray(z["probs"], dtype=np.float32)
        stochastic = np.asarray(z["stochastic"], dtype=np.float32) if "stochastic" in z else None
        info = json.loads(str(z["info"]))
    posteriors = Posteriors(probs=probs, stochastic=stochastic, info=info)
    _check_shape(posteriors, task, what="the entry")
    return posteriors


def _check_shape(posteriors: Posteriors, task: CleaningTask, *, what: str) -> None:
    expected = (task.n_samples, task.n_classes)
    if posteriors.probs.shape != expected:
        raise ValueError(f"{what} has probs of shape {posteriors.probs.shape}, expected {expected}")
    s = posteriors.stochastic
    if s is not None and (s.ndim != 3 or s.shape[1:] != expected):
        raise ValueError(f"{what} has stochastic of shape {s.shape}, expected (T, *{expected})")


def _write_entry(path: Path, posteriors: Posteriors, inputs: dict[str, Any], key: str) -> None:
    """Write ``<key>.json`` then ``<key>.npz``, each through a temporary file and os.replace.

    The .npz is the entry; it appears last and whole. On any failure, Ctrl-C included, the
    temporary files and a .json without its .npz are removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    info_json = json.dumps(posteriors.info, sort_keys=True, default=_json_default)
    arrays: dict[str, np.ndarray] = {
        "probs": np.asarray(posteriors.probs, dtype=np.float32),
        "info": np.array(info_json),
    }
    if posteriors.stochastic is not None:
        # Half precision is plenty for BALD and halves what the repository ships.
        arrays["stochastic"] = np.asarray(posteriors.stochastic, dtype=np.float16)
    sidecar = {
        "key": key,
        "inputs": inputs,
        "info": json.loads(info_json),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    json_path = path.with_suffix(".json")
    json_written = False
    try:
        _atomic_write(json_path, json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8"))
        json_written = True
        _atomic_write(path, arrays)
    except BaseException:
        if json_written and not path.exists():
            json_path.unlink(missing_ok=True)
        raise


def _atomic_write(path: Path, content: bytes | dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if isinstance(content, bytes):
            f.write(content)
        else:
            np.savez(f, **content)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())


def _sha256(array: np.ndarray) -> str:
    array = np.asarray(array)
    if array.dtype == object:  # e.g. string ids: hash their text, not the pointers
        data = "\n".join(map(str, array.ravel())).encode("utf-8")
    elif np.issubdtype(array.dtype, np.integer):
        data = np.ascontiguousarray(array, dtype=np.int64).tobytes()
    else:
        data = array.dtype.str.encode() + np.ascontiguousarray(array).tobytes()
    return hashlib.sha256(data).hexdigest()


def _canonical(name: str, value: Any) -> Any:
    """A parameter value as JSON that hashes the same however it was spelled (2 == 2.0)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_canonical(name, v) for v in value]
    raise TypeError(
        f"learner parameter {name}={value!r} ({type(value).__name__}) cannot be part of a "
        "cache key; parameters must be numbers, strings, booleans, None or lists of them"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
