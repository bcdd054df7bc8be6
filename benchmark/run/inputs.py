"""Where a plan's inputs come from: its tasks loaded, its posteriors read from the cache,
fitted here, or fitted as tasks of a cluster (:mod:`benchmark.run.engines`), and read from a
file; each problem kept as the (status, reason) of the cells it touches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark import registry
from benchmark.config import Source, sha256_file
from benchmark.dataroot import DataNotFoundError
from benchmark.plugins import Posteriors
from benchmark.posteriors.cache import load_or_fit
from benchmark.posteriors.files import load_posteriors_file
from benchmark.run.engines import Engine
from benchmark.task import CleaningTask


def fit_on_engine(
    plan: Any,
    fits: list[tuple[tuple[str, str, int], CleaningTask, Any]],
    engine: Engine,
    retries: int,
    cache_dir: Path,
    extra_cache_dirs: Sequence[Path],
    refit: bool,
) -> None:
    """Every learner fit of ``fits`` as an engine task (GPU ones on GPU workers when the
    cluster has them); fills the plan's posteriors, or its problems."""
    from benchmark.learners._torch import TorchLearner

    for gpu in (True, False):
        mine = [f for f in fits if isinstance(f[2], TorchLearner) == gpu]
        if not mine:
            continue
        calls = [
            (task, learner, key[2], cache_dir, tuple(extra_cache_dirs), refit) for key, task, learner in mine
        ]
        for i, result in engine.map(fit_task, calls, retries=retries, gpu=gpu):
            key, _, learner = mine[i]
            if isinstance(result, DataNotFoundError):
                plan.unavailable[key] = ("skipped", f"learner {learner.spec}: {result}")
            elif isinstance(result, BaseException):
                plan.unavailable[key] = (
                    "failed",
                    f"learner {learner.spec}: {type(result).__name__}: {result}",
                )
            else:
                plan.posteriors[key], plan.posterior_ids[key] = result


def fit_task(
    task: CleaningTask,
    learner: Any,
    seed: int,
    cache_dir: Path,
    extra_cache_dirs: Sequence[Path],
    refit: bool,
    progress: bool = False,
) -> tuple[Posteriors, str]:
    """One learner fit (on a worker, or here): read from the cache, or fitted and stored there."""
    return load_or_fit(
        task,
        learner,
        seed,
        cache_dir=cache_dir,
        extra_cache_dirs=extra_cache_dirs,
        refit=refit,
        progress=progress,
    )


Problem = tuple[str, str]  # (status, reason)


def load_task(spec: str, data_root: Path | None) -> tuple[CleaningTask | None, str, Problem | None]:
    """(task, canonical spec, None), or (None, spec, problem) when it cannot be loaded."""
    try:
        dataset = registry.create("dataset", spec)
        return dataset.load(data_root), dataset.spec, None
    except DataNotFoundError as exc:
        return None, spec, ("skipped", str(exc))
    except (Exception, SystemExit) as exc:
        return None, spec, ("failed", f"dataset {spec}: {type(exc).__name__}: {exc}")


def posterior_source(
    source: Source, *, cache_dir: Path, extra_cache_dirs: Sequence[Path], refit: bool, progress: bool
) -> tuple[str, str, Any, Problem | None]:
    """(label, file sha256, fetch(task, seed) -> (posteriors, id), problem) for a source."""
    if source.file is not None:
        path = source.file
        sha = sha256_file(path) if path.is_file() else ""
        loaded: dict[str, Posteriors] = {}

        def from_file(task: CleaningTask, seed: int) -> tuple[Posteriors, str]:
            if task.name not in loaded:  # one file serves every seed
                loaded[task.name] = load_posteriors_file(path, task.n_samples, task.n_classes)
            return loaded[task.name], f"sha256:{sha}"

        return source.label, sha, from_file, None
    try:
        learner = registry.create("learner", source.label)
    except (Exception, SystemExit) as exc:
        return source.label, "", None, ("failed", f"learner {source.label}: {exc}")

    def from_learner(task: CleaningTask, seed: int) -> tuple[Posteriors, str]:
        return fit_task(task, learner, seed, cache_dir, extra_cache_dirs, refit, progress)

    from_learner.learner = learner  # type: ignore[attr-defined]  # for a cluster fit
    return learner.spec, "", from_learner, None
