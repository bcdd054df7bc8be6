"""The downstream figures: per dataset, the re-trained model's clean-set accuracy and the
candidates' ranking (Kendall's tau) against the budget spent, a band over seeds per strategy
(called by :func:`benchmark.downstream.report.render`); and the order of the strategies in them
and in the tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.downstream.selection import NOISY, TRUE
from benchmark.results.plots import save_figure, styles


def ordered_strategies(names: Any) -> list[str]:
    """References first, then Random, the oracle and the rest by name."""
    rank = {NOISY: 0, TRUE: 1, "random": 2, "oracle": 3}
    return sorted({str(n) for n in names}, key=lambda s: (rank.get(s, 4), s))


def _lines_with_bands(
    ax: Any, body: pd.DataFrame, strategies: list[str], style: dict[str, Any], column: str
) -> None:
    """Per strategy, ``column`` against the budget share (%) with its ``<column>_ci`` band."""
    for strategy in strategies:
        g = body[body["strategy"] == strategy].sort_values("fraction")
        st = style[strategy]
        x = 100.0 * g["fraction"].to_numpy(np.float64)
        y = np.nan_to_num(g[column].to_numpy(np.float64))
        ci = np.nan_to_num(g[f"{column}_ci"].to_numpy(np.float64))
        ax.plot(
            x,
            y,
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth,
            marker="o",
            markersize=3.5,
            label=strategy,
            zorder=st.zorder,
        )
        ax.fill_between(x, y - ci, y + ci, color=st.color, alpha=0.12, linewidth=0)


def plot_training(path: Path, dataset: str, t: pd.DataFrame) -> Path:
    """Two panels against the budget share: the re-trained model's clean-set accuracy (band:
    95 % CI over seeds) and its gain over the noisy-label model (band: CI of the paired gain)."""
    import matplotlib.pyplot as plt

    body = t[t["fraction"].notna()]
    strategies = ordered_strategies(body["strategy"])
    style = styles(strategies)
    fig, axes = plt.subplots(1, 2, figsize=(15.0, 5.2))
    refs = t[t["fraction"].isna()].set_index("strategy")["test_accuracy"].astype(float)
    panels = (
        ("test_accuracy", "clean-set accuracy (%)"),
        ("gain", "gain over the noisy-label model (points)"),
    )
    for ax, (column, ylabel) in zip(axes, panels, strict=True):
        _lines_with_bands(ax, body, strategies, style, column)
        for ref, color in ((NOISY, "tab:red"), (TRUE, "tab:green")):
            if ref in refs.index:
                level = float(refs[ref]) - (
                    float(refs[NOISY]) if column == "gain" and NOISY in refs.index else 0.0
                )
                ax.axhline(level, color=color, linestyle=":", linewidth=1.4, label=f"trained on the {ref}")
        ax.set_xlabel("share of the budget spent (%)")
        ax.set_ylabel(ylabel)
        ax.grid(True, color="0.9")
    fig.suptitle(
        f"{dataset}: {t['model'].iloc[0]} re-trained on the labels at each budget share "
        "(right: paired by seed; bands: 95 % CI over seeds)",
        x=0.01,
        ha="left",
        fontsize="medium",
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, fontsize="small", loc="center left", bbox_to_anchor=(0.755, 0.5), frameon=False
    )
    fig.tight_layout(rect=(0, 0, 0.75, 0.95))
    return _save(fig, path)


def plot_selection(path: Path, dataset: str, s: pd.DataFrame) -> Path:
    """Kendall's tau between the candidate models' ranking by each label version's validation
    labels and their ranking by the true labels, against the budget share (band: 95 % CI over
    seeds)."""
    import matplotlib.pyplot as plt

    body = s[s["fraction"].notna()]
    strategies = ordered_strategies(body["strategy"])
    style = styles(strategies)
    fig, ax = plt.subplots(figsize=(9.0, 5.5))
    _lines_with_bands(ax, body, strategies, style, "tau")
    refs = s[s["fraction"].isna()].set_index("strategy")
    if TRUE in refs.index:
        ax.axhline(1.0, color="tab:green", linestyle=":", linewidth=1.4, label="true labels (τ = 1)")
    ax.set_xlabel("share of the budget spent (%)")
    ax.set_ylabel("Kendall τ with the true labels' ranking")
    ax.set_title(
        f"{dataset}: ranking candidate models on cleaned validation labels (band: 95 % CI over seeds)",
        loc="left",
        fontsize="medium",
    )
    ax.grid(True, color="0.9")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    """The figure as PNG, SVG and PDF (see :func:`benchmark.results.plots.save_figure`), then closed."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
