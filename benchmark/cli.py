"""The ``alcbench`` command line: list, run, suite, fit, report."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmark import registry
from benchmark.arguments import build_parser
from benchmark.dataroot import user_cache_dir
from benchmark.posteriors.cache import SHIPPED_POSTERIORS, use_cache_dirs

KIND_ALIASES = {
    "datasets": "dataset",
    "dataset": "dataset",
    "strategies": "strategy",
    "strategy": "strategy",
    "learners": "learner",
    "learner": "learner",
}
PLURALS = {"dataset": "datasets", "strategy": "strategies", "learner": "learners"}
#: Posteriors shipped with the project (those behind the committed results): a read-only
#: fallback of every command's posterior cache. The one place this path is computed.


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(COMMANDS[args.command](args))
        except (
            UsageError,
            registry.UnknownPluginError,
            registry.PluginLoadError,
            ValueError,
            OSError,
        ) as exc:
            print(f"alcbench: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("alcbench: interrupted; finished cells are kept (rerun with --resume)", file=sys.stderr)
            return 130


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings as one line on stderr, like the command's errors."""
    print(f"alcbench: warning: {message}", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    kinds = ["dataset", "strategy", "learner"] if args.kind == "all" else [KIND_ALIASES.get(args.kind, "")]
    if kinds == [""]:
        raise UsageError(f"unknown kind {args.kind!r}: use datasets, strategies, learners or all")
    for kind in kinds:
        infos = registry.list_plugins(kind, args.pattern)
        print(f"{PLURALS[kind]}:")
        width = max((len(i.name) for i in infos), default=0)
        for info in infos:
            mark = "" if info.ok else "  [failed]"
            params = _grid_text(info.cls) if info.cls is not None else ""
            print(f"  {info.name:<{width}}  {info.description}{mark}")
            print(f"  {'':<{width}}    from {info.origin}{params}")
            for hidden in info.shadows:
                print(f"  {'':<{width}}    name also used by {hidden} (not loaded: the first one found wins)")
        if not infos:
            print("  (none)")
    return 0


def _grid_text(cls: Any) -> str:
    """``; parameters: temperature = 2, 10 (a number > 0), n = 5000 (an integer in 1..10000)``."""
    from benchmark.params import format_value

    declared = cls.declared()
    if not declared:
        return ""
    return "; parameters: " + ", ".join(
        f"{k} = {', '.join(format_value(v) for v in p)} ({p.allowed()})" for k, p in declared.items()
    )


def _cache_dirs(args: argparse.Namespace, *, suite: bool) -> tuple[Path, list[Path]]:
    """The cache written to, and the caches only read from.

    Written to: ``--cache``, else for ``suite`` ``OUT/posteriors`` (the posteriors beside the
    results they produced), else the user cache. Read from as well, whatever ``--out`` is:
    the posteriors shipped with the project, unless they are the cache written to.
    """
    if args.cache is not None:
        cache_dir = Path(args.cache)
    elif suite:
        cache_dir = Path(args.out) / "posteriors"
    else:
        cache_dir = user_cache_dir() / "posteriors"
    shipped = Path(SHIPPED_POSTERIORS)
    extra = [] if cache_dir.resolve() == shipped.resolve() else [shipped]
    use_cache_dirs(cache_dir, extra)  # for what learners store beside their posteriors
    return cache_dir, extra


def _execute(
    args: argparse.Namespace,
    grid: list[tuple[str, list[Any]]],
    strategies: list[str],
    *,
    suite: bool,
    preload_failures: Sequence[str] = (),
) -> int:

    from benchmark.run.engines import open_engine
    from benchmark.threads import available_cores

    # Unknown names and bad parameters fail here, before any work; every spec is recorded in
    # its canonical form, so that two spellings of one configuration are one cell.
    grid = [
        (
            _canonical("dataset", dataset),
            [replace(s, learner=_canonical("learner", s.learner)) if s.learner else s for s in sources],
        )
        for dataset, sources in grid
    ]
    strategies = list(dict.fromkeys(_canonical("strategy", spec) for spec in strategies))
    cache_dir, extra = _cache_dirs(args, suite=suite)
    started = time.perf_counter()
    jobs = available_cores() if args.jobs == -1 else args.jobs
    with open_engine(args.backend, scheduler=args.scheduler, workers=jobs, retries=args.retries) as engine:
        return _execute_on(
            args, grid, strategies, suite, preload_failures, cache_dir, extra, jobs, engine, started
        )


def _execute_on(
    args: argparse.Namespace,
    grid: list[tuple[str, list[Any]]],
    strategies: list[str],
    suite: bool,
    preload_failures: Sequence[str],
    cache_dir: Path,
    extra: list[Path],
    jobs: int,
    engine: Any,
    started: float,
) -> int:
    import pandas as pd

    from benchmark.config import parse_seeds
    from benchmark.report.pages import write_report
    from benchmark.results import tables
    from benchmark.run import runner

    seeds = parse_seeds(args.seeds)
    progress = not args.no_progress
    plan = runner.prepare(
        grid,
        strategies,
        seeds,
        data_root=args.data_root,
        cache_dir=cache_dir,
        extra_cache_dirs=extra,
        refit=args.refit,
        target=args.target,
        progress=progress,
        active_every=args.active_every,
        engine=engine,
        retries=args.retries,
    )
    rows = runner.execute(
        plan, args.out, jobs=jobs, resume=args.resume, progress=progress, engine=engine, retries=args.retries
    )
    # Several commands may write into one folder: the tables are merged under a lock. A run, or
    # a suite over some plugins only, adds or replaces the rows of what it ran and keeps the
    # others; a whole suite keeps its own rows only, and --prune asks for that anywhere.
    merge = not (args.prune or (suite and not (args.datasets or args.strategies or args.learners)))
    with tables.locked(args.out):
        if args.prune:
            leaving = tables.rows_left_out(args.out, rows)
            if len(leaving):
                cells = {
                    f"{d} / {ln} / {s}" for d, ln, s in leaving[["dataset", "learner", "strategy"]].values
                }
                print(
                    f"--prune: removing {len(leaving)} rows of earlier runs from {args.out} "
                    f"({_first_few(cells)})"
                )
        update = tables.write_tables(args.out, rows, merge=merge)
        # the side tables keep the rows of the earlier runs the tables keep
        kept = set(update.runs["config_hash"]) - {c.hash for c in plan.configs} if merge else set()
        kept_datasets = set(update.runs["dataset"]) if merge else set()
        dropped = tables.write_skipped_inputs(args.out, plan.tasks, keep=kept_datasets)
        refit_timings = tables.write_refit_timings(args.out, plan.configs, keep=kept)
        if suite and not args.no_downstream and not merge:
            downstream_lines = _downstream(args.out, update.runs, plan.tasks, None, jobs, progress)
        elif suite and not args.no_downstream:
            # the kept rows' cell files (their label snapshots) need not be here: the downstream
            # tables stay as they are rather than lose the rows it could not redo
            downstream_lines = [
                "downstream: not run by a suite over some plugins; its tables are kept as they were "
                f"(alcbench downstream {args.out} runs it on every row)"
            ]
        else:
            downstream_lines = []
        written = write_report(args.out, update.runs, update.curves)
        if suite:
            from benchmark.report.site import publish

            written += publish(args.out, args.out / "site", refresh_report=False)
    elapsed = time.perf_counter() - started
    mine = pd.DataFrame(rows)
    ok = int((mine["status"] == "ok").sum())
    skipped = mine[mine["status"] == "skipped"]
    failed = mine[mine["status"] == "failed"]
    print(
        f"{ok} cells ok, {len(skipped)} skipped, {len(failed)} failed in {elapsed:.1f} s; "
        f"results in {args.out} ({len(written)} report files"
        + (f", {update.kept} rows of earlier runs kept" if update.kept else "")
        + ")"
    )
    for what, frame in (("replaced by this run", update.replaced), ("dropped", update.dropped)):
        if len(frame) and not (what == "dropped" and args.prune):  # --prune listed them first
            groups = {f"{d} / {ln}" for d, ln in zip(frame["dataset"], frame["learner"], strict=True)}
            print(
                f"  {len(frame)} rows of earlier runs in {args.out} were {what} ({_first_few(groups)}); "
                f"their cell files stay in {args.out / 'cells'}"
            )
    for label, frame in (("skipped", skipped), ("FAILED", failed)):
        # One entry per distinct reason: a missing image folder skips many cells at once.
        for error, group in frame.groupby("error", sort=True):
            cells = {
                f"{d} / {ln} / {st}"
                for d, ln, st in zip(group["dataset"], group["learner"], group["strategy"], strict=True)
            }
            print(
                f"  {label} ({len(group)} cells: {_first_few(cells)}):\n    "
                + str(error).replace("\n", "\n    ")
            )
    if len(refit_timings):
        print(
            f"  {len(refit_timings)} learner re-fits in active runs took "
            f"{refit_timings['seconds'].sum():.1f} s (listed in {args.out / 'refit_timings.csv'})"
        )
    if len(dropped):
        print(
            f"  {len(dropped)} unreadable inputs were skipped (listed in {args.out / 'skipped_inputs.csv'}):"
        )
        for r in dropped.head(10).itertuples(index=False):
            print(f"    {r.dataset}: {getattr(r, 'file', '')}: {getattr(r, 'reason', '')}")
    for line in downstream_lines:
        print(f"  {line}")
    if suite:
        print(f"  site: {args.out / 'site' / 'index.html'} (alcbench publish {args.out} writes it again)")
    for message in preload_failures:
        print(f"  FAILED plugin: {message}")
    return 1 if len(failed) or preload_failures else 0


def _downstream(
    out: Path,
    runs: Any,
    tasks: dict[str, Any],
    learner: str | None,
    jobs: int,
    progress: bool,
    model: str = "ssl-head",
) -> list[str]:
    """Runs the downstream stage on ``out``'s runs and writes its tables; returns summary lines."""
    from benchmark.downstream.models import RETRAIN_MODELS
    from benchmark.downstream.report import write_downstream
    from benchmark.downstream.training import run_downstream
    from benchmark.run.suite import downstream_groups

    started = time.perf_counter()
    groups, notes = downstream_groups(runs, tasks, learner)
    if not groups:
        return [f"downstream: nothing to do ({'; '.join(notes) or 'no ok runs'})"]
    result = run_downstream(
        out, runs, tasks, groups, model=RETRAIN_MODELS[model], progress=progress, jobs=jobs
    )
    result.notes[:0] = notes
    written = write_downstream(out, result)
    fits = int(result.training["test_accuracy"].notna().sum()) + int(
        result.candidates["test_accuracy"].notna().sum()
    )
    lines = [
        f"downstream: {fits} model fits read or made for {len(groups)} datasets in "
        f"{time.perf_counter() - started:.1f} s ({len(written)} files in {out / 'downstream'})"
    ]
    lines += [f"downstream, not done: {n}" for n in result.notes]
    return lines


def cmd_downstream(args: argparse.Namespace) -> int:
    from benchmark.report.pages import write_report
    from benchmark.results.tables import load_tables, locked
    from benchmark.threads import available_cores

    runs, curves = load_tables(args.dir)
    tasks = {}
    for spec in sorted(set(runs["dataset"])):
        try:
            tasks[spec] = registry.create("dataset", spec).load(args.data_root)
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot load is reported, not fatal
            print(f"  {spec}: cannot load ({type(exc).__name__}: {exc})")
    jobs = available_cores() if args.jobs == -1 else args.jobs
    with locked(args.dir):
        lines = _downstream(args.dir, runs, tasks, args.learner, jobs, not args.no_progress, args.model)
        write_report(args.dir, runs, curves)
    for line in lines:
        print(line)
    return 0


def _first_few(names: set[str], shown: int = 4) -> str:
    """The first ``shown`` names in order, then how many more there are."""
    ordered = sorted(names)
    more = f"; and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return "; ".join(ordered[:shown]) + more


def _canonical(kind: str, spec: str) -> str:
    """The canonical spec of the configured plugin (raises for unknown names and bad values)."""
    return str(registry.create(kind, spec).spec)


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.config import Source
    from benchmark.results.tables import check_writable

    check_writable(args.out)

    for spec in args.strategy:
        registry.create("strategy", spec)
    if args.posteriors is not None:
        # A bad file is the user's input error: say so before any work starts.
        from benchmark.posteriors.files import load_posteriors_file

        task = registry.create("dataset", args.dataset).load(args.data_root)
        load_posteriors_file(args.posteriors, task.n_samples, task.n_classes)
        source = Source(file=args.posteriors)
    else:
        source = Source(learner=args.learner or "smallcnn")
    return _execute(args, [(args.dataset, [source])], list(args.strategy), suite=False)


def cmd_suite(args: argparse.Namespace) -> int:
    from benchmark.results.tables import check_writable
    from benchmark.run.suite import expand, learners_for, source_for

    check_writable(args.out)
    datasets, failed_d = expand("dataset", tuple(args.datasets) if args.datasets else None)
    strategies, failed_s = expand("strategy", tuple(args.strategies) if args.strategies else None)
    grid = [
        (dataset, [source_for(spec) for spec in args.learners or learners_for(dataset)])
        for dataset in datasets
    ]
    return _execute(args, grid, strategies, suite=True, preload_failures=failed_d + failed_s)


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np

    from benchmark.config import parse_seeds
    from benchmark.posteriors.cache import fetch

    task = registry.create("dataset", args.dataset).load(args.data_root)
    learner = registry.create("learner", args.learner)
    cache_dir, extra = _cache_dirs(args, suite=False)
    for i, seed in enumerate(parse_seeds(args.seeds)):
        found = fetch(task, learner, seed, cache_dir=cache_dir, extra_cache_dirs=extra, refit=args.refit)
        post = found.posteriors
        if found.path is None:
            where = f"fitted (key {found.key}; {learner.spec} is not cached)"
        else:
            where = f"{'fitted, stored in' if found.fitted else 'cached in'} {found.path}"
        print(f"{task.name} / {learner.spec} / seed {seed}: {where} {post.info or ''}")
        if args.export is not None and i == 0:
            array = post.probs if post.stochastic is None else post.stochastic
            Path(args.export).parent.mkdir(parents=True, exist_ok=True)
            np.save(args.export, array)
            print(f"posteriors written to {args.export} (shape {array.shape})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.report.pages import write_report
    from benchmark.results.tables import load_tables

    runs, curves = load_tables(args.dir)
    for path in write_report(args.dir, runs, curves):
        print(path)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from benchmark.report.site import publish
    from benchmark.results.tables import locked

    site = args.site if args.site is not None else args.dir / "site"
    with locked(args.dir):
        written = publish(args.dir, site)
    pages = sorted(p.name for p in written if p.suffix == ".html")
    others = len(written) - len(pages)
    print(f"{len(pages)} pages and {others} other files in {site}; open {site / 'index.html'}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from benchmark.clean.cli import run_clean

    return run_clean(args)


COMMANDS = {
    "list": cmd_list,
    "run": cmd_run,
    "suite": cmd_suite,
    "fit": cmd_fit,
    "report": cmd_report,
    "downstream": cmd_downstream,
    "publish": cmd_publish,
    "clean": cmd_clean,
}


if __name__ == "__main__":
    raise SystemExit(main())
