"""The ``alcbench`` command line: list, run, suite, fit, report."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark import registry
from benchmark.arguments import build_parser
from benchmark.commands import cache_dirs, cmd_downstream, cmd_reproduce, execute

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
    return execute(args, [(args.dataset, [source])], list(args.strategy), suite=False)


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
    return execute(args, grid, strategies, suite=True, preload_failures=failed_d + failed_s)


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np

    from benchmark.config import parse_seeds
    from benchmark.posteriors.cache import fetch

    task = registry.create("dataset", args.dataset).load(args.data_root)
    learner = registry.create("learner", args.learner)
    cache_dir, extra = cache_dirs(args, suite=False)
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
    _warn_unmatched(args.highlight, runs)
    written = write_report(args.dir, runs, curves, highlight=args.highlight)
    for path in written:
        print(path)
    print(written.summary())
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from benchmark.report.site import publish
    from benchmark.results.tables import locked

    site = args.site if args.site is not None else args.dir / "site"
    with locked(args.dir):
        written = publish(args.dir, site, highlight=args.highlight)
    print(f"{written.summary()}; open {site / 'index.html'}")
    return 0


def _warn_unmatched(highlight: Sequence[str], runs: Any) -> None:
    from benchmark.results.names import unmatched

    for name in unmatched(highlight, runs["strategy"].astype(str)):
        print(f"--highlight {name}: no strategy of the results is called so (a spec or a plugin name)")


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
    "reproduce": cmd_reproduce,
    "publish": cmd_publish,
    "clean": cmd_clean,
}


if __name__ == "__main__":
    raise SystemExit(main())
