"""The downstream figures: per dataset, the re-trained model's clean-set accuracy and the
candidates' ranking (Kendall's tau) against the budget spent, error bars over seeds per strategy
(called by :func:`benchmark.downstream.report.render`); and the order of the strategies in them
and in the tables.

A figure draws the best :data:`BEST` strategies by the final value of what it shows, Random,
the highlighted strategies (:mod:`benchmark.results.styles`) and the models trained on the
noisy and the true labels as reference lines; every strategy stays in the tables. Its title
names the dataset, the model re-trained and the learner whose runs cleaned the labels, by
their display names (:mod:`benchmark.results.names`). Sized for a paper like the report's
figures (:mod:`benchmark.results.plots`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.downstream.selection import NOISY, TRUE
from benchmark.results.leaderboard import ORACLE, RANDOM
from benchmark.results.names import name_of, wrap
from benchmark.results.plots import (
    NARROW,
    PAPER_DPI,
    PAPER_RC,
    TITLE_CHARS,
    WIDE,
    paper_legend,
    save_paper_figure,
)
from benchmark.results.styles import Style, styles

#: How many strategies besides Random and the highlighted ones a figure draws.
BEST = 3
Names = Mapping[str, Mapping[str, str]]


def ordered_strategies(names: Any) -> list[str]:
    """References first, then Random, the oracle and the rest by name."""
    rank = {NOISY: 0, TRUE: 1, "random": 2, "oracle": 3}
    return sorted({str(n) for n in names}, key=lambda s: (rank.get(s, 4), s))


def shown_strategies(body: pd.DataFrame, column: str, style: Mapping[str, Style]) -> list[str]:
    """The strategies a figure draws, in legend order: the highlighted ones, the best
    :data:`BEST` others (not Random or the oracle) by ``column`` at the largest budget share,
    then Random."""
    last = body[body["fraction"] == body["fraction"].max()].sort_values(
        [column, "strategy"], ascending=[False, True], kind="mergesort"
    )
    ranked = [str(s) for s in last["strategy"] if str(s) not in (NOISY, TRUE)]
    strong = [s for s in ranked if style[s].highlighted]
    best = [s for s in ranked if s not in strong and s.split("[")[0] not in (RANDOM, ORACLE)][:BEST]
    baseline = [s for s in ranked if s == RANDOM and s not in strong]
    return strong + best + baseline


#: A marker per drawn strategy, so that the lines differ in grey print too.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: How far apart (budget %) the strategies' error bars are set at one budget share.
DODGE = 1.8


def _lines_with_errors(
    ax: Any, body: pd.DataFrame, strategies: list[str], style: Mapping[str, Style], column: str
) -> list[Any]:
    """Per strategy, ``column`` against the budget share (%) with its ``<column>_ci`` as error
    bars, the strategies set a little apart at each share so that no bar hides another."""
    handles = []
    for i, strategy in enumerate(strategies):
        g = body[body["strategy"] == strategy].sort_values("fraction")
        st = style[strategy]
        x = 100.0 * g["fraction"].to_numpy(np.float64) + DODGE * (i - (len(strategies) - 1) / 2)
        y = np.nan_to_num(g[column].to_numpy(np.float64))
        ci = np.nan_to_num(g[f"{column}_ci"].to_numpy(np.float64))
        bars = ax.errorbar(
            x,
            y,
            yerr=ci,
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth,
            marker=MARKERS[i % len(MARKERS)],
            markersize=3.6 if st.highlighted else 3.0,
            elinewidth=0.8,
            capsize=1.8,
            label=strategy,
            zorder=st.zorder,
        )
        handles.append(bars)
    return handles


def _style(strategies: list[str], given: Mapping[str, Style] | None) -> dict[str, Style]:
    found = styles(strategies)
    return {s: (given or {}).get(s, found[s]) for s in strategies}


def _title(kind: str, dataset: str, t: pd.DataFrame, names: Names) -> str:
    data = name_of(names.get("dataset", {}), dataset)
    learner = name_of(names.get("learner", {}), t["learner"].iloc[0]) if "learner" in t else "?"
    return f"{data}: {kind}, labels cleaned by the runs of {learner}"


def training_figure(
    dataset: str, t: pd.DataFrame, style: Mapping[str, Style] | None = None, names: Names | None = None
) -> Figure:
    """Two panels against the budget share: the re-trained model's clean-set accuracy (bars:
    95 % CI over seeds) and its gain over the noisy-label model (bars: CI of the paired gain)."""
    names = names or {}
    body = t[t["fraction"].notna()]
    drawn = _style(ordered_strategies(body["strategy"]), style)
    shown = shown_strategies(body, "test_accuracy", drawn)
    refs = t[t["fraction"].isna()].set_index("strategy")["test_accuracy"].astype(float)
    model = t["model"].iloc[0]
    title = _title(f"{model} re-trained", dataset, t, names)
    with mpl.rc_context(PAPER_RC):
        fig = Figure(figsize=(WIDE, 3.6), dpi=PAPER_DPI, layout="constrained")
        axes = fig.subplots(1, 2)
        panels = (
            ("test_accuracy", "clean-set accuracy (%)"),
            ("gain", "gain over the noisy-label model (points)"),
        )
        handles: list[Any] = []
        for ax, (column, ylabel) in zip(axes, panels, strict=True):
            handles = _lines_with_errors(ax, body, shown, drawn, column)
            for ref, colour in ((NOISY, "#B2182B"), (TRUE, "#1B7837")):
                if ref in refs.index:
                    base = float(refs[NOISY]) if column == "gain" and NOISY in refs.index else 0.0
                    level = float(refs[ref]) - base
                    handles.append(ax.axhline(level, color=colour, linestyle=":", linewidth=1.2))
            ax.set_xlabel("share of the budget spent (%)")
            ax.set_ylabel(ylabel)
            ax.grid(True, color="0.9")
        fig.suptitle(wrap(title, 2 * TITLE_CHARS), fontsize=8.0, x=0.02, ha="left")
        labels = [name_of(names.get("strategy", {}), s) for s in shown]
        labels += [f"trained on the {ref}" for ref in (NOISY, TRUE) if ref in refs.index]
        others = sum(1 for x in drawn if x.split("[")[0] not in (RANDOM, ORACLE))
        note = (
            f"best {BEST} of {others} strategies by final accuracy, and Random (all in the table); "
            "bars: 95 % CI over seeds (right: of the gain, paired by seed)"
        )
        bold = [drawn[s].highlighted for s in shown]
        paper_legend(fig, handles, labels, note, bold, ncol=3)
    return fig


def selection_figure(
    dataset: str, s: pd.DataFrame, style: Mapping[str, Style] | None = None, names: Names | None = None
) -> Figure:
    """Kendall's tau between the candidate models' ranking by each label version's validation
    labels and their ranking by the true labels, against the budget share (bars: 95 % CI over
    seeds)."""
    names = names or {}
    body = s[s["fraction"].notna()]
    drawn = _style(ordered_strategies(body["strategy"]), style)
    shown = shown_strategies(body, "tau", drawn)
    refs = s[s["fraction"].isna()].set_index("strategy")
    title = _title("models ranked on validation labels", dataset, s, names)
    with mpl.rc_context(PAPER_RC):
        fig = Figure(figsize=(NARROW, 3.9), dpi=PAPER_DPI, layout="constrained")
        ax = fig.add_subplot()
        handles = _lines_with_errors(ax, body, shown, drawn, "tau")
        labels = [name_of(names.get("strategy", {}), x) for x in shown]
        if TRUE in refs.index:
            handles.append(ax.axhline(1.0, color="#1B7837", linestyle=":", linewidth=1.2))
            labels.append("true labels (τ = 1)")
        ax.set_xlabel("share of the budget spent (%)")
        ax.set_ylabel("Kendall τ with the true labels' ranking")
        ax.grid(True, color="0.9")
        fig.suptitle(wrap(title, TITLE_CHARS), fontsize=8.0, x=0.02, ha="left")
        note = f"best {BEST} by final τ, and Random; bars: 95 % CI over seeds"
        paper_legend(fig, handles, labels, note, [drawn[x].highlighted for x in shown], ncol=2)
    return fig


def plot_training(
    path: Path,
    dataset: str,
    t: pd.DataFrame,
    style: Mapping[str, Style] | None = None,
    names: Names | None = None,
) -> Path:
    """:func:`training_figure` written to ``path`` (PNG, SVG, PDF)."""
    return save_paper_figure(lambda: training_figure(dataset, t, style, names), path)


def plot_selection(
    path: Path,
    dataset: str,
    s: pd.DataFrame,
    style: Mapping[str, Style] | None = None,
    names: Names | None = None,
) -> Path:
    """:func:`selection_figure` written to ``path`` (PNG, SVG, PDF)."""
    return save_paper_figure(lambda: selection_figure(dataset, s, style, names), path)
