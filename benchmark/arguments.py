"""The ``alcbench`` command line's arguments: what each sub-command accepts, with help, and
the checks argparse applies to option values before anything runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import benchmark
from benchmark.config import DEFAULT_TARGET_ACCURACY, MAX_SEEDS
from benchmark.run.engines import BACKENDS, DEFAULT_RETRIES


def _count(minimum: int, *, also: tuple[int, ...] = (), what: str = "") -> Any:
    """An argparse type: an integer >= ``minimum`` (or one of ``also``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer{what}") from None
        if value < minimum and value not in also:
            raise argparse.ArgumentTypeError(f"{value} is not allowed{what}")
        return value

    return parse


def _percent(text: str) -> float:
    """An argparse type: a label accuracy in % (0, 100]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"{value:g} is not a label accuracy in % (0 < target <= 100)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``alcbench`` parser; ``args.command`` names the sub-command."""
    p = argparse.ArgumentParser(prog="alcbench", description="Benchmark suite for active label cleaning.")
    p.add_argument("--version", action="version", version=f"alcbench {benchmark.__version__}")
    sub = p.add_subparsers(dest="command", required=True, help="the command to run")

    ls = sub.add_parser("list", help="list datasets, strategies and learners")
    ls.add_argument("kind", nargs="?", default="all", help="datasets | strategies | learners | all")
    ls.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'cleanlab*'")

    run = sub.add_parser("run", help="run strategies on one dataset and write results to --out")
    run.add_argument(
        "--dataset", required=True, help="dataset spec, e.g. cifar10h or 'cifar10h[temperature=10]'"
    )
    run.add_argument(
        "--strategy",
        required=True,
        action="append",
        help="strategy spec (repeatable), e.g. loss or 'eq2[hinge=0.3]'",
    )
    src = run.add_mutually_exclusive_group()
    src.add_argument("--learner", default=None, help="learner spec (default: smallcnn)")
    src.add_argument(
        "--posteriors",
        type=Path,
        default=None,
        help="posteriors file (.npy, N x C or T x N x C) replacing the learner",
    )
    _common(run, default_out=None)

    suite = sub.add_parser("suite", help="run the default benchmark suite (what `make benchmark` runs)")
    suite.add_argument(
        "--datasets", nargs="+", default=None, help="dataset specs (default: all registered, full grids)"
    )
    suite.add_argument(
        "--strategies", nargs="+", default=None, help="strategy specs (default: all registered)"
    )
    suite.add_argument(
        "--learners", nargs="+", default=None, help="learner specs (default: each dataset's own)"
    )
    suite.add_argument(
        "--no-downstream",
        action="store_true",
        help="skip the downstream stage (models re-trained, evaluated and selected with the cleaned labels)",
    )
    _common(suite, default_out=Path("results"))
    suite.set_defaults(seeds="0-4")

    rep = sub.add_parser(
        "reproduce",
        help="run every cell of the default suite again from scratch, in a scratch folder, and "
        "compare each row and curve with the committed results in DIR (exit 1 if any differ)",
    )
    rep.add_argument(
        "dir", type=Path, nargs="?", default=Path("results"), help="results folder (default results)"
    )
    rep.add_argument("--seeds", default="0-4", help="seeds to re-run (default 0-4, the suite's)")
    rep.add_argument(
        "--sample",
        action="store_true",
        help="one seed only (the first of --seeds): every group, every strategy",
    )
    rep.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="folder to re-run into (default: a temporary one, removed after)",
    )
    rep.add_argument("--data-root", type=Path, default=None, help="folder with the data files")
    _jobs(rep, "the cells")
    rep.add_argument("--no-progress", action="store_true", help="no progress bars")

    down = sub.add_parser(
        "downstream",
        help="what cleaning buys: re-train on the labels at budget shares, and evaluate and select models "
        "with noisy, cleaned and true validation labels (for the runs in a results folder)",
    )
    down.add_argument("dir", type=Path, help="results folder of a finished run or suite (its cells folder)")
    down.add_argument(
        "--learner",
        default=None,
        help="the posterior group whose runs clean the labels (default: the suite's headline learner, "
        "else each dataset's first learner with ok runs)",
    )
    down.add_argument(
        "--model",
        choices=("ssl-head", "ssl-15nn"),
        default="ssl-head",
        help="the model re-trained on the cleaned labels: the paper's linear head on the frozen "
        "self-supervised encoder (default) or 15 nearest neighbours in its feature space",
    )
    down.add_argument("--data-root", type=Path, default=None, help="folder with the data files")
    _jobs(down, "the fits")
    down.add_argument("--no-progress", action="store_true", help="no progress bars")

    fit = sub.add_parser(
        "fit",
        help="fit a learner and fill the posterior cache (entries already cached or shipped "
        "in results/posteriors are used as they are, without the images)",
    )
    fit.add_argument(
        "--dataset", required=True, help="dataset spec, e.g. cifar10h or 'cifar10h[temperature=10]'"
    )
    fit.add_argument("--learner", default="smallcnn", help="learner spec (default: smallcnn)")
    fit.add_argument("--seeds", default="0", help="e.g. 0-4 or 0,2,5 (default 0)")
    _inputs(fit)
    fit.add_argument(
        "--export",
        type=Path,
        default=None,
        help="also write the posteriors of the first seed to this .npy file (T x N x C when the "
        "learner gives stochastic samples, else N x C), for `run --posteriors`",
    )

    pub = sub.add_parser(
        "publish",
        help="write a self-contained static site of a results folder (no network needed to view it)",
    )
    pub.add_argument("dir", type=Path, help="results folder holding runs.parquet and curves.parquet")
    pub.add_argument("--site", type=Path, default=None, help="site folder written (default: DIR/site)")
    _highlight(pub)

    rep = sub.add_parser("report", help="rebuild leaderboard tables and plots from a results folder")
    rep.add_argument("dir", type=Path, help="results folder holding runs.parquet and curves.parquet")
    _highlight(rep)
    _clean(sub)
    return p


def _clean(sub: Any) -> None:
    """``alcbench clean init|next|ingest|status|export|refit|release``."""
    clean = sub.add_parser(
        "clean",
        help="clean your own data: a relabelling queue in a strategy's order, a ledger of expert answers",
    )
    ops = clean.add_subparsers(dest="clean_command", required=True, help="what to do with the project")
    init = ops.add_parser("init", help="create a cleaning project in DIR")
    init.add_argument("dir", type=Path, help="project folder (created; holds the ledger)")
    init.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="CSV id,label (or id,label,annotator: several labels per sample)",
    )
    src = init.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--posteriors",
        type=Path,
        help="model posteriors: .npy (N x C or T x N x C, rows in the labels file's order) or a CSV "
        "with an id column and one column per class",
    )
    src.add_argument(
        "--learner", help="a registered learner fitted on --images and the labels (e.g. smallcnn)"
    )
    init.add_argument("--images", type=Path, help="folder of <id>.png|jpg|... images (with --learner)")
    init.add_argument(
        "--image-size", type=_count(1), default=32, help="images are resized to this (default 32)"
    )
    init.add_argument("--classes", help="class order, comma-separated (default: sorted names in the labels)")
    init.add_argument("--strategy", default="eq2[hinge=0.3]", help="strategy spec (default eq2[hinge=0.3])")
    init.add_argument(
        "--budget", type=_count(0), default=None, help="expert answers to spend (default: no limit)"
    )
    init.add_argument(
        "--seed", type=_count(0), default=0, help="breaks ties between equal scores (default 0)"
    )
    init.add_argument(
        "--refit-every",
        type=_count(1),
        default=None,
        metavar="B",
        help="re-fit the learner on the current labels after every B new answers, and re-rank",
    )
    init.add_argument("--no-progress", action="store_true", help="no progress bars")

    nxt = ops.add_parser("next", help="the next batch to annotate, in the strategy's order")
    nxt.add_argument("dir", type=Path, help="project folder")
    nxt.add_argument("--n", type=_count(1), default=50, help="samples in the batch (default 50)")
    nxt.add_argument("--format", choices=("csv", "labelstudio"), default="csv", help="batch file format")
    nxt.add_argument(
        "--out", type=Path, default=None, help="batch file written (default DIR/batches/batch-NNNN.csv|.json)"
    )
    nxt.add_argument(
        "--again",
        type=_count(1),
        default=None,
        metavar="K",
        help="write batch K's open questions again (a lost or damaged batch file) instead of a new batch",
    )
    nxt.add_argument(
        "--image-url",
        default=None,
        help="Label Studio tasks: URL of each image, with {id} and {file} filled in "
        "(default: Label Studio's local-files URL of the image file)",
    )

    ing = ops.add_parser(
        "ingest", help="add expert answers (CSV id,label,annotator[,time] or a Label Studio export)"
    )
    ing.add_argument("dir", type=Path, help="project folder")
    ing.add_argument("answers", type=Path, nargs="+", help="answer files (.csv, or .json from Label Studio)")
    ing.add_argument("--no-refit", action="store_true", help="do not re-fit now even if --refit-every is due")
    ing.add_argument("--no-progress", action="store_true", help="no progress bars")

    st = ops.add_parser("status", help="answers spent, samples settled, labels changed, mislabelled left")
    st.add_argument("dir", type=Path, help="project folder")
    st.add_argument("--json", action="store_true", help="print as JSON")
    st.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also draw labels changed and samples settled against the answers spent (PNG, SVG and PDF)",
    )

    ex = ops.add_parser("export", help="the cleaned labels as a CSV")
    ex.add_argument("dir", type=Path, help="project folder")
    ex.add_argument(
        "out", type=Path, help="CSV written: id, label, votes per class, agreement, changed, annotators"
    )

    rf = ops.add_parser("refit", help="new posteriors: re-fit the project's learner, or read --posteriors")
    rf.add_argument("dir", type=Path, help="project folder")
    rf.add_argument("--posteriors", type=Path, default=None, help="posteriors file (as init reads)")
    rf.add_argument("--no-progress", action="store_true", help="no progress bars")

    rel = ops.add_parser("release", help="close open questions; unanswered samples go back to the queue")
    rel.add_argument("dir", type=Path, help="project folder")
    rel.add_argument("--batch", type=_count(1), default=None, help="only this batch (default: all open ones)")


def _inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, help="folder with the data files")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="posterior cache folder written to (default: OUT/posteriors for suite, else the user "
        "cache); the posteriors shipped in results/posteriors are always read as well",
    )
    p.add_argument(
        "--refit", action="store_true", help="fit learners again instead of using cached posteriors"
    )


def _highlight(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--highlight",
        action="append",
        default=[],
        metavar="NAME",
        help="draw this strategy strongly in every figure (repeatable): a strategy spec, or a plugin "
        "name for all its grid points; the strategies of your own plugin folders always are",
    )


def _jobs(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--jobs",
        type=_count(1, also=(-1,), what=": --jobs takes a number of processes >= 1, or -1 for all cores"),
        default=1,
        help=f"parallel worker processes for {what} (-1: all cores)",
    )


def _common(p: argparse.ArgumentParser, default_out: Path | None) -> None:
    p.add_argument("--seeds", default="0-4", help=f"e.g. 0-4 or 0,2,5 (default 0-4; at most {MAX_SEEDS:,})")
    p.add_argument(
        "--out",
        type=Path,
        default=default_out,
        required=default_out is None,
        help="results folder: cell files, tables, leaderboard and plots"
        + (f" (default {default_out})" if default_out is not None else ""),
    )
    _inputs(p)
    _jobs(p, "cells (with a cluster backend started here: its worker processes)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where cells and learner fits run: this machine's processes (default), a Dask or a Ray cluster",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="the cluster to use with --backend dask|ray (default: start a local one of --jobs workers)",
    )
    p.add_argument(
        "--retries",
        type=_count(0, what=": --retries takes a number >= 0"),
        default=DEFAULT_RETRIES,
        help=f"times a cluster task whose worker died is run again (default {DEFAULT_RETRIES})",
    )
    p.add_argument("--resume", action="store_true", help="reuse cells already finished in --out")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="run every cell again, also those whose rows in --out have the identity (data, "
        "posteriors, code, parameters) they would have now and would otherwise be kept",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove the rows of earlier runs in --out that this command did not run (listed first; "
        "a suite over every plugin does so anyway)",
    )
    p.add_argument(
        "--target",
        type=_percent,
        default=DEFAULT_TARGET_ACCURACY,
        help="target label accuracy %% for 'annotations to target' (default 95)",
    )
    p.add_argument(
        "--active-every",
        type=_count(0, what=": --active-every takes a number of annotations >= 1, or 0 for static runs only"),
        default=0,
        metavar="B",
        help="also run each model-based strategy actively (paper's Algorithm 1): re-fit the learner "
        "on the current labels every B annotations and re-rank the rest (default 0: static only)",
    )
    _highlight(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
