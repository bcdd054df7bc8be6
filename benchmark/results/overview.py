"""The AUC overview as small multiples: one figure per dataset, one panel per learner, each
strategy a point (mean AUC over seeds) with its 95 % CI whisker.

Every panel of a figure has the same rows, in the same order: the highlighted strategies first,
then the others by their mean rank over the dataset's learners (best on top), so that a
strategy is read across the panels on one line; an active run is an open marker just below its
static twin's. A figure is two columns wide (:data:`benchmark.results.plots.WIDE`) and at most
:data:`MAX_HEIGHT` tall; a dataset with more learners than fit spreads over several pages
(:func:`pages`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from benchmark.results.names import name_of, split_active, wrap
from benchmark.results.plots import (
    MIN_FONT,
    NARROW,
    PAPER_DPI,
    PAPER_RC,
    WIDE,
    paper_legend,
    save_paper_figure,
)
from benchmark.results.styles import Style

#: A page's height (inches).
MAX_HEIGHT = 9.0
#: Inches per strategy row (down to ``MIN_ROW`` to keep a dataset on one page), and what a
#: panel adds (its title, its x axis).
ROW, MIN_ROW, PANEL_EXTRA = 0.15, 0.12, 0.75
#: The figure's title and legend.
FRAME = 0.75
#: Characters per line of a panel's title.
PANEL_TITLE_CHARS = 40

Panel = tuple[str, pd.DataFrame]
T = TypeVar("T")


def row_order(panels: Sequence[Panel], styles: Mapping[str, Style]) -> list[str]:
    """The static strategies of ``panels``: highlighted first, then by mean rank (best first)."""
    ranks: dict[str, list[float]] = {}
    for _, rows in panels:
        for s, r in zip(rows["strategy"].astype(str), rows["rank"], strict=True):
            static, suffix = split_active(s)
            if not suffix:
                ranks.setdefault(static, []).append(float(r))
        for s in rows["strategy"].astype(str):
            ranks.setdefault(split_active(s)[0], [math.inf])

    def key(static: str) -> tuple[bool, float, str]:
        strong = any(st.highlighted for s, st in styles.items() if split_active(s)[0] == static)
        return (not strong, float(np.mean(ranks[static])), static)

    return sorted(ranks, key=key)


def _panel_height(n_rows: int, row: float = ROW) -> float:
    return row * n_rows + PANEL_EXTRA


def row_height(n_panels: int, n_rows: int) -> float:
    """Inches per row: :data:`ROW`, less (not below :data:`MIN_ROW`) when that keeps
    ``n_panels`` panels on one page, less still when one line of panels is taller than a page."""
    lines = max(1, -(-n_panels // 2))
    fit = (MAX_HEIGHT - FRAME - lines * PANEL_EXTRA) / (lines * max(n_rows, 1))
    one_line = (MAX_HEIGHT - FRAME - PANEL_EXTRA) / max(n_rows, 1)
    return min(ROW, one_line, max(MIN_ROW, fit))


def pages(panels: Sequence[T], n_rows: int) -> list[list[T]]:
    """``panels`` (of ``n_rows`` rows each) in pages of at most :data:`MAX_HEIGHT`: two panels
    a line, as many lines as fit at :func:`row_height`."""
    ncols = 2 if len(panels) > 1 else 1
    row = row_height(len(panels), n_rows)
    lines = max(1, int((MAX_HEIGHT - FRAME + 1e-9) // _panel_height(n_rows, row)))
    per_page = lines * ncols
    return [list(panels[i : i + per_page]) for i in range(0, len(panels), per_page)] or [[]]


def overview_figure(
    title: str,
    panels: Sequence[Panel],
    styles: Mapping[str, Style],
    names: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    row: float | None = None,
) -> Figure:
    """One page of small multiples: a panel (its title, its leaderboard rows) per learner, rows
    ``order`` (:func:`row_order` of ``panels`` when None)."""
    names = names or {}
    order = list(order) if order is not None else row_order(panels, styles)
    ncols = 2 if len(panels) > 1 else 1
    nlines = max(1, -(-len(panels) // ncols))
    row = row if row is not None else row_height(len(panels), len(order))
    height = min(MAX_HEIGHT, nlines * _panel_height(len(order), row) + FRAME)
    y_of = {s: len(order) - 1 - i for i, s in enumerate(order)}
    active = any(split_active(s)[1] for _, rows in panels for s in rows["strategy"].astype(str))
    with mpl.rc_context(PAPER_RC):
        width = WIDE if ncols == 2 else NARROW + 1.2
        fig = Figure(figsize=(width, height), dpi=PAPER_DPI, layout="constrained")
        axes = fig.subplots(nlines, ncols, squeeze=False, sharey=True)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, (panel_title, rows) in zip(axes.flat, panels, strict=False):
            _panel(ax, rows, styles, y_of)
            ax.set_title(wrap(panel_title, PANEL_TITLE_CHARS), fontsize=MIN_FONT + 0.5, loc="left")
        first = axes[0, 0]
        first.set_yticks(range(len(order)), [wrap(name_of(names, s), 38) for s in order][::-1])
        first.set_ylim(-0.7, len(order) - 0.3)
        for label, s in zip(first.get_yticklabels(), order[::-1], strict=True):
            st = styles.get(s)
            if st is not None and st.highlighted:
                label.set_fontweight("bold")
                label.set_color(st.color)
        for j in range(ncols):
            shown = [axes[i, j] for i in range(nlines) if axes[i, j].get_visible()]
            if shown:
                shown[-1].set_xlabel("AUC")
        fig.suptitle(wrap(title, 110), fontsize=8.0, x=0.02, ha="left")
        note = "points: mean AUC over seeds; whiskers: 95 % CI; highlighted strategies first, in bold"
        if active:
            filled = Line2D([], [], marker="o", color="0.3", linestyle="none", markersize=3.5)
            hollow = Line2D([], [], marker="o", color="0.3", mfc="white", linestyle="none", markersize=3.5)
            labels = ["static ranking", "active run (re-fitting the learner), just below"]
            paper_legend(fig, [filled, hollow], labels, note, ncol=2)
        else:
            fig.supxlabel(note, fontsize=MIN_FONT)
    return fig


def _panel(ax: Axes, rows: pd.DataFrame, styles: Mapping[str, Style], y_of: Mapping[str, int]) -> None:
    means = rows["auc_mean"].to_numpy(np.float64)
    cis = np.nan_to_num(rows["auc_ci"].to_numpy(np.float64), nan=0.0)
    for m, c, s in zip(means, cis, rows["strategy"].astype(str), strict=True):
        static, suffix = split_active(s)
        if static not in y_of or not np.isfinite(m):
            continue
        st = styles[s]
        colour = st.color
        ax.errorbar(
            m,
            y_of[static] - (0.3 if suffix else 0.0),
            xerr=c,
            fmt="o",
            color=colour,
            mfc="white" if suffix else colour,
            mec=colour,
            ecolor=colour,
            elinewidth=1.4 if st.highlighted else 0.9,
            capsize=1.5,
            markersize=4.2 if st.highlighted else 3.2,
            zorder=4 if st.highlighted else 3,
        )
    finite = np.isfinite(means)
    if finite.any():
        lo, hi = float(np.min((means - cis)[finite])), float(np.max((means + cis)[finite]))
        pad = max(0.06 * (hi - lo), 0.002)
        ax.set_xlim(lo - pad, hi + pad)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=MIN_FONT)
    ax.grid(True, axis="both", color="0.92")
    ax.set_axisbelow(True)


def plot_overview(
    path: Path,
    title: str,
    panels: Sequence[Panel],
    styles: Mapping[str, Style],
    names: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    row: float | None = None,
) -> Path:
    """:func:`overview_figure` written to ``path`` (PNG, SVG, PDF)."""
    return save_paper_figure(lambda: overview_figure(title, panels, styles, names, order, row), path)
