"""What ``alcbench run``, ``suite`` and ``downstream`` do once their arguments are read: plan
the cells, keep the committed rows whose identity still matches, run the others, merge the
tables, bring the downstream stage, the report and the site up to date, and say what happened."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmark import registry
from benchmark.dataroot import user_cache_dir
from benchmark.posteriors.cache import SHIPPED_POSTERIORS, use_cache_dirs


def cache_dirs(args: argparse.Namespace, *, suite: bool) -> tuple[Path, list[Path]]:
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


def execute(
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
    cache_dir, extra = cache_dirs(args, suite=suite)
    started = time.perf_counter()
    jobs = available_cores() if args.jobs == -1 else args.jobs
    with open_engine(args.backend, scheduler=args.scheduler, workers=jobs, retries=args.retries) as engine:
        return execute_on(
            args, grid, strategies, suite, preload_failures, cache_dir, extra, jobs, engine, started
        )


def execute_on(
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
    from benchmark.results import side_tables, tables
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
    # a committed row whose identity (benchmark.run.identity) still matches is kept, not rerun
    committed = None
    if not args.rerun and (args.out / "runs.parquet").is_file():
        committed = tables.load_runs(args.out)
    rows = runner.execute(
        plan,
        args.out,
        jobs=jobs,
        resume=args.resume,
        progress=progress,
        engine=engine,
        retries=args.retries,
        committed=committed,
    )
    kept_here = plan.reused | plan.unverified
    ran = [r for r in rows if r["config_hash"] not in kept_here]
    # Several commands may write into one folder: the tables are merged under a lock. A run, or
    # a suite over some plugins only, adds or replaces the rows of what it ran and keeps the
    # others; a whole suite keeps its own rows only, and --prune asks for that anywhere.
    merge = not (args.prune or (suite and not (args.datasets or args.strategies or args.learners)))
    gone = _gone_rows(committed) if committed is not None else set()
    up_to_date = (
        committed is not None
        and not ran
        and (merge or set(committed["config_hash"]) == {r["config_hash"] for r in rows})
        and not gone
    )
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
        if up_to_date:  # nothing ran and nothing leaves: the tables stay as they are, byte for byte
            runs, curves = tables.load_tables(args.out)
            update = tables.TableUpdate(runs, curves, 0, runs.iloc[:0], runs.iloc[:0])
            dropped = refit_timings = pd.DataFrame()
        else:
            update = tables.write_tables(args.out, rows, merge=merge, reused=kept_here, leave=gone)
            # the side tables keep the rows of the earlier runs the tables keep
            kept = set(update.runs["config_hash"]) - {r["config_hash"] for r in ran}
            dropped = side_tables.write_skipped_inputs(args.out, plan.tasks, keep=set(update.runs["dataset"]))
            refit_timings = side_tables.write_refit_timings(
                args.out, [c for c in plan.configs if c.hash not in kept], keep=kept
            )
        if suite and not args.no_downstream:
            downstream_lines = _downstream(
                args.out, update.runs, plan.tasks, None, jobs, progress, ran={r["config_hash"] for r in ran}
            )
        else:
            downstream_lines = []
        report = write_report(args.out, update.runs, update.curves, highlight=args.highlight)
        written, summaries = list(report), [report.summary()]
        if suite:
            from benchmark.report.site import publish

            site = publish(args.out, args.out / "site", refresh_report=False, highlight=args.highlight)
            written += site
            summaries.append(site.summary())
    elapsed = time.perf_counter() - started
    mine = pd.DataFrame(rows)
    ok = int((mine["status"] == "ok").sum())
    fresh = pd.DataFrame(ran, columns=list(mine.columns))
    skipped = fresh[fresh["status"] == "skipped"]
    failed = fresh[fresh["status"] == "failed"]
    kept_skipped = int((mine["status"] == "skipped").sum()) - len(skipped)
    print(
        f"{ok} cells ok, {len(skipped) + kept_skipped} skipped, {len(failed)} failed in {elapsed:.1f} s: "
        f"{len(ran)} run, {len(plan.reused)} kept (identity unchanged)"
        + (f", {len(plan.unverified)} kept unchecked (their inputs are not here)" if plan.unverified else "")
        + f"; results in {args.out} ({len(written)} report files written"
        + (f", {update.kept} rows of earlier runs kept" if update.kept else "")
        + ")"
    )
    if up_to_date:
        print(f"  {args.out} was up to date: no table was written")
    for line in summaries:
        print(f"  {line}")
    for what, frame in (("replaced by this run", update.replaced), ("dropped", update.dropped)):
        if len(frame) and not (what == "dropped" and args.prune):  # --prune listed them first
            groups = {f"{d} / {ln}" for d, ln in zip(frame["dataset"], frame["learner"], strict=True)}
            print(
                f"  {len(frame)} rows of earlier runs in {args.out} were {what} ({_first_few(groups)}); "
                f"their cell files stay in {args.out / 'cells'}"
            )
    for line in _gone_plugins(update.dropped):
        print(f"  {line}")
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
    if kept_skipped:
        print(f"  {kept_skipped} kept rows are skipped cells (their reasons are in {args.out / 'runs.csv'})")
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


#: The run-table column that names each kind of plugin.
PLUGIN_COLUMNS = (("dataset", "dataset"), ("learner", "learner"), ("strategy", "strategy_spec"))


def _gone(runs: Any) -> dict[str, dict[str, str]]:
    """Per kind, the rows of ``runs`` (config hash -> plugin name) whose plugin of that kind no
    longer exists; posteriors files (``file:...``) are no plugins."""
    gone: dict[str, dict[str, str]] = {}
    for kind, column in PLUGIN_COLUMNS:
        if column not in runs.columns:
            continue
        known = registry.discover(kind)
        for spec, h in zip(runs[column], runs["config_hash"], strict=True):
            name = spec.split("[", 1)[0].strip() if isinstance(spec, str) else ""
            if name and not name.startswith("file:") and name not in known:
                gone.setdefault(kind, {})[h] = name
    return gone


def _gone_rows(runs: Any) -> set[str]:
    """Config hashes of the rows of ``runs`` whose dataset, learner or strategy plugin no longer
    exists: they leave the tables whatever the command."""
    return {h for rows in _gone(runs).values() for h in rows}


def _gone_plugins(dropped: Any) -> list[str]:
    """Lines naming the plugins of the dropped rows that no longer exist."""
    return [
        f"their {kind} plugins no longer exist: {', '.join(sorted(set(rows.values())))}"
        for kind, rows in _gone(dropped).items()
    ]


def _downstream(
    out: Path,
    runs: Any,
    tasks: dict[str, Any],
    learner: str | None,
    jobs: int,
    progress: bool,
    model: str = "ssl-head",
    ran: set[str] | None = None,
) -> list[str]:
    """Runs the downstream stage on ``out``'s runs and writes its tables; returns summary lines.

    With ``ran`` (the config hashes of the cells this command ran), only those runs, and the
    runs the tables have no rows of, are done; the rows of the other runs stay as they are
    (their label snapshots, in cell files, need not be here)."""
    from benchmark.downstream.models import RETRAIN_MODELS
    from benchmark.downstream.report import TRAINING_CSV, merge_downstream, write_downstream
    from benchmark.downstream.selection import NOISY, TRUE
    from benchmark.downstream.training import run_downstream
    from benchmark.run.suite import downstream_groups

    started = time.perf_counter()
    groups, notes = downstream_groups(runs, tasks, learner)
    if not groups:
        return [f"downstream: nothing to do ({'; '.join(notes) or 'no ok runs'})"]
    todo, keep = runs, set()
    if ran is not None and (out / TRAINING_CSV).is_file():
        import pandas as pd

        mine = runs[(runs["status"] == "ok") & runs["dataset"].isin(list(groups))]
        mine = mine[[groups[d] == ln for d, ln in zip(mine["dataset"], mine["learner"], strict=True)]]
        keys = list(
            zip(mine["dataset"], mine["learner"], mine["strategy"], mine["seed"].astype(int), strict=True)
        )
        done = pd.read_csv(out / TRAINING_CSV, usecols=["dataset", "learner", "strategy", "seed"])
        have = set(
            zip(done["dataset"], done["learner"], done["strategy"], done["seed"].astype(int), strict=True)
        )
        redo = [h in ran or key not in have for h, key in zip(mine["config_hash"], keys, strict=True)]
        todo = mine[redo]
        keep = {key for key, r in zip(keys, redo, strict=True) if not r}
        if not len(todo) and have <= keep | {k for k in have if k[2] in (NOISY, TRUE)}:
            return [f"downstream: up to date ({len(keep)} runs' rows kept in {out / 'downstream'})"]
    result = run_downstream(
        out, todo, tasks, groups, model=RETRAIN_MODELS[model], progress=progress, jobs=jobs
    )
    result.notes[:0] = notes
    if ran is not None:
        result = merge_downstream(out, result, keep)
    written = write_downstream(out, result)
    fits = int(result.training["test_accuracy"].notna().sum()) + int(
        result.candidates["test_accuracy"].notna().sum()
    )
    lines = [
        f"downstream: {len(todo)} runs done, {len(keep)} runs' rows kept; {fits} model fits read or "
        f"made for {len(groups)} datasets in {time.perf_counter() - started:.1f} s "
        f"({len(written)} files in {out / 'downstream'})"
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


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Re-runs the default suite's cells in a scratch folder and compares them with ``args.dir``."""
    import shutil
    import tempfile

    from benchmark.config import parse_seeds
    from benchmark.results import tables
    from benchmark.run import reproduce, runner
    from benchmark.run.suite import expand, learners_for, source_for
    from benchmark.threads import available_cores

    committed_runs, committed_curves = tables.load_tables(args.dir)
    seeds = parse_seeds(args.seeds)[:1] if args.sample else parse_seeds(args.seeds)
    datasets, failed_d = expand("dataset")
    strategies, failed_s = expand("strategy")
    for message in failed_d + failed_s:
        print(f"  FAILED plugin: {message}")
    grid = [
        (d, [replace(source_for(s), learner=_canonical("learner", s)) for s in learners_for(d)])
        for d in datasets
    ]
    scratch = Path(tempfile.mkdtemp(prefix="alcbench-reproduce-")) if args.scratch is None else args.scratch
    if args.scratch is not None and any(scratch.iterdir() if scratch.is_dir() else ()):
        raise ValueError(f"--scratch {scratch} is not empty: reproduce re-runs into an empty folder")
    shipped = [p for p in dict.fromkeys([args.dir / "posteriors", Path(SHIPPED_POSTERIORS)]) if p.is_dir()]
    use_cache_dirs(scratch / "posteriors", shipped)
    started = time.perf_counter()
    jobs = available_cores() if args.jobs == -1 else args.jobs
    try:
        plan = runner.prepare(
            grid,
            strategies,
            seeds,
            data_root=args.data_root,
            cache_dir=scratch / "posteriors",
            extra_cache_dirs=shipped,
            progress=not args.no_progress,
        )
        rows = runner.execute(plan, scratch, jobs=jobs, progress=not args.no_progress)
        update = tables.write_tables(scratch, rows)
        not_here = {c.hash for c in plan.configs if c.source_key in plan.unavailable}
        result = reproduce.compare(
            committed_runs, committed_curves, update.runs, update.curves, not_here=not_here
        )
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    for line in reproduce.summary(result):
        print(line)
    print(f"  in {time.perf_counter() - started:.1f} s, {len(seeds)} seeds, against {args.dir}")
    return 1 if result.differ or failed_d or failed_s else 0
