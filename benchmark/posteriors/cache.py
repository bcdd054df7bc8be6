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

Layout: ``<cache_dir>/<learner name>/<key>.npz`` (compressed) holds ``probs`` (N, C) float32,
optionally ``stochastic`` (T, N, C) float16, ``info`` (a JSON string), ``key`` and ``inputs``
(the key inputs, as JSON); ``<key>.json`` beside it records the key, its inputs, ``info`` and
the sha256 of each stored array. Entries are written to a temporary file in the same folder and renamed into
place, so a crash or Ctrl-C never leaves a half-written entry.

An entry is trusted only after it is checked (:func:`read_entry`): its arrays have the task's
shape and are valid posteriors (the checks of a user's ``--posteriors`` file, from
:mod:`benchmark.posteriors.files`), the key and key inputs it records are the ones looked up, and
its sidecar agrees with it (key, inputs, ``info``, array hashes). Entries written before the
``.npz`` recorded its key (those shipped in ``results/posteriors``) are accepted when their
sidecar records the key looked up, which is also the file's name, with the inputs it hashes
from; their sidecars have no array hashes, so that check applies to newer entries only. A bad
entry is reported with a warning naming the file and what is wrong, and re-fitted.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.atomic import file_lock
from benchmark.dataroot import DataNotFoundError, user_cache_dir
from benchmark.plugins import Learner, Posteriors
from benchmark.posteriors.cache_entry import (
    BadEntryError,
    array_sha256,
    canonical_json,
    canonical_value,
    check_fit_output,
    read_entry,
    write_entry,
)
from benchmark.registry import PROJECT_ROOT
from benchmark.task import CleaningTask

#: Sub-folder of a learner's cache folder holding the lock files of fits under way.
LOCKS = ".locks"
#: Bump when the layout of an entry changes; old entries then simply miss.
CACHE_FORMAT = 1
KEY_LENGTH = 20
#: ``task.info`` fields: the copy of the images a learner would read, and the dataset's default.
IMAGE_SOURCE = "image_source"
IMAGE_SOURCE_DEFAULT = "image_source_default"
#: ``task.info`` fields of a task's clean evaluation set (``CleaningTask.load_eval``): what it
#: is, the copy that would be read, and the dataset's default copy.
EVAL_SET = "eval_set"
EVAL_SOURCE = "eval_source"
EVAL_SOURCE_DEFAULT = "eval_source_default"
#: The posteriors shipped with the project (in a checkout), read by every command.
SHIPPED_POSTERIORS = PROJECT_ROOT / "results" / "posteriors"


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


#: Environment variable naming the cache folders (``os.pathsep``-separated, the first is written
#: to) for what learners store beside their posteriors, such as a pretrained encoder; set by
#: the command line for the processes it starts.
CACHE_DIRS_ENV = "ALCBENCH_CACHE_DIRS"


def use_cache_dirs(cache_dir: Path, extra_cache_dirs: Sequence[Path] = ()) -> None:
    """Makes ``cache_dir`` (written to) and ``extra_cache_dirs`` (read from) the folders that
    :func:`artifact_dirs` returns, in this process and the worker processes it starts."""
    os.environ[CACHE_DIRS_ENV] = os.pathsep.join(str(Path(p)) for p in (cache_dir, *extra_cache_dirs))


def artifact_dirs() -> tuple[Path, list[Path]]:
    """The folder a learner writes what it stores beside its posteriors to, and the folders it
    also reads from: those of :func:`use_cache_dirs`, else the user cache (written) and the
    posteriors shipped with the project (read)."""
    configured = [Path(p) for p in os.environ.get(CACHE_DIRS_ENV, "").split(os.pathsep) if p]
    if configured:
        return configured[0], configured[1:]
    return user_cache_dir() / "posteriors", [SHIPPED_POSTERIORS]


def image_source(
    task: CleaningTask, field: str = IMAGE_SOURCE, default: str = IMAGE_SOURCE_DEFAULT
) -> str | None:
    """The image source that enters the key: None for the dataset's default copy, or none found
    (``field`` and ``default`` name another pair of ``task.info`` fields, such as the
    evaluation set's :data:`EVAL_SOURCE` and :data:`EVAL_SOURCE_DEFAULT`)."""
    source = task.info.get(field)
    if source is None or source == task.info.get(default):
        return None
    return str(source)


def key_params(learner: Learner) -> dict[str, Any]:
    """The learner's parameters as they enter its cache key: canonical values, sorted by name,
    without those at their :attr:`~benchmark.plugins.Learner.key_neutral` value."""
    neutral = type(learner).key_neutral
    return {
        k: canonical_value(k, v)
        for k, v in sorted(learner.params.items())
        if not (k in neutral and canonical_value(k, v) == canonical_value(k, neutral[k]))
    }


def key_inputs(task: CleaningTask, learner: Learner, seed: int) -> dict[str, Any]:
    """Everything that determines a learner's output, as a JSON-ready dict (no images loaded)."""
    task_inputs: dict[str, Any] = {
        "name": task.name,
        "n_samples": task.n_samples,
        "n_classes": task.n_classes,
        "noisy_labels_sha256": array_sha256(np.asarray(task.noisy_labels, dtype=np.int64)),
        "sample_ids_sha256": None if task.sample_ids is None else array_sha256(task.sample_ids),
    }
    source = image_source(task)
    if source is not None:
        task_inputs["image_source"] = source
    return {
        "format": CACHE_FORMAT,
        "task": task_inputs,
        "learner": {
            "name": learner.name,
            "params": key_params(learner),
            "version": str(learner.version),
        },
        "seed": int(seed),
    }


def key_of(inputs: dict[str, Any]) -> str:
    """The first 20 hex digits of the sha256 of ``inputs`` as canonical JSON."""
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()[:KEY_LENGTH]


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
            return CacheResult(read_entry(candidate, task, key, inputs), key, candidate, False)
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
    # One fit per entry at a time: a process (or cluster worker) that finds another fitting the
    # same entry waits for it and reads what it stored.
    with file_lock(Path(cache_dir) / learner.name / LOCKS / f"{key}.lock"):
        own = Path(cache_dir) / learner.name / f"{key}.npz"
        if not refit and own.exists() and not rejected:
            try:
                return CacheResult(read_entry(own, task, key, inputs), key, own, False)
            except Exception:  # noqa: BLE001 - written meanwhile but bad: fitted again below
                pass
        return _fit_and_store(task, learner, seed, cache_dir, rejected, progress)


def _fit_and_store(
    task: CleaningTask, learner: Learner, seed: int, cache_dir: Path, rejected: list[str], progress: bool
) -> CacheResult:
    """Fits the learner, checks its output and stores it in ``cache_dir`` (see :func:`fetch`)."""
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
    check_fit_output(posteriors, task, where=f"{learner.spec}.fit_predict")
    # Recomputed: the fit may have settled which copy of the images it read (a download).
    inputs = key_inputs(task, learner, seed)
    key = key_of(inputs)
    path = Path(cache_dir) / learner.name / f"{key}.npz"
    write_entry(path, posteriors, inputs, key)
    # What was stored, not what was fitted: a fresh fit and a later cache hit give identical runs.
    return CacheResult(read_entry(path, task, key, inputs), key, path, True)
