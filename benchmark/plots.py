"""Comparison figures, drawn from the aggregated frames of :mod:`benchmark.leaderboard`.

Every function takes DataFrames (or arrays from them) and writes one PNG atomically; the same
frames give byte-identical files (no software version or timestamp in the PNG metadata, and
matplotlib's default style rather than the user's matplotlibrc, set by the caller).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import ColorType

from benchmark.atomic import atomic_path
from benchmark.leaderboard import BAND_SERIES, ORACLE, RANDOM, is_finite

_DPI = 120
# No software version or timestamp in the PNG, so unchanged results give unchanged bytes.
_PNG_METADATA: dict[str, str | None] = {"Software": None}
_CURVE_SIZE = (12.0, 6.0)


def format_pm(mean: object, ci: object, digits: int) -> str:
    """``"0.9138 ± 0.0027"``; "—" for a missing mean, no ``±`` part for a missing half-width."""
    if not is_finite(mean):
        return "—"
    text = f"{float(mean):.{digits}f}"  # type: ignore[arg-type]
    if is_finite(ci):
        text += f" ± {float(ci):.{digits}f}"  # type: ignore[arg-type]
    return text


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a markdown table (``|`` in cells escaped; a ``rank`` column right-aligned)."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |"]
    lines.append("|" + "|".join("---:" if c == "rank" else "---" for c in df.columns) + "|")
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Style:
    color: ColorType
    linestyle: str
    linewidth: float
    zorder: float


def _base_name(spec: str) -> str:
    return spec.split("[", 1)[0].strip()


def styles(strategies: Iterable[str]) -> dict[str, Style]:
    """One style per strategy spec, the same in every figure.

    Random is black dashed and the oracle grey dash-dotted (drawn on top, so the baselines
    stay recognisable); the others take tab20 colours by name, the dark shades first, leaving
    out tab20's greys, which would pass for the baselines.
    """
    cmap = mpl.colormaps["tab20"]
    order = [i for i in [*range(0, 20, 2), *range(1, 20, 2)] if i not in (14, 15)]
    styles: dict[str, Style] = {}
    others = sorted(s for s in set(strategies) if _base_name(s) not in (RANDOM, ORACLE))
    for i, s in enumerate(others):
        styles[s] = Style(cmap(order[i % len(order)]), "-", 1.5, 2.0)
    for s in sorted(set(strategies) - set(others)):
        if _base_name(s) == RANDOM:
            styles[s] = Style("black", "--", 1.8, 3.0)
        else:
            styles[s] = Style("0.45", "-.", 1.8, 3.0)
    return styles


@dataclass(frozen=True)
class GroupCurves:
    """One group's mean curves and bands on its grid (from :func:`group_curves`)."""

    grid: np.ndarray
    budget: float
    # strategy -> (mean, half-width) on the grid
    accuracy: dict[str, tuple[np.ndarray, np.ndarray]]
    clear: dict[str, tuple[np.ndarray, np.ndarray]]
    ambiguous: dict[str, tuple[np.ndarray, np.ndarray]]


def group_curves(bands: pd.DataFrame, budget: float) -> GroupCurves:
    """The :func:`benchmark.leaderboard.curve_bands` rows of one group, by strategy."""
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {s: {} for s in BAND_SERIES}
    grid = np.zeros(1)
    for strategy, g in bands.groupby("strategy", sort=True):
        grid = g["annotations"].to_numpy(np.float64)
        for s in BAND_SERIES:
            mean, half = g[f"{s}_mean"].to_numpy(np.float64), g[f"{s}_ci"].to_numpy(np.float64)
            series[s][str(strategy)] = (mean, half)
    return GroupCurves(grid, budget, series["accuracy"], series["clear"], series["ambiguous"])


def _budget_line(ax: Axes, budget: float) -> None:
    if is_finite(budget):
        ax.axvline(budget, color="0.55", linestyle=":", linewidth=1.2, zorder=1)
        ax.annotate(
            "budget",
            xy=(budget, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3, -3),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize="small",
            color="0.4",
        )


def _finish_axes(fig: Figure, ax: Axes, gc: GroupCurves, title: str, ylabel: str) -> None:
    # A little room past the last point, so the budget line does not sit on the frame.
    ax.set_xlim(0, gc.grid[-1] * 1.015)
    ax.set_xlabel("expert annotations spent")
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_title(title, fontsize="medium", loc="left")


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png", metadata=_PNG_METADATA)
    return path


def plot_accuracy(
    path: Path, title: str, gc: GroupCurves, rows: pd.DataFrame, styles: dict[str, Style]
) -> Path:
    fig = Figure(figsize=_CURVE_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    handles, labels = [], []
    for r in rows.itertuples(index=False):  # best AUC first, so the legend reads as the ranking
        s = str(r.strategy)
        st = styles[s]
        mean, half = gc.accuracy[s]
        (line,) = ax.plot(
            gc.grid,
            mean,
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth,
            zorder=st.zorder,
        )
        ax.fill_between(
            gc.grid, mean - half, mean + half, color=st.color, alpha=0.15, linewidth=0, zorder=st.zorder - 1
        )
        handles.append(line)
        labels.append(f"{format_pm(r.auc_mean, r.auc_ci, 4)}   {s}")
    _budget_line(ax, gc.budget)
    _finish_axes(fig, ax, gc, title, "label accuracy (%)")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, min(top, 100.5))  # a CI band may poke past 100 %; accuracy cannot
    _legend(fig, handles, labels, "AUC (mean ± 95 % CI)   strategy")
    return _save(fig, path)


def plot_mislabelled(
    path: Path, title: str, gc: GroupCurves, rows: pd.DataFrame, styles: dict[str, Style]
) -> Path:
    fig = Figure(figsize=_CURVE_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    handles: list[Line2D] = []
    labels: list[str] = []
    for r in rows.itertuples(index=False):
        s = str(r.strategy)
        st = styles[s]
        for series, ls in ((gc.clear, "-"), (gc.ambiguous, "--")):
            ax.plot(
                gc.grid, series[s][0], color=st.color, linestyle=ls, linewidth=st.linewidth, zorder=st.zorder
            )
        handles.append(Line2D([], [], color=st.color, linewidth=2.5))
        labels.append(s)
    handles += [
        Line2D([], [], color="0.3", linestyle="-", linewidth=1.5),
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.5),
    ]
    labels += ["clear (solid)", "ambiguous (dashed)"]
    _budget_line(ax, gc.budget)
    _finish_axes(fig, ax, gc, title, "mislabelled samples left (mean over seeds)")
    ax.set_ylim(bottom=0)
    _legend(fig, handles, labels, "strategy (by AUC)")
    return _save(fig, path)


def _legend(fig: Figure, handles: list[Line2D], labels: list[str], title: str) -> None:
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize="small",
        frameon=False,
        title=title,
        title_fontsize="small",
        alignment="left",
    )


def plot_overview(path: Path, panels: list[tuple[str, pd.DataFrame]], styles: dict[str, Style]) -> Path:
    """Horizontal bars of AUC mean ± 95 % CI, one panel per group (its title and its
    :func:`benchmark.leaderboard.leaderboard` rows), best strategy on top."""
    heights = [0.3 * len(rows) + 0.9 for _, rows in panels]
    fig = Figure(figsize=(9.0, sum(heights) + 0.4), dpi=_DPI, layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, rows) in zip(axes, panels, strict=True):
        means = rows["auc_mean"].to_numpy(np.float64)
        cis = np.nan_to_num(rows["auc_ci"].to_numpy(np.float64), nan=0.0)
        y = np.arange(len(rows))[::-1]
        colors = [styles[str(s)].color for s in rows["strategy"]]
        lo, hi = float(np.min(means - cis)), float(np.max(means + cis))
        pad = max(0.08 * (hi - lo), 0.002)
        left = max(lo - 3 * pad, 0.0)
        ax.barh(
            y,
            means - left,
            left=left,
            xerr=cis,
            color=colors,
            height=0.7,
            error_kw={"elinewidth": 1.0, "capsize": 2.5, "ecolor": "0.2"},
        )
        for yi, m, c in zip(y, means, cis, strict=True):
            ax.text(m + c + 0.4 * pad, yi, f"{m:.4f}", va="center", fontsize="x-small")
        ax.set_yticks(y, [str(s) for s in rows["strategy"]], fontsize="small")
        ax.set_xlim(left, hi + 2.5 * pad)
        ax.set_title(title, fontsize="small", loc="left")
        ax.grid(True, axis="x", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[-1].set_xlabel("AUC (mean ± 95 % CI over seeds; axis does not start at 0)")
    return _save(fig, path)
