"""The per-learner summary (benchmark.results.learner_summary) on hand-made tables."""

from __future__ import annotations

import math

import pandas as pd

from benchmark.results.learner_summary import learner_summary, summary_markdown


def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.DataFrame(
        {
            "dataset": ["d"] * 6,
            "learner": ["a", "a", "a", "a", "b", "b"],
            "strategy": ["loss", "bald", "loss", "bald", "loss", "loss"],
            "seed": [0, 0, 1, 1, 0, 1],
            "status": ["ok"] * 5 + ["failed"],
            "learner_accuracy": [0.6, 0.6, 0.7, 0.7, 0.5, None],
            "fit_seconds": [10.0, 10.0, 20.0, 20.0, 5.0, None],
        }
    )
    board = pd.DataFrame(
        {
            "dataset": ["d"] * 4,
            "learner": ["a", "a", "a", "b"],
            "strategy": ["loss", "bald", "loss (active, re-fit every 1000)", "loss"],
            "auc_mean": [0.91, 0.88, 0.92, 0.90],
            "auc_ci": [0.001, 0.002, 0.003, float("nan")],
            "efficiency_mean": [2.5, 1.1, 2.7, 2.0],
        }
    )
    return runs, board


def test_one_row_per_learner_with_fit_means_over_seeds_and_selector_aucs() -> None:
    runs, board = tables()
    summary = learner_summary(runs, board, selectors=("loss", "bald")).set_index("learner")
    assert math.isclose(summary.loc["a", "accuracy"], 0.65)  # one fit per seed, not per row
    assert math.isclose(summary.loc["a", "fit_seconds"], 15.0)
    assert summary.loc["a", "seeds"] == 2 and summary.loc["b", "seeds"] == 1  # failed run left out
    assert summary.loc["a", "loss_auc"] == 0.91 and summary.loc["a", "loss_active_auc"] == 0.92
    assert summary.loc["a", "bald_efficiency"] == 1.1
    assert math.isnan(summary.loc["b", "bald_auc"]) and math.isnan(summary.loc["b", "loss_active_auc"])


def test_markdown_shows_percent_accuracy_auc_efficiency_and_active_runs() -> None:
    runs, board = tables()
    selectors = ("loss", "bald")
    text = summary_markdown(learner_summary(runs, board, selectors=selectors), selectors=selectors)
    assert "| a | 65.0 | 0.9100 ± 0.0010 (2.50×); active 0.9200 | 0.8800 ± 0.0020 (1.10×) | 15 |" in text
    assert "| b | 50.0 | 0.9000 (2.00×) | — | 5 |" in text  # one seed: no half-width
