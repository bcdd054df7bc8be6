"""Runs a grid of cells (dataset x learner x strategy x seed) and stores their results.

Each cell is a pure function of its configuration. It writes its own files under
``<out>/cells/`` (the curve first, then the run row, each atomically), so an interrupted or
partly failed benchmark keeps every finished cell and a rerun only does what is missing.
The consolidated long-format tables ``runs.parquet`` / ``runs.csv`` / ``curves.parquet`` are
rebuilt from the cell files at the end. Cells run in parallel through joblib; learner outputs
are computed once per (dataset, learner, seed), before the cells, and shared through the
on-disk cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from benchmark import registry
from benchmark.config import DEFAULT_TARGET_ACCURACY, CellConfig, Source, sha256_file
from benchmark.dataroot import DataNotFoundError
from benchmark.plugins import Posteriors, ScoringContext, Strategy, parse_spec
from benchmark.posteriors.cache import load_or_fit
from benchmark.posteriors.files import load_posteriors_file
from benchmark.results.tables import finished_row, provenance, task_columns, write_cell
from benchmark.run.engines import DEFAULT_RETRIES, Engine
from benchmark.simulation.diagnostics import first_picks
from benchmark.simulation.metrics import curve_points, run_metrics
from benchmark.simulation.simulator import initial_counts, simulate
from benchmark.simulation.snapshots import FRACTIONS, budgets_at, labels_at
from benchmark.simulation.trajectory import MissingInputError, missing_inputs
from benchmark.task import CleaningTask
from benchmark.threads import thread_budget, threads_for_fits


def run_cell(
    config: CellConfig, task: CleaningTask, posteriors: Posteriors, out_dir: Path, posteriors_id: str = ""
) -> dict[str, Any]:
    """Simulates one cell, writes its files and returns its run row. Never raises for a
    problem of the strategy: the row then has status "failed" and the error message; a
    strategy that needs an input this cell lacks is "skipped" with the reason."""
    row: dict[str, Any] = {**config.row(), **task_columns(task), "posteriors_id": posteriors_id}
    # what the learner's fit reported: accuracy against the true (plurality) labels, and its cost
    info = posteriors.info or {}
    row.update(learner_accuracy=info.get("accuracy_true"), fit_seconds=info.get("seconds"))
    curve: pd.DataFrame | None = None
    snapshots: dict[str, np.ndarray] | None = None
    timings: list[dict[str, float]] = []
    try:
        strategy: Strategy = registry.create("strategy", config.strategy)
        ctx = ScoringContext(
            label_counts=initial_counts(task),
            posteriors=posteriors.probs.astype(np.float64),
            stochastic=None if posteriors.stochastic is None else posteriors.stochastic.astype(np.float64),
            true_dist=task.true_dist if "truth" in strategy.requires else None,
            seed=config.seed,
        )
        missing = missing_inputs(strategy, ctx)
        if missing:
            raise MissingInputError(
                f"{config.strategy} needs {' and '.join(missing)}; {config.learner} provides none"
            )
        # where the run's first picks fall (mislabelled / ambiguous / clear), before it starts
        picks = first_picks(task, strategy.score(ctx), config.seed)
        refit, timings = _refit_for(config, task) if config.active_every else (None, [])
        traj = simulate(task, strategy, ctx, seed=config.seed, refit=refit, refit_every=config.active_every)
        budgets = budgets_at(traj.budget)
        labels = labels_at(
            task,
            traj,
            budgets.tolist(),
            resimulate=lambda b: simulate(
                task, strategy, ctx, seed=config.seed, budget=b, refit=refit, refit_every=config.active_every
            ),
        )
        snapshots = {
            "fractions": np.asarray(FRACTIONS),
            "budgets": budgets,
            "labels": labels.astype(np.int16 if task.n_classes < 2**15 else np.int64),
        }
        row.update(status="ok", error="", **run_metrics(task, traj, target=config.target))
        row.update(n_refits=int(traj.refits.size), refit_at=json.dumps(traj.refits.tolist()), **picks)
        x, y = curve_points(traj)
        curve = pd.DataFrame(
            {
                "config_hash": config.hash,
                "step": np.arange(x.size, dtype=np.int64),
                "annotations": x.astype(np.int64),
                "accuracy": y,
                "mislabelled_clear": np.r_[traj.initial_clear, traj.mislabelled_clear].astype(np.int64),
                "mislabelled_ambiguous": np.r_[traj.initial_ambiguous, traj.mislabelled_ambiguous].astype(
                    np.int64
                ),
                "sample": np.r_[-1, traj.selected].astype(np.int64),
            }
        )
    except (MissingInputError, DataNotFoundError) as exc:  # an input this cell cannot have here
        row.update(status="skipped", error=str(exc))
    except (Exception, SystemExit) as exc:  # one broken plugin must not take the others down
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row.update(provenance())
    # wall-clock cost of the re-fits goes apart from the result tables (which stay identical)
    write_cell(out_dir, config, row, curve, timings, snapshots)
    return row


def _refit_for(config: CellConfig, task: CleaningTask) -> tuple[Any, list[dict[str, float]]]:
    """The active loop's re-fit for a cell, and the list it records each re-fit's cost in."""
    if config.learner.startswith("file:"):
        raise ValueError("an active run re-fits a learner; posteriors from a file cannot be re-fitted")
    learner = registry.create("learner", config.learner)
    timings: list[dict[str, float]] = []

    def refit(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        started = time.perf_counter()
        post = learner.refit(task, np.argmax(counts, axis=1), seed=config.seed, progress=False)
        timings.append(
            {"annotations": float(counts.sum() - task.n_samples), "seconds": time.perf_counter() - started}
        )
        stochastic = None if post.stochastic is None else post.stochastic.astype(np.float64)
        return post.probs.astype(np.float64), stochastic

    return refit, timings


@dataclass
class Plan:
    """The cells to run, with their tasks and posteriors resolved."""

    configs: list[CellConfig]
    tasks: dict[str, CleaningTask]
    posteriors: dict[tuple[str, str, int], Posteriors]
    #: (dataset, learner, seed) -> cache key of the learner output, or sha256 of the file
    posterior_ids: dict[tuple[str, str, int], str]
    unavailable: dict[tuple[str, str, int], tuple[str, str]]  # key -> (status, reason)


def prepare(
    grid: Sequence[tuple[str, Sequence[Source]]],
    strategies: Sequence[str],
    seeds: Sequence[int],
    *,
    data_root: Path | None,
    cache_dir: Path,
    extra_cache_dirs: Sequence[Path] = (),
    refit: bool = False,
    target: float = DEFAULT_TARGET_ACCURACY,
    progress: bool = True,
    active_every: int = 0,
    engine: Engine | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Plan:
    """Loads the tasks and computes (or loads) every posterior the cells need.

    With an ``engine`` (a cluster, :mod:`benchmark.run.engines`), each learner fit is a task of
    its own on a worker (once per cache key; the worker writes the cache entry), rather than
    run in this process.

    ``grid`` pairs each dataset spec with the posterior sources it is run with; every pair
    is crossed with every strategy and seed. With ``active_every``, each strategy that reads
    the model's posteriors also gets an active cell that re-fits the learner every that many
    annotations.

    A dataset or learner that cannot provide its inputs makes its cells "skipped" (data files
    absent, with the message saying where they were looked for) or "failed" (anything else);
    the rest of the plan goes on.
    """
    plan = Plan(configs=[], tasks={}, posteriors={}, posterior_ids={}, unavailable={})
    remote: list[tuple[tuple[str, str, int], CleaningTask, Any]] = []  # fits for the engine
    for dataset_spec, sources in grid:
        task, dataset_spec, task_problem = _load_task(dataset_spec, data_root)
        if task is not None:
            plan.tasks[dataset_spec] = task
        for source in sources:
            label, sha, fetch, source_problem = _posterior_source(
                source, cache_dir=cache_dir, extra_cache_dirs=extra_cache_dirs, refit=refit, progress=progress
            )
            learner = getattr(fetch, "learner", None)
            for seed in seeds:
                key = (dataset_spec, label, seed)
                plan.configs += [CellConfig(dataset_spec, label, s, seed, target, sha) for s in strategies]
                plan.configs += [
                    CellConfig(dataset_spec, label, s, seed, target, sha, every)
                    for every in dict.fromkeys(e for e in (active_every, source.active_every) if e)
                    for s in strategies
                    if registry.get("strategy", parse_spec(s)[0]).uses_model()
                ]
                problem = task_problem or source_problem
                if problem is None and engine is not None and learner is not None:
                    assert task is not None
                    remote.append((key, task, learner))
                    continue
                if problem is None:
                    assert task is not None
                    try:
                        plan.posteriors[key], plan.posterior_ids[key] = fetch(task, seed)
                    except DataNotFoundError as exc:
                        problem = ("skipped", f"learner {label}: {exc}")
                    except (Exception, SystemExit) as exc:
                        problem = ("failed", f"learner {label}: {type(exc).__name__}: {exc}")
                if problem is not None:
                    plan.unavailable[key] = problem
    if remote:
        assert engine is not None
        _fit_on_engine(plan, remote, engine, retries, cache_dir, extra_cache_dirs, refit)
    return plan


def _fit_on_engine(
    plan: Plan,
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
        for i, result in engine.map(_fit_task, calls, retries=retries, gpu=gpu):
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


def _fit_task(
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


def _load_task(spec: str, data_root: Path | None) -> tuple[CleaningTask | None, str, Problem | None]:
    """(task, canonical spec, None), or (None, spec, problem) when it cannot be loaded."""
    try:
        dataset = registry.create("dataset", spec)
        return dataset.load(data_root), dataset.spec, None
    except DataNotFoundError as exc:
        return None, spec, ("skipped", str(exc))
    except (Exception, SystemExit) as exc:
        return None, spec, ("failed", f"dataset {spec}: {type(exc).__name__}: {exc}")


def _posterior_source(
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
        return _fit_task(task, learner, seed, cache_dir, extra_cache_dirs, refit, progress)

    from_learner.learner = learner  # type: ignore[attr-defined]  # for a cluster fit
    return learner.spec, "", from_learner, None


def execute(
    plan: Plan,
    out_dir: Path,
    *,
    jobs: int = 1,
    resume: bool = False,
    progress: bool = True,
    engine: Engine | None = None,
    retries: int = DEFAULT_RETRIES,
) -> list[dict[str, Any]]:
    """Runs every cell of the plan and returns their rows.

    With ``resume``, cells already finished in ``out_dir`` (ok or skipped) are read back
    instead of rerun: for picking up an interrupted benchmark, not after changing code. A
    finished cell is reused only when it ran on the posteriors this plan has for it (its
    row's ``posteriors_id``, the cache key that names the learner's version and parameters,
    or the file's sha256); cells whose posteriors are unavailable now are never reused.

    With an ``engine``, each cell is a task on the cluster, run again up to ``retries`` times
    when its worker dies; one that does not come back is a failed cell.

    Each cell may use :func:`~benchmark.threads.thread_budget` CPU threads (``$ALCBENCH_THREADS`` while it
    runs), so that ``jobs`` cells re-fitting learners at once share the cores without
    oversubscribing them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    todo: list[CellConfig] = []
    for config in plan.configs:
        key = config.source_key
        done = finished_row(out_dir, config) if resume and key not in plan.unavailable else None
        if done is not None and done.get("posteriors_id") != plan.posterior_ids.get(key):
            done = None  # finished on other posteriors (another learner version, another file)
        if done is not None:
            rows.append(done)
        elif key in plan.unavailable:
            status, reason = plan.unavailable[key]
            rows.append(_unavailable_row(config, plan, status, reason, out_dir))
        else:
            todo.append(config)
    if todo:
        # Tasks travel to worker processes without their image loader (a closure).
        light = {k: replace(t, load_images=None) for k, t in plan.tasks.items()}
        threads = thread_budget(jobs)
        calls = (
            delayed(_run_cell_with_threads)(
                threads,
                c,
                # an active cell re-fits its learner, which reads the images
                plan.tasks[c.dataset] if c.active_every else light[c.dataset],
                plan.posteriors[key],
                out_dir,
                plan.posterior_ids[key],
            )
            for c in todo
            for key in [c.source_key]
        )
        results: Iterable[dict[str, Any]]
        if engine is not None:
            results = _cells_on_engine(engine, list(calls), todo, plan, out_dir, retries)
        elif jobs == 1:
            results = (fn(*args, **kwargs) for fn, args, kwargs in calls)
        else:
            results = Parallel(n_jobs=jobs, return_as="generator_unordered")(calls)
        for row in tqdm(results, total=len(todo), desc="cells", unit="cell", disable=not progress):
            rows.append(row)
    return rows


def _cells_on_engine(
    engine: Engine,
    calls: list[Any],
    todo: list[CellConfig],
    plan: Plan,
    out_dir: Path,
    retries: int,
) -> Iterator[dict[str, Any]]:
    """The rows of cells run as engine tasks; a cell whose task raised or was lost becomes a
    failed row (written like any other)."""
    args = [tuple(a) for _, a, _ in calls]
    for i, result in engine.map(_run_cell_with_threads, args, retries=retries):
        if isinstance(result, BaseException):
            yield _unavailable_row(todo[i], plan, "failed", f"{type(result).__name__}: {result}", out_dir)
        else:
            yield result


def _run_cell_with_threads(threads: int, *args: Any) -> dict[str, Any]:
    """:func:`run_cell` with its learner re-fits limited to ``threads`` CPU threads."""
    with threads_for_fits(threads):
        return run_cell(*args)


def _unavailable_row(
    config: CellConfig, plan: Plan, status: str, reason: str, out_dir: Path
) -> dict[str, Any]:
    row: dict[str, Any] = {**config.row(), "status": status, "error": reason}
    task = plan.tasks.get(config.dataset)
    if task is not None:
        row.update(task_columns(task))
    row.update(provenance())
    write_cell(out_dir, config, row)
    return row
