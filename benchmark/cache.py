"""On-disk cache of learner outputs, named by a content hash of everything that determines them.

A benchmark runs many strategies and seeds on the same posteriors; the learner is fitted once
per (task, learner configuration, seed) and every cell reads the result from here. The key is
computed from the task's identity and noisy labels, the learner's name, parameters (defaults
included) and ``version``, and the seed, without loading any image, so a warm cache never
touches the images.

Which copy of the images. A dataset whose learners may read one of several copies of its
images (CIFAR-10: torchvision's lossless ``test_batch`` or a JPEG-derived copy) names the copy
it would read in ``task.info["image_source"]``, found by a path lookup, not by loading, and
names in ``task.info["image_source_default"]`` the copy its entries were fitted on before the
key knew about copies. The key's task part gains ``image_source`` only when the source is set
and differs from that default, so every existing key, and the posteriors shipped with the
committed results (fitted on CIFAR-10's JPEG-derived copy, the CIFAR-10H adapter's default),
stay what they were, while a fit on another copy is another entry. A task that finds no copy
(``image_source`` None) looks up the default's key: without images, the shipped posteriors are
the documented fallback. A fit that then obtains the images (a download) records the copy it
read, and its entry is stored under that copy's key.

Layout: ``<cache_dir>/<learner name>/<key>.npz`` holds ``probs`` (N, C), optionally
``stochastic`` (T, N, C), ``info`` (a JSON string), ``key`` and ``inputs`` (the key inputs, as
JSON); ``<key>.json`` beside it records the key, its inputs, ``info`` and the sha256 of each
stored array. Entries are written to a temporary file in the same folder and renamed into
place, so a crash or Ctrl-C never leaves a half-written entry.

An entry is trusted only after it is checked (:func:`_read_entry`): its arrays have the task's
shape and are valid posteriors (the checks of a user's ``--posteriors`` file, from
:mod:`benchmark.posteriors`), the key and key inputs it records are the ones looked up, and
its sidecar agrees with it (key, inputs, ``info``, array hashes). Entries written before the
``.npz`` recorded its key (those shipped in ``results/posteriors``) are accepted when their
sidecar records the key looked up, which is also the file's name, with the inputs it hashes
from; their sidecars have no array hashes, so that check applies to newer entries only. A bad
entry is reported with a warning naming the file and what is wrong, and re-fitted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import atomic_path
from benchmark.dataroot import DataNotFoundError
from benchmark.plugins import Learner, Posteriors
from benchmark.posteriors import check_posteriors_array
from benchmark.task import CleaningTask

#: Bump when the layout of an entry changes; old entries then simply miss.
CACHE_FORMAT = 1
KEY_LENGTH = 20
#: ``task.info`` fields: the copy of the images a learner would read, and the dataset's default.
IMAGE_SOURCE = "image_source"
IMAGE_SOURCE_DEFAULT = "image_source_default"


class BadEntryError(ValueError):
    """A cache entry that cannot be trusted; the message says what is wrong."""


@dataclass(frozen=True)
class CacheResult:
    """What :func:`fetch` found or made."""

    posteriors: Posteriors
    #: the cache key (recorded in results as the posteriors' provenance)
    key: str
    #: the entry read or written; None for learners that are not cached
    path: Path | None
    #: whether the learner was fitted (False: a cache hit)
    fitted: bool


def image_source(task: CleaningTask) -> str | None:
    """The image source that enters the key: None for the dataset's default copy, or none found."""
    source = task.info.get(IMAGE_SOURCE)
    if source is None or source == task.info.get(IMAGE_SOURCE_DEFAULT):
        return None
    return str(source)


def key_inputs(task: CleaningTask, learner: Learner, seed: int) -> dict[str, Any]:
    """Everything that determines a learner's output, as a JSON-ready dict (no images loaded)."""
    task_inputs: dict[str, Any] = {
        "name": task.name,
        "n_samples": task.n_samples,
        "n_classes": task.n_classes,
        "noisy_labels_sha256": _sha256(np.asarray(task.noisy_labels, dtype=np.int64)),
        "sample_ids_sha256": None if task.sample_ids is None else _sha256(task.sample_ids),
    }
    source = image_source(task)
    if source is not None:
        task_inputs["image_source"] = source
    return {
        "format": CACHE_FORMAT,
        "task": task_inputs,
        "learner": {
            "name": learner.name,
            "params": {k: _canonical(k, v) for k, v in sorted(learner.params.items())},
            "version": str(learner.version),
        },
        "seed": int(seed),
    }


def key_of(inputs: dict[str, Any]) -> str:
    """The first 20 hex digits of the sha256 of ``inputs`` as canonical JSON."""
    return hashlib.sha256(_canonical_json(inputs).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def cache_key(task: CleaningTask, learner: Learner, seed: int) -> str:
    """The key of (task, learner, seed): :func:`key_of` its :func:`key_inputs`."""
    return key_of(key_inputs(task, learner, seed))


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

    See :func:`fetch`.

    Returns:
        The posteriors and the cache key (recorded in results as the posteriors' provenance).
    """
    found = fetch(
        task,
        learner,
        seed,
        cache_dir=cache_dir,
        extra_cache_dirs=extra_cache_dirs,
        refit=refit,
        progress=progress,
    )
    return found.posteriors, found.key


def fetch(
    task: CleaningTask,
    learner: Learner,
    seed: int,
    *,
    cache_dir: Path,
    extra_cache_dirs: Sequence[Path] = (),
    refit: bool = False,
    progress: bool = True,
) -> CacheResult:
    """The learner's posteriors for ``task`` and ``seed``, with where they came from.

    An entry is looked up in ``cache_dir``, then in each of ``extra_cache_dirs`` (read-only
    caches with the same layout, such as the posteriors shipped with the committed results).
    A valid hit returns the stored arrays without calling the learner (or loading images). A
    miss, ``refit=True``, or only bad entries (each reported with a warning naming the file and
    what is wrong) fit the learner, check its output and store it atomically in ``cache_dir``.
    Learners whose class sets ``cache = False`` are fitted every time and nothing is read or
    written.

    Raises:
        DataNotFoundError: the fit needs images that are absent; when bad entries were passed
            over, the message names them as well.
        PosteriorsError: the learner returned invalid posteriors (nothing is stored).
    """
    inputs = key_inputs(task, learner, seed)
    key = key_of(inputs)
    if not type(learner).cache:
        return CacheResult(learner.fit_predict(task, seed=seed, progress=progress), key, None, False)
    rejected: list[str] = []
    for folder in [] if refit else [Path(cache_dir), *map(Path, extra_cache_dirs)]:
        candidate = folder / learner.name / f"{key}.npz"
        if not candidate.exists():
            continue
        try:
            return CacheResult(_read_entry(candidate, task, key, inputs), key, candidate, False)
        except Exception as exc:  # a bad entry is skipped and refitted, never trusted
            reason = (
                str(exc) if isinstance(exc, BadEntryError) else f"unreadable: {type(exc).__name__}: {exc}"
            )
            rejected.append(f"{candidate} ({reason})")
            warnings.warn(
                f"{candidate}: bad cache entry ({reason}); ignoring it for {learner.spec} on "
                f"{task.name} (seed {seed})",
                RuntimeWarning,
                stacklevel=2,
            )
    try:
        posteriors = learner.fit_predict(task, seed=seed, progress=progress)
    except DataNotFoundError as exc:
        if not rejected:
            raise
        entries = "; ".join(rejected)
        raise DataNotFoundError(
            f"the cache entr{'y' if len(rejected) == 1 else 'ies'} {entries} cannot be used, and "
            f"re-fitting {learner.spec} is not possible here: {exc}"
        ) from exc
    _check_posteriors(posteriors, task, where=f"{learner.spec}.fit_predict")
    # Recomputed: the fit may have settled which copy of the images it read (a download).
    inputs = key_inputs(task, learner, seed)
    key = key_of(inputs)
    path = Path(cache_dir) / learner.name / f"{key}.npz"
    _write_entry(path, posteriors, inputs, key)
    # What was stored, not what was fitted: a fresh fit and a later cache hit give identical runs.
    return CacheResult(_read_entry(path, task, key, inputs), key, path, True)


def _read_entry(path: Path, task: CleaningTask, key: str, inputs: dict[str, Any]) -> Posteriors:
    """The entry at ``path``, checked against the key looked up and its inputs.

    Raises:
        BadEntryError: saying every way in which the entry is not the one looked up or does not
            hold valid posteriors for ``task``.
        Exception: the file cannot be read at all.
    """
    with np.load(path, allow_pickle=False) as z:
        if "probs" not in z or "info" not in z:
            raise BadEntryError(f"it lacks {' and '.join(f for f in ('probs', 'info') if f not in z)}")
        raw = {name: np.asarray(z[name]) for name in ("probs", "stochastic") if name in z}
        info = json.loads(str(z["info"]))
        stored_key = str(z["key"]) if "key" in z else None
        stored_inputs = json.loads(str(z["inputs"])) if "inputs" in z else None
    problems: list[str] = []
    if info is not None and not isinstance(info, dict):
        problems.append("its info is neither a JSON object nor null")
    if stored_key is not None and stored_key != key:
        problems.append(f"it records key {stored_key}, not {key}")
    if stored_inputs is not None:
        problems += [f"it was made for {d}" for d in _differences(stored_inputs, inputs)]
    problems += _sidecar_problems(path, key, inputs, info, raw, entry_has_key=stored_key is not None)
    probs = raw["probs"]
    stochastic = raw.get("stochastic")
    posteriors = Posteriors(
        probs=_as_float32(probs),
        stochastic=None if stochastic is None else _as_float32(stochastic),
        info=info if isinstance(info, dict) else None,
    )
    try:
        _check_posteriors(posteriors, task, where="")
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise BadEntryError("; ".join(problems))
    return posteriors


def _as_float32(array: np.ndarray) -> np.ndarray:
    """Numbers as float32; anything else as it is, for the checks to refuse by its dtype."""
    return array.astype(np.float32) if array.dtype.kind in "fiu" else array


def _sidecar_problems(
    path: Path,
    key: str,
    inputs: dict[str, Any],
    info: Any,
    raw: dict[str, np.ndarray],
    *,
    entry_has_key: bool,
) -> list[str]:
    """How the ``.json`` beside the entry disagrees with it and with the key looked up.

    An entry whose ``.npz`` records no key must have a sidecar that records it: its key is then
    checked against the sidecar and its file name.
    """
    json_path = path.with_suffix(".json")
    if not json_path.is_file():
        if entry_has_key:
            return []
        return [f"it records no key (no key in the .npz and no {json_path.name} beside it)"]
    try:
        sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"its sidecar {json_path.name} cannot be read ({type(exc).__name__}: {exc})"]
    if not isinstance(sidecar, dict):
        return [f"its sidecar {json_path.name} is not a JSON object"]
    problems: list[str] = []
    if sidecar.get("key") != key or path.stem != key:
        problems.append(f"its sidecar records key {sidecar.get('key')}, file name {path.stem}, not {key}")
    if "inputs" not in sidecar:
        problems.append(f"its sidecar {json_path.name} records no key inputs")
    else:
        problems += [f"its sidecar says it was made for {d}" for d in _differences(sidecar["inputs"], inputs)]
    if "info" in sidecar and _canonical_json(sidecar["info"]) != _canonical_json(info):
        problems.append(f"its info differs from the one its sidecar {json_path.name} records")
    for name, digest in (sidecar.get("sha256") or {}).items():
        if name not in raw:
            problems.append(f"it lacks {name}, which its sidecar records")
        elif _sha256(raw[name]) != digest:
            problems.append(f"its {name} is not what its sidecar records (sha256 differs)")
    for name in raw:
        if sidecar.get("sha256") is not None and name not in sidecar["sha256"]:
            problems.append(f"it holds {name}, which its sidecar does not record")
    return problems


def _differences(found: Any, expected: Any, where: str = "") -> list[str]:
    """``field: found (expected ...)`` for each leaf where two key-input dicts differ."""
    if isinstance(found, dict) and isinstance(expected, dict):
        out: list[str] = []
        for name in sorted(set(found) | set(expected), key=str):
            sub = f"{where}.{name}" if where else str(name)
            if name not in found:
                out.append(f"no {sub} (expected {expected[name]!r})")
            elif name not in expected:
                out.append(f"{sub}={found[name]!r} (expected none)")
            else:
                out += _differences(found[name], expected[name], sub)
        return out
    if _canonical_json(found) != _canonical_json(expected):
        return [f"{where or 'inputs'}={found!r} (expected {expected!r})"]
    return []


def _check_posteriors(posteriors: Posteriors, task: CleaningTask, *, where: str) -> None:
    """Shapes first, then the values (finite, >= 0, rows summing to 1), as for a user's file."""
    _check_shape(posteriors, task, what=where or "the entry")
    prefix = f"{where} " if where else ""
    check_posteriors_array(
        posteriors.probs, task.n_samples, task.n_classes, where=f"{prefix}probs", ndim=(2,)
    )
    if posteriors.stochastic is not None:
        check_posteriors_array(
            posteriors.stochastic, task.n_samples, task.n_classes, where=f"{prefix}stochastic", ndim=(3,)
        )


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
        "key": np.array(key),
        "inputs": np.array(_canonical_json(inputs)),
    }
    if posteriors.stochastic is not None:
        # Half precision is plenty for BALD and halves what the repository ships.
        arrays["stochastic"] = np.asarray(posteriors.stochastic, dtype=np.float16)
    sidecar = {
        "key": key,
        "inputs": inputs,
        "info": json.loads(info_json),
        "sha256": {name: _sha256(arrays[name]) for name in ("probs", "stochastic") if name in arrays},
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


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


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
