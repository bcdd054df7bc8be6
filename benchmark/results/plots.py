"""Comparison figures, drawn from the aggregated frames of :mod:`benchmark.results.leaderboard`.

Every function takes DataFrames (or arrays from them) and writes one PNG atomically; the same
frames give byte-identical files (no software version or timestamp in the PNG metadata, and
matplotlib's default style rather than the user's matplotlibrc, set by the caller).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import ColorType

from benchmark.atomic import atomic_path
from benchmark.results.leaderboard import BAND_SERIES, ORACLE, RANDOM, is_finite

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


def safe_name(text: str) -> str:
    """A file-system-safe version of a group or spec name (letters, digits, ``. _ -``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


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
    linestyle: str | tuple[int, tuple[int, ...]]
    linewidth: float
    zorder: float


def _base_name(spec: str) -> str:
    return spec.split("[", 1)[0].strip()


#: Colours of the built-in strategies, by spec: a strategy looks the same in every figure and
#: every run, whatever else is plotted beside it.
KNOWN_COLOURS: dict[str, str] = {
    "loss": "#1f77b4",
    "eq2[hinge=0.3]": "#d62728",
    "eq2[hinge=None]": "#ff7f0e",
    "entropy": "#9467bd",
    "bald": "#2ca02c",
    "cleanlab[method=self_confidence]": "#8c564b",
    "cleanlab[method=normalized_margin]": "#e377c2",
    "cleanlab[method=confidence_weighted_entropy]": "#17becf",
}
#: Colours of other strategies (a user's), picked by a hash of the spec alone: tab20's light
#: shades and Dark2, without greys and without the colours above.
PALETTE: tuple[str, ...] = (
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
    "#9edae5", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
)  # fmt: skip
#: Line styles of other strategies, by a second hash, so two that share a colour still differ.
DASHES: tuple[str | tuple[int, tuple[int, ...]], ...] = ("-", (0, (6, 2)), (0, (2, 1)), (0, (6, 2, 1, 2)))
#: Suffix of the active twin of a strategy (see :class:`benchmark.config.CellConfig`).
ACTIVE_MARK = " (active"


def strategy_style(spec: str) -> Style:
    """The style of one strategy, a function of its spec alone.

    Random is black dashed and the oracle grey dash-dotted, drawn on top; a built-in strategy
    has its :data:`KNOWN_COLOURS` entry, any other a :data:`PALETTE` colour and a
    :data:`DASHES` style chosen by a hash of its spec; an active run is drawn dotted in its
    static twin's colour.
    """
    static, _, _ = spec.partition(ACTIVE_MARK)
    static = static.strip()
    active = static != spec
    base = _base_name(static)
    if base == RANDOM:
        return Style("black", ":" if active else "--", 1.8, 3.0)
    if base == ORACLE:
        return Style("0.45", "-.", 1.8, 3.0)
    digest = hashlib.sha256(static.encode()).digest()
    colour = KNOWN_COLOURS.get(static) or PALETTE[digest[0] % len(PALETTE)]
    dash = DASHES[0] if static in KNOWN_COLOURS else DASHES[digest[1] % len(DASHES)]
    return Style(colour, ":" if active else dash, 1.5, 2.0)


def styles(strategies: Iterable[str]) -> dict[str, Style]:
    """:func:`strategy_style` of each strategy spec."""
    return {s: strategy_style(s) for s in sorted(set(strategies))}


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
    """The :func:`benchmark.results.leaderboard.curve_bands` rows of one group, by strategy."""
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {s: {} for s in BAND_SERIES}
    grid = np.zeros(1)
    for strategy, g in bands.groupby("strategy", sort=True):
        grid = g["annotations"].to_numpy(np.float64)
        for s in BAND_SERIES:
            mean, half = g[f"{s}_mean"].to_numpy(np.float64), g[f"{s}_ci"].to_numpy(np.float64)
            series[s][str(strategy)] = (mean, half)
    return GroupCurves(grid, budget, series["accuracy"], series["clear"], series["ambiguous"])


#: Most points a curve is drawn with (the grid has one per annotation): enough for the eye, and
#: vector files stay small.
MAX_POINTS = 400
#: Above this many strategies besides the baselines, only the :data:`EMPHASISED` best and the
#: baselines are drawn strong; the rest fade.
MAX_STRONG = 6
EMPHASISED = 3
BAND_NOTE = "bands: 95 % CI over seeds"


def _thin(n: int) -> np.ndarray:
    """Indices of at most :data:`MAX_POINTS` points of a curve of ``n``, both ends kept."""
    return np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(np.int64))


def emphasis(strategies: list[str]) -> set[str]:
    """The strategies drawn strong: every one when few, else the baselines and the first
    :data:`EMPHASISED` others (``strategies`` come best first)."""
    others = [s for s in strategies if _base_name(s) not in (RANDOM, ORACLE)]
    if len(others) <= MAX_STRONG:
        return set(strategies)
    return {s for s in strategies if _base_name(s) in (RANDOM, ORACLE)} | set(others[:EMPHASISED])


def _x(gc: GroupCurves) -> tuple[np.ndarray, bool]:
    """The x values of the grid: % of the budget when it is known, else annotations."""
    if is_finite(gc.budget) and gc.budget > 0:
        return 100.0 * gc.grid / gc.budget, True
    return gc.grid, False


def _curves(
    ax: Axes,
    gc: GroupCurves,
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    order: list[str],
    styles: dict[str, Style],
    strong: set[str],
) -> list[Line2D]:
    """Each strategy's mean curve with its band (strong ones) or faded without one."""
    x, _ = _x(gc)
    keep = _thin(x.size)
    lines = []
    for s in order:
        st = styles[s]
        mean, half = series[s]
        bold = s in strong
        (line,) = ax.plot(
            x[keep],
            mean[keep],
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth if bold else 1.0,
            alpha=1.0 if bold else 0.35,
            zorder=st.zorder if bold else 1.5,
        )
        if bold:
            ax.fill_between(
                x[keep],
                (mean - half)[keep],
                (mean + half)[keep],
                color=st.color,
                alpha=0.15,
                linewidth=0,
                zorder=st.zorder - 1,
            )
        lines.append(line)
    return lines


def same_curves(series: dict[str, tuple[np.ndarray, np.ndarray]], order: list[str]) -> dict[str, str]:
    """Strategy -> the earlier strategy of ``order`` whose mean curve it repeats exactly (two
    strategies that rank the samples alike draw one line; the legend says so)."""
    out: dict[str, str] = {}
    for i, s in enumerate(order):
        for earlier in order[:i]:
            if earlier not in out and np.array_equal(series[s][0], series[earlier][0]):
                out[s] = earlier
                break
    return out


def _finish_axes(ax: Axes, gc: GroupCurves, ylabel: str) -> None:
    x, in_budget = _x(gc)
    ax.set_xlim(0, x[-1] * 1.015)  # a little room, so the budget line does not sit on the frame
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", linewidth=0.8)
    if not in_budget:
        ax.set_xlabel("expert annotations spent")
        return
    budget = float(gc.budget)
    ax.set_xlabel("share of the budget spent (%)")
    ax.axvline(100.0, color="0.55", linestyle=":", linewidth=1.2, zorder=1)

    def to_annotations(share: Any) -> Any:
        return np.asarray(share, dtype=np.float64) * budget / 100.0

    def to_share(annotations: Any) -> Any:
        return np.asarray(annotations, dtype=np.float64) * 100.0 / budget

    top = ax.secondary_xaxis("top", functions=(to_annotations, to_share))
    top.set_xlabel("expert annotations spent", fontsize="small")
    top.tick_params(labelsize="small")


#: Written beside each PNG, for papers; no dates inside, so unchanged results give unchanged files.
VECTOR_FORMATS = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}


def save_figure(fig: Figure, path: Path) -> Path:
    """The figure as ``path`` (PNG) and, beside it, as SVG and PDF; returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png", metadata=_PNG_METADATA)
    with mpl.rc_context({"svg.hashsalt": "alcbench", "svg.fonttype": "path"}):
        for fmt, metadata in VECTOR_FORMATS.items():
            with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
                fig.savefig(tmp, format=fmt, metadata=metadata)
    return path


def vector_paths(png: Path) -> list[Path]:
    """The SVG and PDF files :func:`_save` writes beside ``png``."""
    return [png.with_suffix(f".{fmt}") for fmt in VECTOR_FORMATS]


def plot_accuracy(
    path: Path, title: str, gc: GroupCurves, rows: pd.DataFrame, styles: dict[str, Style]
) -> Path:
    """Label accuracy against the share of the budget spent, one curve per strategy (best AUC
    first in the legend) with its 95 % CI band; with many strategies the best few and the
    baselines are drawn strong and the rest fade."""
    fig = Figure(figsize=_CURVE_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    order = [str(s) for s in rows["strategy"]]
    strong = emphasis(order)
    handles = _curves(ax, gc, gc.accuracy, order, styles, strong)
    same = same_curves(gc.accuracy, order)
    labels = [
        f"{format_pm(r.auc_mean, r.auc_ci, 4)}   {r.strategy}"
        + (f"  (= {same[str(r.strategy)]})" if str(r.strategy) in same else "")
        for r in rows.itertuples(index=False)
    ]
    _finish_axes(ax, gc, "label accuracy (%)")
    fig.suptitle(title.replace(" — ", "\n", 1), fontsize="medium", x=0.01, ha="left")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, min(top, 100.5))  # a CI band may poke past 100 %; accuracy cannot
    faded = "" if len(strong) == len(order) else f"; faded: below the best {EMPHASISED}"
    _legend(fig, handles, labels, f"AUC (mean ± 95 % CI)   strategy\n({BAND_NOTE}{faded})")
    return save_figure(fig, path)


def plot_mislabelled(
    path: Path, title: str, gc: GroupCurves, rows: pd.DataFrame, styles: dict[str, Style]
) -> Path:
    """Mislabelled samples left against the share of the budget spent, clear and ambiguous
    samples in two panels, each curve with its 95 % CI band."""
    fig = Figure(figsize=(_CURVE_SIZE[0], 5.0), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    order = [str(s) for s in rows["strategy"]]
    strong = emphasis(order)
    handles: list[Line2D] = []
    for ax, (series, name) in zip(axes, ((gc.clear, "clear"), (gc.ambiguous, "ambiguous")), strict=True):
        handles = _curves(ax, gc, series, order, styles, strong)
        _finish_axes(ax, gc, f"{name} samples still mislabelled")
        ax.set_ylim(bottom=0)
        ax.set_title(
            f"{name} samples (true label entropy {'≤' if name == 'clear' else '>'} 0.3)", fontsize="small"
        )
    fig.suptitle(title.replace(" — ", "\n", 1), fontsize="medium", x=0.01, ha="left")
    _legend(fig, handles, order, f"strategy (by AUC)\n({BAND_NOTE})")
    return save_figure(fig, path)


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
    """AUC of every strategy as a point with its 95 % CI whisker, one panel per group (its
    title and its :func:`benchmark.results.leaderboard.leaderboard` rows), best strategy on top."""
    heights = [0.3 * len(rows) + 0.9 for _, rows in panels]
    fig = Figure(figsize=(9.0, sum(heights) + 0.4), dpi=_DPI, layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, rows) in zip(axes, panels, strict=True):
        means = rows["auc_mean"].to_numpy(np.float64)
        cis = np.nan_to_num(rows["auc_ci"].to_numpy(np.float64), nan=0.0)
        y = np.arange(len(rows))[::-1]
        for yi, m, c, s in zip(y, means, cis, rows["strategy"], strict=True):
            colour = styles[str(s)].color
            ax.errorbar(
                m, yi, xerr=c, fmt="o", color=colour, ecolor=colour, elinewidth=1.4, capsize=3, markersize=5
            )
            ax.text(m + c, yi + 0.22, f" {m:.4f}", va="bottom", fontsize="x-small", color="0.25")
        lo, hi = float(np.min(means - cis)), float(np.max(means + cis))
        pad = max(0.06 * (hi - lo), 0.002)
        ax.set_yticks(y, [str(s) for s in rows["strategy"]], fontsize="small")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlim(lo - pad, hi + 3 * pad)
        ax.set_title(title.replace(" — ", "\n", 1), fontsize="small", loc="left")
        ax.grid(True, axis="x", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[-1].set_xlabel("AUC (points: mean over seeds; whiskers: 95 % CI)")
    return save_figure(fig, path)
