"""The report's figures (drawn by :mod:`benchmark.results.plots`), each drawn only when stale.

Per group, ``<group>.png`` (label accuracy) and ``<group>_mislabelled.png`` (mislabelled samples
left), and ``auc_overview.png`` over every group, each with its SVG and PDF. A figure's key
(:func:`benchmark.results.incremental.digest`) is made of exactly what is handed to its drawing
function: the title, the group's curves and bands on their grid, its leaderboard rows, the
styles of its strategies (for the overview, every panel's title and rows), and
:func:`benchmark.results.incremental.code_fingerprint` of :data:`FIGURE_CODE`. A figure whose
key the manifest holds and whose three files exist is not drawn; the stale ones are drawn in
worker processes when there are cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.style
import pandas as pd
from joblib import Parallel, delayed

from benchmark.results import incremental, plots
from benchmark.results.incremental import Manifest, figure_files
from benchmark.threads import available_cores

#: The modules whose source is in every figure's key: what draws them.
FIGURE_CODE = ("benchmark.results.plots", "benchmark.report.figures")
#: The overview draws every group: by far the slowest, so it starts first.
OVERVIEW = "auc_overview"


@dataclass(frozen=True)
class Figure:
    """One figure to have in place: its PNG path, its key, and what draws it."""

    png: Path
    key: str
    kind: str
    args: tuple[Any, ...]


def _draw(kind: str, png: Path, args: tuple[Any, ...]) -> Path:
    # The default style, not the user's matplotlibrc: same input, same files.
    draw = {"accuracy": plots.plot_accuracy, "mislabelled": plots.plot_mislabelled}.get(kind)
    with matplotlib.style.context("default"):
        if draw is None:
            return plots.plot_overview(png, *args)
        return draw(png, *args)


def _used_styles(strategies: Sequence[object], styles: dict[str, plots.Style]) -> dict[str, plots.Style]:
    return {str(s): styles[str(s)] for s in strategies}


def group_figures(
    folder: Path,
    file_name: str,
    title: str,
    gc: plots.GroupCurves,
    rows: pd.DataFrame,
    styles: dict[str, plots.Style],
) -> list[Figure]:
    """A group's accuracy and mislabelled-left figures, with their keys."""
    code = incremental.code_fingerprint(*FIGURE_CODE)
    used = _used_styles(list(rows["strategy"]), styles)
    grid = (gc.grid, float(gc.budget))
    args = (title, gc, rows, used)
    return [
        Figure(
            folder / f"{file_name}.png",
            incremental.digest("accuracy", code, title, grid, gc.accuracy, rows, used),
            "accuracy",
            args,
        ),
        Figure(
            folder / f"{file_name}_mislabelled.png",
            incremental.digest("mislabelled", code, title, grid, gc.clear, gc.ambiguous, rows, used),
            "mislabelled",
            args,
        ),
    ]


def overview_figure(
    folder: Path, panels: list[tuple[str, pd.DataFrame]], styles: dict[str, plots.Style]
) -> Figure:
    """``auc_overview.png``: one panel (title, leaderboard rows) per group."""
    code = incremental.code_fingerprint(*FIGURE_CODE)
    used = _used_styles([s for _, rows in panels for s in rows["strategy"]], styles)
    key = incremental.digest("overview", code, [(t, rows) for t, rows in panels], used)
    return Figure(folder / f"{OVERVIEW}.png", key, "overview", (panels, used))


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
