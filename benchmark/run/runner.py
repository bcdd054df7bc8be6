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

import inspect
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from benchmark import registry
from benchmark.config import DEFAULT_TARGET_ACCURACY, CellConfig, Source
from benchmark.dataroot import DataNotFoundError
from benchmark.plugins import Posteriors, ScoringContext, Strategy, parse_spec
from benchmark.posteriors.cache import CACHE_DIRS_ENV
from benchmark.results.tables import finished_row, provenance, task_columns, write_cell
from benchmark.run import identity
from benchmark.run.engines import DEFAULT_RETRIES, Engine
from benchmark.run.inputs import fit_on_engine, load_task, posterior_source
from benchmark.simulation.diagnostics import first_picks
from benchmark.simulation.metrics import curve_points, run_metrics
from benchmark.simulation.simulator import initial_counts, simulate
from benchmark.simulation.snapshots import FRACTIONS, budgets_at, labels_at
from benchmark.simulation.trajectory import MissingInputError, missing_inputs
from benchmark.task import CleaningTask
from benchmark.threads import thread_budget, threads_for_fits


def run_cell(
    config: CellConfig,
    task: CleaningTask,
    posteriors: Posteriors,
    out_dir: Path,
    posteriors_id: str = "",
    cell_id: str = "",
) -> dict[str, Any]:
    """Simulates one cell, writes its files and returns its run row. Never raises for a
    problem of the strategy: the row then has status "failed" and the error message; a
    strategy that needs an input this cell lacks is "skipped" with the reason. ``cell_id`` is
    the cell's identity (:mod:`benchmark.run.identity`), recorded in the row."""
    row: dict[str, Any] = {
        **config.row(),
        "cell_id": cell_id,
        **task_columns(task),
        "posteriors_id": posteriors_id,
    }
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


#: The function itself, whatever later replaces the module's name (its source is part of every
#: cell's identity).
_RUN_CELL = run_cell


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
    #: config hash -> the cell's identity (:mod:`benchmark.run.identity`), for every cell
    #: whose task and posteriors are here
    cell_ids: dict[str, str] = field(default_factory=dict)
    #: what :func:`execute` did with the committed rows: config hashes of the rows it kept
    #: because their identity matched, and of those it kept unchecked (inputs not here)
    reused: set[str] = field(default_factory=set)
    unverified: set[str] = field(default_factory=set)

    def identify(self) -> None:
        """Fills :attr:`cell_ids` from the tasks and posteriors."""
        simulation = identity.simulation_fingerprint(inspect.getsource(_RUN_CELL))
        tasks = {spec: identity.task_fingerprint(task) for spec, task in self.tasks.items()}
        fingerprints = {key: identity.posteriors_fingerprint(p) for key, p in self.posteriors.items()}
        for config in self.configs:
            key = config.source_key
            if key in fingerprints and config.dataset in tasks:
                self.cell_ids[config.hash] = identity.cell_id(
                    config,
                    task=tasks[config.dataset],
                    posteriors=fingerprints[key],
                    posteriors_id=self.posterior_ids[key],
                    simulation=simulation,
                )


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
        task, dataset_spec, task_problem = load_task(dataset_spec, data_root)
        if task is not None:
            plan.tasks[dataset_spec] = task
        for source in sources:
            label, sha, fetch, source_problem = posterior_source(
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
        fit_on_engine(plan, remote, engine, retries, cache_dir, extra_cache_dirs, refit)
    plan.identify()
    return plan


def execute(
    plan: Plan,
    out_dir: Path,
    *,
    jobs: int = 1,
    resume: bool = False,
    progress: bool = True,
    engine: Engine | None = None,
    retries: int = DEFAULT_RETRIES,
    committed: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Runs every cell of the plan and returns their rows.

    With ``committed`` (the run table already in ``out_dir``), a row whose identity
    (``cell_id``, :mod:`benchmark.run.identity`) equals the identity the plan computed for its
    cell is kept as it is, not run again (``plan.reused``); so is a row of a cell whose
    inputs are not here to check (data files absent: ``plan.unverified``). Every other cell
    runs.

    With ``resume``, cells already finished in ``out_dir`` (ok or skipped) are read back
    instead of rerun: for picking up an interrupted benchmark. A finished cell is reused only
    when it ran on the posteriors this plan has for it (its row's ``posteriors_id``, the cache
    key that names the learner's version and parameters, or the file's sha256) and has the
    identity the plan computed for it (so not after a change of code or data); cells whose
    posteriors are unavailable now are never reused.

    With an ``engine``, each cell is a task on the cluster, run again up to ``retries`` times
    when its worker dies; one that does not come back is a failed cell.

    Each cell may use :func:`~benchmark.threads.thread_budget` CPU threads (``$ALCBENCH_THREADS`` while it
    runs), so that ``jobs`` cells re-fitting learners at once share the cores without
    oversubscribing them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    todo: list[CellConfig] = []
    earlier = (
        {}
        if committed is None
        else dict(zip(committed["config_hash"], committed.to_dict("records"), strict=True))
    )
    for config in plan.configs:
        key = config.source_key
        old = earlier.get(config.hash)
        if old is not None and old.get("status") in ("ok", "skipped"):
            ident = plan.cell_ids.get(config.hash)
            if ident is not None and old.get("cell_id") == ident:
                rows.append(old)
                plan.reused.add(config.hash)
                continue
            if ident is None and plan.unavailable.get(key, ("",))[0] == "skipped":
                rows.append(old)
                plan.unverified.add(config.hash)
                continue
        done = finished_row(out_dir, config) if resume and key not in plan.unavailable else None
        if done is not None and (
            done.get("posteriors_id") != plan.posterior_ids.get(key)
            or done.get("cell_id", "") != plan.cell_ids.get(config.hash, "")
        ):
            done = None  # finished on other posteriors or code (another learner version, a file)
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
                os.environ.get(CACHE_DIRS_ENV, ""),
                c,
                # an active cell re-fits its learner, which reads the images
                plan.tasks[c.dataset] if c.active_every else light[c.dataset],
                plan.posteriors[key],
                out_dir,
                plan.posterior_ids[key],
                plan.cell_ids.get(c.hash, ""),
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


def _run_cell_with_threads(threads: int, cache_dirs: str, *args: Any) -> dict[str, Any]:
    """:func:`run_cell` with its learner re-fits limited to ``threads`` CPU threads and reading
    what learners store beside their posteriors from the command's cache folders
    (``cache_dirs``, :func:`~benchmark.posteriors.cache.use_cache_dirs`): a worker process that
    outlives one command, as joblib's reusable workers do, must not use the folders of the
    command that started it."""
    previous = os.environ.get(CACHE_DIRS_ENV)
    os.environ[CACHE_DIRS_ENV] = cache_dirs
    try:
        with threads_for_fits(threads):
            return run_cell(*args)
    finally:
        if previous is None:
            os.environ.pop(CACHE_DIRS_ENV, None)
        else:
            os.environ[CACHE_DIRS_ENV] = previous


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
