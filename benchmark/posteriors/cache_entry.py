"""One entry of the posterior cache on disk: how it is written, atomically, and how it is
checked before it is trusted (see :mod:`benchmark.posteriors.cache` for the keys and the layout)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import atomic_path
from benchmark.plugins import Posteriors
from benchmark.posteriors.files import check_posteriors_array
from benchmark.task import CleaningTask


class BadEntryError(ValueError):
    """A cache entry that cannot be trusted; the message says what is wrong."""


def read_entry(path: Path, task: CleaningTask, key: str, inputs: dict[str, Any]) -> Posteriors:
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
        check_fit_output(posteriors, task, where="")
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
    if "info" in sidecar and canonical_json(sidecar["info"]) != canonical_json(info):
        problems.append(f"its info differs from the one its sidecar {json_path.name} records")
    for name, digest in (sidecar.get("sha256") or {}).items():
        if name not in raw:
            problems.append(f"it lacks {name}, which its sidecar records")
        elif array_sha256(raw[name]) != digest:
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
    if canonical_json(found) != canonical_json(expected):
        return [f"{where or 'inputs'}={found!r} (expected {expected!r})"]
    return []


def check_fit_output(posteriors: Posteriors, task: CleaningTask, *, where: str) -> None:
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


def write_entry(path: Path, posteriors: Posteriors, inputs: dict[str, Any], key: str) -> None:
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
        "inputs": np.array(canonical_json(inputs)),
    }
    if posteriors.stochastic is not None:
        # Half precision is plenty for BALD and halves what the repository ships.
        arrays["stochastic"] = np.asarray(posteriors.stochastic, dtype=np.float16)
    sidecar = {
        "key": key,
        "inputs": inputs,
        "info": json.loads(info_json),
        "sha256": {name: array_sha256(arrays[name]) for name in ("probs", "stochastic") if name in arrays},
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
            np.savez_compressed(f, **content)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())


def array_sha256(array: np.ndarray) -> str:
    array = np.asarray(array)
    if array.dtype == object:  # e.g. string ids: hash their text, not the pointers
        data = "\n".join(map(str, array.ravel())).encode("utf-8")
    elif np.issubdtype(array.dtype, np.integer):
        data = np.ascontiguousarray(array, dtype=np.int64).tobytes()
    else:
        data = array.dtype.str.encode() + np.ascontiguousarray(array).tobytes()
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def canonical_value(name: str, value: Any) -> Any:
    """A parameter value as JSON that hashes the same however it was spelled (2 == 2.0)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [canonical_value(name, v) for v in value]
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
