"""The report's figures (drawn by :mod:`benchmark.results.plots` and
:mod:`benchmark.results.overview`), each drawn only when stale.

Per group, ``<group>.png`` (label accuracy, one column wide) and ``<group>_mislabelled.png``
(mislabelled samples left, two columns wide); per dataset, ``auc_overview_<dataset>.png`` (small
multiples, a panel per learner; ``_p2``, ``_p3``... when its learners fill more than a page),
and ``auc_overview.png``, the first dataset's first page, for the links that name it; each with
its SVG and PDF. A figure's key (:func:`benchmark.results.incremental.digest`) is made of
exactly what is handed to its drawing function: the title, the group's curves and bands on
their grid, its leaderboard rows, the styles of its strategies (which say which are
highlighted), the display names it shows (for an overview, every panel's title and rows), and
:func:`benchmark.results.incremental.code_fingerprint` of :data:`FIGURE_CODE`. A figure whose
key the manifest holds and whose three files exist is not drawn; the stale ones are drawn in
worker processes when there are cores.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import matplotlib.style
import pandas as pd
from joblib import Parallel, delayed

from benchmark.results import incremental, overview, plots
from benchmark.results.incremental import Manifest, figure_files
from benchmark.results.names import name_of, split_active
from benchmark.threads import available_cores

#: The modules whose source is in every figure's key: what draws them.
FIGURE_CODE = (
    "benchmark.results.plots",
    "benchmark.results.styles",
    "benchmark.results.names",
    "benchmark.results.overview",
    "benchmark.report.figures",
)
#: The file every earlier report linked: now the first dataset's overview.
OVERVIEW = "auc_overview"


@dataclass(frozen=True)
class Figure:
    """One figure to have in place: its PNG path, its key, and what draws it."""

    png: Path
    key: str
    kind: str
    args: tuple[Any, ...]


class Group(Protocol):
    """What the figures need of a report section (:class:`benchmark.report.pages.Section`)."""

    @property
    def dataset(self) -> str: ...
    @property
    def learner(self) -> str: ...
    @property
    def file_name(self) -> str: ...
    @property
    def display_title(self) -> str: ...


def _draw(kind: str, png: Path, args: tuple[Any, ...]) -> Path:
    # The default style, not the user's matplotlibrc: same input, same files.
    draw = {"accuracy": plots.plot_accuracy, "mislabelled": plots.plot_mislabelled}.get(kind)
    with matplotlib.style.context("default"):
        if draw is None:
            return overview.plot_overview(png, *args)
        return draw(png, *args)


def _used(strategies: Sequence[object], table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(s): table[str(s)] for s in strategies if str(s) in table}


def group_figures(
    folder: Path,
    file_name: str,
    title: str,
    gc: plots.GroupCurves,
    rows: pd.DataFrame,
    styles: dict[str, plots.Style],
    names: Mapping[str, str] | None = None,
) -> list[Figure]:
    """A group's accuracy and mislabelled-left figures, with their keys (``names``: the
    strategies' display names)."""
    code = incremental.code_fingerprint(*FIGURE_CODE)
    strategies = list(rows["strategy"])
    used = _used(strategies, styles)
    shown = {str(s): name_of(names or {}, s) for s in strategies}
    grid = (gc.grid, float(gc.budget))
    args = (title, gc, rows, used, shown)
    return [
        Figure(
            folder / f"{file_name}.png",
            incremental.digest("accuracy", code, title, grid, gc.accuracy, rows, used, shown),
            "accuracy",
            args,
        ),
        Figure(
            folder / f"{file_name}_mislabelled.png",
            incremental.digest("mislabelled", code, title, grid, gc.clear, gc.ambiguous, rows, used, shown),
            "mislabelled",
            args,
        ),
    ]


def _rows(board: pd.DataFrame, dataset: str, learner: str) -> pd.DataFrame:
    return board[(board["dataset"] == dataset) & (board["learner"] == learner)]


def overview_pages(groups: Sequence[Group], board: pd.DataFrame) -> list[tuple[str, str, list[Group]]]:
    """(file stem, dataset, the groups on the page) of every page of the AUC overview: per
    dataset with results, its groups in order, as many pages as :func:`overview.pages` needs."""
    shown = [g for g in groups if len(_rows(board, g.dataset, g.learner))]
    datasets = list(dict.fromkeys(g.dataset for g in shown))
    stems = {d: plots.safe_name(d) for d in datasets}
    for d in datasets:
        if list(stems.values()).count(stems[d]) > 1:
            stems[d] += "_" + hashlib.sha1(d.encode()).hexdigest()[:8]
    out = []
    for d in datasets:
        mine = [g for g in shown if g.dataset == d]
        labels = pd.concat([_rows(board, g.dataset, g.learner)["strategy"] for g in mine]).astype(str)
        n_rows = len({split_active(s)[0] for s in labels})
        for k, page in enumerate(overview.pages(mine, n_rows)):
            out.append((f"{OVERVIEW}_{stems[d]}" + (f"_p{k + 1}" if k else ""), d, page))
    return out


def overview_figures(
    folder: Path,
    groups: Sequence[Group],
    board: pd.DataFrame,
    styles: dict[str, plots.Style],
    names: Mapping[str, Mapping[str, str]],
) -> list[Figure]:
    """Every page of the AUC overview (:func:`overview_pages`), and ``auc_overview.png`` as
    the first one; a panel per learner titled with its display name."""
    code = incremental.code_fingerprint(*FIGURE_CODE)
    out: list[Figure] = []
    pages = overview_pages(groups, board)
    count = {d: sum(1 for _, other, _ in pages if other == d) for _, d, _ in pages}
    seen: dict[str, int] = {}
    for stem, dataset, page in pages:
        seen[dataset] = seen.get(dataset, 0) + 1
        mine = [g for g in groups if g.dataset == dataset and len(_rows(board, g.dataset, g.learner))]
        learners = names.get("learner", {})
        every = [(name_of(learners, g.learner), _rows(board, g.dataset, g.learner)) for g in mine]
        strategies = [s for _, rows in every for s in rows["strategy"]]
        used = _used(strategies, styles)
        order = overview.row_order(every, used)
        shown = {str(s): name_of(names.get("strategy", {}), s) for s in order}
        panels = [(name_of(learners, g.learner), _rows(board, g.dataset, g.learner)) for g in page]
        title = f"AUC per learner: {name_of(names.get('dataset', {}), dataset)}"
        if count[dataset] > 1:
            title += f" ({seen[dataset]} of {count[dataset]})"
        row = overview.row_height(len(every), len(order))  # every page of a dataset alike
        args = (title, panels, used, shown, order, row)
        key = incremental.digest(
            "overview", code, title, [(t, r) for t, r in panels], used, shown, order, row
        )
        out.append(Figure(folder / f"{stem}.png", key, "overview", args))
    if out:
        first = out[0]
        out.insert(0, Figure(folder / f"{OVERVIEW}.png", first.key, first.kind, first.args))
    return out


def report_figures(
    folder: Path,
    groups: Sequence[Group],
    board: pd.DataFrame,
    bands: pd.DataFrame,
    styles: dict[str, plots.Style],
    names: Mapping[str, Mapping[str, str]],
) -> list[Figure]:
    """Every figure of a report: each group's two (titled with its display title), then the
    overview's pages."""
    figures: list[Figure] = []
    for g in groups:
        rows = _rows(board, g.dataset, g.learner)
        if not len(rows):
            continue
        budget = rows["budget"].iloc[0]
        gc = plots.group_curves(
            bands[(bands["dataset"] == g.dataset) & (bands["learner"] == g.learner)],
            float(budget) if pd.notna(budget) else math.nan,
        )
        strategy_names = names.get("strategy", {})
        figures += group_figures(folder, g.file_name, g.display_title, gc, rows, styles, strategy_names)
    return figures + overview_figures(folder, groups, board, styles, names)


def draw_stale(figures: Sequence[Figure], manifest: Manifest) -> list[Path]:
    """Draws the figures the manifest does not hold as fresh and records every key; returns
    the files drawn (PNG, SVG, PDF), in the order of ``figures``."""
    stale = [f for f in figures if not manifest.fresh(figure_files(f.png), f.key)]
    manifest.forget(p for f in stale for p in figure_files(f.png))
    order = sorted(stale, key=lambda f: f.kind != "overview")
    jobs = min(len(order), available_cores(), 4) or 1
    if jobs > 1:
        Parallel(n_jobs=jobs)(delayed(_draw)(f.kind, f.png, f.args) for f in order)
    else:
        for f in order:
            _draw(f.kind, f.png, f.args)
    for f in figures:
        manifest.record(figure_files(f.png), f.key)
    return [p for f in stale for p in figure_files(f.png)]
