"""Comparison figures, drawn from the aggregated frames of :mod:`benchmark.results.leaderboard`.

Every function takes DataFrames (or arrays from them) and writes one PNG atomically, with an SVG
and a PDF beside it; the same frames give byte-identical files (no software version or
timestamp in the metadata, and matplotlib's default style rather than the user's matplotlibrc,
set by the caller, with :data:`PAPER_RC` on top).

The figures are sized for a paper: a single-panel curve figure is one journal column wide
(:data:`NARROW`, 3.5 in), a two-panel one two columns (:data:`WIDE`, 7 in), no font is below
:data:`MIN_FONT` pt at that size, titles wrap between words
(:func:`benchmark.results.names.wrap`), and the legend sits below the axes, the highlighted
strategies first (:mod:`benchmark.results.styles`). Strategies, datasets and learners are
named by their display names (:mod:`benchmark.results.names`) where the caller gives them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patheffects import Normal, Stroke

from benchmark.atomic import atomic_path
from benchmark.results.leaderboard import BAND_SERIES, is_finite
from benchmark.results.names import name_of, split_active, wrap
from benchmark.results.styles import (  # noqa: F401 - re-exported: the styles' old home
    ACTIVE_MARK,
    DASHES,
    EMPHASISED,
    KNOWN_COLOURS,
    MAX_STRONG,
    PALETTE,
    Style,
    emphasis,
    faded,
    legend_order,
    strategy_style,
    strategy_styles,
    styles,
)

_DPI = 120
# No software version or timestamp in the PNG, so unchanged results give unchanged bytes.
_PNG_METADATA: dict[str, str | None] = {"Software": None}
#: A journal column and a page's text width (inches).
NARROW, WIDE = 3.5, 7.0
#: Resolution of the report's PNGs: a column-wide figure is 840 px across.
PAPER_DPI = 240
#: The smallest font (points at the figure's size).
MIN_FONT = 7.0
#: Characters per line of a title (8 pt) and of a legend entry (7 pt) across a column.
TITLE_CHARS, LEGEND_CHARS = 52, 54
PAPER_RC: Any = {
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "figure.titlesize": 8.0,
    "xtick.labelsize": MIN_FONT,
    "ytick.labelsize": MIN_FONT,
    "legend.fontsize": MIN_FONT,
    "legend.title_fontsize": MIN_FONT,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "grid.linewidth": 0.5,
    "legend.handlelength": 2.4,
    "pdf.fonttype": 42,  # TrueType in the PDF: what journals ask for
}


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
BAND_NOTE = "bands: 95 % CI over seeds"


def _thin(n: int) -> np.ndarray:
    """Indices of at most :data:`MAX_POINTS` points of a curve of ``n``, both ends kept."""
    return np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(np.int64))


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
    drawn: dict[str, Style],
) -> dict[str, Line2D]:
    """Each strategy's mean curve, with its band when its style has one; the line's label is
    the strategy's label."""
    x, _ = _x(gc)
    keep = _thin(x.size)
    lines = {}
    for s in order:
        st = drawn[s]
        mean, half = series[s]
        (line,) = ax.plot(
            x[keep],
            mean[keep],
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth,
            alpha=st.alpha,
            zorder=st.zorder,
            label=s,
        )
        if st.highlighted:  # a white edge: it stands out of whatever it crosses
            line.set_path_effects([Stroke(linewidth=st.linewidth + 1.4, foreground="white"), Normal()])
        if st.band:
            ax.fill_between(
                x[keep],
                (mean - half)[keep],
                (mean + half)[keep],
                color=st.color,
                alpha=0.18 if st.highlighted else 0.13,
                linewidth=0,
                zorder=st.zorder - 1,
            )
        lines[s] = line
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
    ax.grid(True, color="0.9")
    ax.tick_params(labelsize=MIN_FONT)
    if not in_budget:
        ax.set_xlabel("expert annotations spent")
        return
    budget = float(gc.budget)
    ax.set_xlabel("share of the budget spent (%)")
    ax.axvline(100.0, color="0.55", linestyle=":", linewidth=0.9, zorder=1)

    def to_annotations(share: Any) -> Any:
        return np.asarray(share, dtype=np.float64) * budget / 100.0

    def to_share(annotations: Any) -> Any:
        return np.asarray(annotations, dtype=np.float64) * 100.0 / budget

    top = ax.secondary_xaxis("top", functions=(to_annotations, to_share))
    top.set_xlabel("expert annotations spent", fontsize=MIN_FONT)
    top.tick_params(labelsize=MIN_FONT)


#: Written beside each PNG, for papers; no dates inside, so unchanged results give unchanged files.
VECTOR_FORMATS = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}


def save_figure(fig: Figure, path: Path, *, dpi: float | None = None) -> Path:
    """The figure as ``path`` (PNG, at ``dpi``, 120 unless given) and, beside it, as SVG and
    PDF; returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi or _DPI, format="png", metadata=_PNG_METADATA)
    with mpl.rc_context({"svg.hashsalt": "alcbench", "svg.fonttype": "path", "pdf.fonttype": 42}):
        for fmt, metadata in VECTOR_FORMATS.items():
            with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
                fig.savefig(tmp, format=fmt, metadata=metadata)
    return path


def save_paper_figure(build: Callable[[], Figure], path: Path) -> Path:
    """The figure ``build()`` draws, made and saved under :data:`PAPER_RC` at :data:`PAPER_DPI`
    with :func:`save_figure`; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with mpl.rc_context(PAPER_RC):
        return save_figure(build(), path, dpi=PAPER_DPI)


def vector_paths(png: Path) -> list[Path]:
    """The SVG and PDF files :func:`save_figure` writes beside ``png``."""
    return [png.with_suffix(f".{fmt}") for fmt in VECTOR_FORMATS]


def legend_lines(labels: Sequence[str]) -> int:
    """How many text lines the legend entries take."""
    return sum(str(label).count("\n") + 1 for label in labels)


def paper_legend(
    fig: Figure,
    handles: Sequence[Any],
    labels: Sequence[str],
    title: str,
    bold: Sequence[bool] = (),
    ncol: int = 1,
) -> None:
    """The figure's legend below its axes, small, the entries of ``bold`` in bold."""
    legend = fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=ncol,
        fontsize=MIN_FONT,
        frameon=False,
        title=title,
        title_fontsize=MIN_FONT,
        alignment="left",
        handletextpad=0.6,
        columnspacing=1.2,
        borderaxespad=0.2,
        labelspacing=0.3,
    )
    for text, strong in zip(legend.get_texts(), bold, strict=False):
        if strong:
            text.set_fontweight("bold")


def compact_active(order: Sequence[str], names: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The display names of ``order`` with an active run's suffix shortened to ``" (active)"``
    when every active run of the figure has the same one, and the note that says it
    (``"active: re-fit every 1000"``; ``""`` when nothing was shortened)."""
    shown = {s: name_of(names, s) for s in order}
    suffixes = {split_active(s)[1] for s in order} - {""}
    if len(suffixes) != 1:
        return shown, ""
    suffix = suffixes.pop()
    detail = suffix.strip().removeprefix("(").removesuffix(")").removeprefix("active, ")
    return {s: text.replace(suffix, " (active)") for s, text in shown.items()}, f"active: {detail}"


def _titled(fig: Figure, title: str, width: int) -> None:
    fig.suptitle(wrap(title, width), fontsize=8.0, x=0.02, ha="left")


def accuracy_figure(
    title: str,
    gc: GroupCurves,
    rows: pd.DataFrame,
    style_of: dict[str, Style],
    names: Mapping[str, str] | None = None,
) -> Figure:
    """Label accuracy against the share of the budget spent, one curve per strategy with its
    95 % CI band, one column wide; the legend below gives each strategy's AUC and display
    name (``names``), the highlighted ones first and in bold, then the rest best AUC first.
    With many strategies the best few and the baselines are drawn strong and the rest fade."""
    order = [str(s) for s in rows["strategy"]]
    names, active = compact_active(order, names or {})
    drawn = strategy_styles(order, base=style_of)
    legend = legend_order(order, drawn)
    same = same_curves(gc.accuracy, order)
    auc = {str(r.strategy): format_pm(r.auc_mean, r.auc_ci, 4) for r in rows.itertuples(index=False)}
    labels = [
        wrap(
            f"{auc[s]}  {name_of(names, s)}" + (f" (= {name_of(names, same[s])})" if s in same else ""),
            LEGEND_CHARS,
        )
        for s in legend
    ]
    note = f"AUC (mean ± 95 % CI), strategy; {BAND_NOTE}" + (f"; {active}" if active else "")
    if faded(drawn):
        note += f"; faded: below the best {EMPHASISED}"
    note = wrap(note, LEGEND_CHARS + 4)
    heading = wrap(title, TITLE_CHARS)
    height = 2.75 + 0.13 * heading.count("\n") + 0.125 * (legend_lines(labels) + legend_lines([note]))
    with mpl.rc_context(PAPER_RC):
        fig = Figure(figsize=(NARROW, height), dpi=PAPER_DPI, layout="constrained")
        ax = fig.add_subplot()
        lines = _curves(ax, gc, gc.accuracy, order, drawn)
        _finish_axes(ax, gc, "label accuracy (%)")
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, min(top, 100.5))  # a CI band may poke past 100 %; accuracy cannot
        _titled(fig, title, TITLE_CHARS)
        paper_legend(fig, [lines[s] for s in legend], labels, note, [drawn[s].highlighted for s in legend])
    return fig


def mislabelled_figure(
    title: str,
    gc: GroupCurves,
    rows: pd.DataFrame,
    style_of: dict[str, Style],
    names: Mapping[str, str] | None = None,
) -> Figure:
    """Mislabelled samples left against the share of the budget spent, clear and ambiguous
    samples in two panels (two columns wide), each curve with its 95 % CI band."""
    order = [str(s) for s in rows["strategy"]]
    names, active = compact_active(order, names or {})
    drawn = strategy_styles(order, base=style_of)
    legend = legend_order(order, drawn)
    labels = [wrap(name_of(names, s), 34) for s in legend]
    ncol = 3 if len(legend) > 2 else max(len(legend), 1)
    rows_needed = -(-legend_lines(labels) // ncol)
    heading = wrap(title, 2 * TITLE_CHARS)
    height = 2.7 + 0.13 * heading.count("\n") + 0.13 * (rows_needed + 1)
    with mpl.rc_context(PAPER_RC):
        fig = Figure(figsize=(WIDE, height), dpi=PAPER_DPI, layout="constrained")
        axes = fig.subplots(1, 2)
        lines: dict[str, Line2D] = {}
        for ax, (series, name) in zip(axes, ((gc.clear, "clear"), (gc.ambiguous, "ambiguous")), strict=True):
            lines = _curves(ax, gc, series, order, drawn)
            _finish_axes(ax, gc, f"{name} samples still mislabelled")
            ax.set_ylim(bottom=0)
            ax.set_title(f"{name} samples (true label entropy {'≤' if name == 'clear' else '>'} 0.3)")
        _titled(fig, title, 2 * TITLE_CHARS)
        note = f"strategy (highlighted first, then by AUC); {BAND_NOTE}" + (f"; {active}" if active else "")
        paper_legend(
            fig, [lines[s] for s in legend], labels, note, [drawn[s].highlighted for s in legend], ncol=ncol
        )
    return fig


def plot_accuracy(
    path: Path,
    title: str,
    gc: GroupCurves,
    rows: pd.DataFrame,
    style_of: dict[str, Style],
    names: Mapping[str, str] | None = None,
) -> Path:
    """:func:`accuracy_figure` written to ``path`` (PNG, SVG, PDF)."""
    return save_paper_figure(lambda: accuracy_figure(title, gc, rows, style_of, names), path)


def plot_mislabelled(
    path: Path,
    title: str,
    gc: GroupCurves,
    rows: pd.DataFrame,
    style_of: dict[str, Style],
    names: Mapping[str, str] | None = None,
) -> Path:
    """:func:`mislabelled_figure` written to ``path`` (PNG, SVG, PDF)."""
    return save_paper_figure(lambda: mislabelled_figure(title, gc, rows, style_of, names), path)
