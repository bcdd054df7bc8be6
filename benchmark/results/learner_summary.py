"""One row per learner: how good its posteriors are and what they buy each selector.

Pure aggregation, like :mod:`benchmark.results.leaderboard`: the runs table and the leaderboard in, a
DataFrame out. Per (dataset, learner): the learner's accuracy against the true (plurality)
labels and its fit seconds, averaged over seeds (one fit per seed; the runs record what the
fit reported), and the AUC, its 95 % half-width and the efficiency against Random of a few
selectors, static and, where the suite ran them, active.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.results.leaderboard import group_key, is_finite

#: The selectors the summary shows, by spec: the paper's Eq. 2 (the reference code's hinge),
#: plain loss, and BALD.
SELECTORS = ("eq2[hinge=0.3]", "loss", "bald")
#: How an active run's strategy label starts (see ``CellConfig.strategy_label``).
ACTIVE = " (active"


def learner_summary(
    runs: pd.DataFrame, board: pd.DataFrame, selectors: Sequence[str] = SELECTORS
) -> pd.DataFrame:
    """Per (dataset, learner): ``accuracy``, ``fit_seconds``, ``seeds``, then for each selector
    ``<selector>_auc``, ``<selector>_ci``, ``<selector>_efficiency`` and, where an active run
    exists, ``<selector>_active_auc``."""
    if not len(runs) or not len(board):
        return pd.DataFrame()
    ok = runs[runs["status"] == "ok"]
    rows = []
    for (dataset, learner), g in ok.groupby(["dataset", "learner"], sort=True):
        fits = g.drop_duplicates("seed")
        row: dict[str, object] = {
            "dataset": dataset,
            "learner": learner,
            "accuracy": _mean(fits.get("learner_accuracy")),
            "fit_seconds": _mean(fits.get("fit_seconds")),
            "seeds": int(fits["seed"].nunique()),
        }
        mine = board[(board["dataset"] == dataset) & (board["learner"] == learner)]
        by_label = {str(s): r for s, r in zip(mine["strategy"], mine.to_dict("records"), strict=True)}
        for selector in selectors:
            static = by_label.get(selector)
            row[f"{selector}_auc"] = static["auc_mean"] if static else np.nan
            row[f"{selector}_ci"] = static["auc_ci"] if static else np.nan
            row[f"{selector}_efficiency"] = static["efficiency_mean"] if static else np.nan
            active = [r for s, r in by_label.items() if s.startswith(selector + ACTIVE)]
            row[f"{selector}_active_auc"] = active[0]["auc_mean"] if active else np.nan
        rows.append(row)
    # numeric parameter order: temperature=2 before temperature=10
    rows.sort(key=lambda r: group_key((str(r["dataset"]), str(r["learner"]))))
    return pd.DataFrame(rows)


def summary_markdown(summary: pd.DataFrame, selectors: Sequence[str] = SELECTORS) -> str:
    """The summary as a Markdown table per dataset: accuracy (%), each selector's AUC ±
    half-width with its efficiency, the active AUC where there is one, and fit seconds."""
    if not len(summary):
        return ""
    parts = []
    for dataset, g in summary.groupby("dataset", sort=False):
        header = ["learner", "accuracy (%)", *(f"{s} AUC (efficiency)" for s in selectors), "fit s / seed"]
        lines = [f"### {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in g.to_dict("records"):
            cells = [str(r["learner"]), _fmt(r["accuracy"], 100, 1)]
            for s in selectors:
                text = f"{r[f'{s}_auc']:.4f}" if is_finite(r[f"{s}_auc"]) else "—"
                if is_finite(r[f"{s}_ci"]):
                    text += f" ± {r[f'{s}_ci']:.4f}"
                if is_finite(r[f"{s}_efficiency"]):
                    text += f" ({r[f'{s}_efficiency']:.2f}×)"
                if is_finite(r[f"{s}_active_auc"]):
                    text += f"; active {r[f'{s}_active_auc']:.4f}"
                cells.append(text)
            cells.append(_fmt(r["fit_seconds"], 1, 0))
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _mean(values: pd.Series | None) -> float:
    if values is None:
        return float("nan")
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    return float(np.nanmean(numbers)) if np.isfinite(numbers).any() else float("nan")


def _fmt(value: object, scale: float, digits: int) -> str:
    return f"{float(value) * scale:.{digits}f}" if is_finite(value) else "—"  # type: ignore[arg-type]
