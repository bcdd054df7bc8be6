"""The across-settings heat map: each strategy's AUC difference against Random in each setting.

Drawn from :func:`benchmark.results.summary.heatmap_frame` (rows in mean-rank order, settings in
group order) and saved like every other figure of :mod:`benchmark.results.plots`: PNG, with SVG
and PDF beside it, atomically, no dates or software versions inside, so the same frame gives
the same files (the caller sets matplotlib's default style). The
colour map is ColorBrewer's RdBu (diverging, colour-blind safe), centred at 0 and symmetric; its
range is set by the strategies other than the oracle, whose larger differences saturate.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from benchmark.results.leaderboard import ORACLE
from benchmark.results.plots import save_figure

#: A page's width (inches); the height grows with the number of strategies.
WIDTH = 7.0
_ROW = 0.27
_DPI = 120
_FONT = 6.0


def _wrap(text: str, width: int) -> str:
    """``text`` on lines of at most ``width`` characters, broken after commas and spaces only."""
    parts = text.replace(",", ", ").split(" ")
    lines = textwrap.wrap(" ".join(parts), width=width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(line.replace(", ", ",") for line in lines) or text


def _strategy_label(strategy: str) -> str:
    """The active run's suffix on a line of its own."""
    static, mark, rest = strategy.partition(" (active")
    return f"{static}\n(active{rest}" if mark else static


def _spans(datasets: list[str]) -> list[tuple[str, int, int]]:
    """(dataset, first column, last column) of each run of equal datasets."""
    spans: list[tuple[str, int, int]] = []
    for i, d in enumerate(datasets):
        if spans and spans[-1][0] == d:
            spans[-1] = (d, spans[-1][1], i)
        else:
            spans.append((d, i, i))
    return spans


def plot_summary(path: Path, cells: pd.DataFrame) -> Path:
    """The heat map of ``cells`` (``strategy, setting, delta, lo, hi, outcome``, one row per
    strategy and setting, strategies best first): colour and number (×100) the mean paired AUC
    difference against Random; grey numbers where its 95 % interval includes 0; blank where a
    strategy did not run."""
    strategies = list(dict.fromkeys(cells["strategy"].astype(str)))
    settings = list(dict.fromkeys(cells["setting"].astype(str)))
    shape = (len(strategies), len(settings))
    delta = cells["delta"].to_numpy(np.float64).reshape(shape)
    tie = (cells["outcome"].astype(str) == "tie").to_numpy().reshape(shape)
    scaled = np.array([s.split("[")[0] != ORACLE for s in strategies])
    finite = np.abs(delta[scaled]) if scaled.any() else np.abs(delta)
    finite = finite[np.isfinite(finite)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1e-3
    cmap = mpl.colormaps["RdBu"].with_extremes(bad="0.92")
    norm = Normalize(-vmax, vmax)

    fig = Figure(figsize=(WIDTH, _ROW * len(strategies) + 2.6), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(delta), cmap=cmap, norm=norm, aspect="auto", interpolation="none")
    for (i, j), v in np.ndenumerate(delta):
        if not np.isfinite(v):
            continue
        dark = abs(norm(v) - 0.5) > 0.32
        colour = "0.45" if tie[i, j] else ("white" if dark else "black")
        ax.text(j, i, f"{100 * v:+.1f}", ha="center", va="center", fontsize=_FONT - 1, color=colour)

    datasets = [s.split(" / ", 1)[0] for s in settings]
    learners = [s.split(" / ", 1)[1] if " / " in s else s for s in settings]
    ax.set_xticks(range(len(settings)), [_wrap(le, 22) for le in learners], rotation=90, fontsize=_FONT)
    ax.set_yticks(range(len(strategies)), [_strategy_label(s) for s in strategies], fontsize=_FONT)
    ax.tick_params(length=0)
    spans = _spans(datasets)
    for _, first, _ in spans[1:]:
        ax.axvline(first - 0.5, color="white", linewidth=2.0)
    top = ax.secondary_xaxis("top")
    top.set_xticks([(a + b) / 2 for _, a, b in spans], [d for d, _, _ in spans], fontsize=_FONT)
    top.tick_params(length=0)
    for label, (d, a, b) in zip(top.get_xticklabels(), spans, strict=True):
        # a label wider than its columns (about 0.26 in each) stands upright
        if len(d) * _FONT * 0.55 / 72 > (b - a + 1) * (WIDTH - 2.6) / max(len(settings), 1):
            label.set_rotation(90)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    top.spines["top"].set_visible(False)
    bar = fig.colorbar(image, ax=ax, shrink=min(1.0, 6.0 / max(len(strategies), 1)), aspect=25, pad=0.01)
    bar.set_label("AUC − AUC of Random", fontsize=_FONT)
    bar.ax.tick_params(labelsize=_FONT - 0.5)
    if np.nanmax(np.abs(delta), initial=0.0) > vmax:
        bar.ax.set_title("oracle\nsaturates", fontsize=_FONT - 1, loc="left")
    ax.set_title(
        "AUC difference against Random: mean of the paired differences over seeds\n"
        "numbers ×100; grey: the 95 % paired t interval includes 0; blank: not run",
        fontsize=_FONT + 1,
        loc="left",
    )
    return save_figure(fig, path, dpi=_DPI)
