"""The cross-setting summary (benchmark.results.summary, benchmark.report.summary_section): paired
t intervals over shared seeds, win / tie / loss counts, mean ranks with ties averaged, settings
left out where a strategy or reference is missing, the best built-in reference, deterministic
bytes, and ``alcbench report`` putting it at the top of the leaderboard.

The runs tables are built by hand: a setting is a dataset name (learner ``truth``), a seed's
AUC of a strategy is given directly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import make_tables

from benchmark import registry
from benchmark.cli import main
from benchmark.report import summary_section
from benchmark.results import summary
from benchmark.results.tables import RUN_COLUMNS

EQ2 = "eq2[hinge=0.3]"
BUILTIN = frozenset({"random", "eq2", "loss", "entropy"})
SEEDS = range(5)


def make_runs(aucs: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """``{setting (dataset): {strategy label: AUC per seed}}`` as a runs table (ok rows)."""
    rows = []
    for dataset, by_strategy in aucs.items():
        for strategy, values in by_strategy.items():
            for seed, auc in enumerate(values):
                row: dict[str, object] = {c: math.nan for c in RUN_COLUMNS}
                row.update(
                    config_hash=f"{dataset}|{strategy}|{seed}",
                    dataset=dataset,
                    learner="truth",
                    strategy=strategy,
                    strategy_spec=strategy.partition(" (active")[0],
                    seed=seed,
                    status="ok",
                    error="",
                    auc=auc,
                )
                rows.append(row)
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "strategy_spec"])


def row_of(board: pd.DataFrame, strategy: str) -> dict[str, object]:
    sel = board[board["strategy"] == strategy]
    assert len(sel) == 1
    return sel.iloc[0].to_dict()


BASE = [0.80, 0.82, 0.81, 0.83, 0.79]
NOISE = [0.001, -0.002, 0.0015, -0.0005, 0.0]


def shifted(delta: float, noise: list[float] = NOISE) -> list[float]:
    return [b + delta + n for b, n in zip(BASE, noise, strict=True)]


# A clear win (+0.05), a tie (differences around 0) and a clear loss (-0.05) of "loss" against eq2.
THREE = {
    "a": {EQ2: BASE, "loss": shifted(0.05), "random": shifted(-0.1)},
    "b": {EQ2: BASE, "loss": shifted(0.0, [0.01, -0.01, 0.005, -0.005, 0.0]), "random": shifted(-0.1)},
    "c": {EQ2: BASE, "loss": shifted(-0.05), "random": shifted(-0.1)},
}


def test_the_paired_interval_is_scipy_s_paired_t_interval() -> None:
    a = np.array([0.912, 0.918, 0.905, 0.921, 0.915])
    b = np.array([0.903, 0.915, 0.899, 0.917, 0.904])
    mean, lo, hi = summary.paired_interval(a - b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx(float(np.mean(a - b)), abs=1e-15)
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # and the setting table computes it the same way, over the seeds both ran
    runs = make_runs({"x": {EQ2: list(b), "loss": list(a)}})
    rec = summary.setting_table(runs, BUILTIN).set_index("strategy").loc["loss"]
    assert (rec["eq2_lo"], rec["eq2_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert rec["eq2_n"] == 5 and rec["eq2_outcome"] == "win"
    # fewer than two differences: no interval
    assert all(math.isnan(v) for v in summary.paired_interval([0.1])[1:])


def test_win_tie_and_loss_are_counted_over_settings() -> None:
    table = summary.setting_table(make_runs(THREE), BUILTIN)
    outcomes = table[table["strategy"] == "loss"].set_index("setting")["eq2_outcome"]
    assert outcomes.to_dict() == {"a / truth": "win", "b / truth": "tie", "c / truth": "loss"}
    r = row_of(summary.summary(table), "loss")
    assert (r["vs_eq2_win"], r["vs_eq2_tie"], r["vs_eq2_loss"], r["vs_eq2_settings"]) == (1, 1, 1, 3)
    assert r["vs_eq2_mean"] == pytest.approx(0.0, abs=1e-12)
    # the reference is not compared with itself
    e = row_of(summary.summary(table), EQ2)
    assert e["vs_eq2_settings"] == 0 and math.isnan(float(e["vs_eq2_mean"]))  # type: ignore[arg-type]
    assert summary.outcome(0.001, 0.002) == "win" and summary.outcome(-0.002, -0.001) == "loss"
    assert summary.outcome(0.0, 0.01) == "tie" and summary.outcome(math.nan, math.nan) == "tie"


def test_mean_ranks_average_ties_and_rows_sort_by_mean_rank() -> None:
    runs = make_runs(
        {
            "a": {EQ2: [0.9] * 5, "loss": [0.9] * 5, "random": [0.8] * 5},  # eq2 and loss tie
            "b": {EQ2: [0.8] * 5, "loss": [0.9] * 5, "random": [0.7] * 5},
        }
    )
    table = summary.setting_table(runs, BUILTIN)
    ranks = table[table["setting"] == "a / truth"].set_index("strategy")["rank"]
    assert ranks.to_dict() == {EQ2: 1.5, "loss": 1.5, "random": 3.0}
    board = summary.summary(table)
    assert list(board["strategy"]) == ["loss", EQ2, "random"]
    assert list(board["mean_rank"]) == [1.25, 1.75, 3.0]
    assert list(board["rank"]) == [1, 2, 3] and list(board["n_settings"]) == [2, 2, 2]
    assert row_of(board, "loss")["a / truth: rank"] == 1.5


def test_a_strategy_missing_from_a_setting_is_left_out_of_its_comparisons() -> None:
    aucs = {k: dict(v) for k, v in THREE.items()}
    aucs["c"]["entropy"] = shifted(0.01)
    del aucs["c"]["loss"]  # loss did not run in c
    del aucs["b"][EQ2]  # and the reference is missing from b
    board = summary.summary(summary.setting_table(make_runs(aucs), BUILTIN))
    loss = row_of(board, "loss")
    assert loss["n_settings"] == 2
    assert loss["vs_eq2_settings"] == 1 and (loss["vs_eq2_win"], loss["vs_eq2_tie"], loss["vs_eq2_loss"]) == (
        1,
        0,
        0,
    )
    assert pd.isna(loss["c / truth: auc"]) and pd.isna(loss["b / truth: vs_eq2_mean"])
    assert loss["vs_best_settings"] == 2  # a best built-in exists in both settings it ran in
    entropy = row_of(board, "entropy")
    assert entropy["n_settings"] == 1 and entropy["vs_eq2_settings"] == 1
    # a strategy that ran on fewer seeds is compared over the seeds both ran
    runs = make_runs(THREE)
    runs = runs[~((runs["strategy"] == "loss") & (runs["dataset"] == "a") & (runs["seed"] == 4))]
    rec = summary.setting_table(runs, BUILTIN).set_index(["setting", "strategy"]).loc[("a / truth", "loss")]
    assert rec["eq2_n"] == 4 and rec["n_seeds"] == 4


def test_best_built_in_is_not_the_oracle_a_user_plugin_or_the_strategy_itself() -> None:
    runs = make_runs(
        {
            "a": {
                "oracle": [0.99] * 5,
                "mine": [0.97] * 5,  # a user's plugin, better than every built-in
                "loss": shifted(0.05),
                EQ2: BASE,
                "random": shifted(-0.1),
            }
        }
    )
    table = summary.setting_table(runs, BUILTIN | {"oracle"}).set_index("strategy")
    assert table.loc["mine", "best_reference"] == "loss"
    assert table.loc["oracle", "best_reference"] == "loss"
    assert table.loc["loss", "best_reference"] == EQ2  # itself excluded: the next best
    assert table.loc[EQ2, "best_reference"] == "loss"
    assert table.loc["loss", "best_mean"] == pytest.approx(0.05, abs=1e-9)
    # an active run of a built-in strategy is built-in too
    runs = make_runs({"a": {"loss (active, re-fit every 100)": [0.95] * 5, "loss": BASE, "random": BASE}})
    table = summary.setting_table(runs, BUILTIN).set_index("strategy")
    assert table.loc["loss", "best_reference"] == "loss (active, re-fit every 100)"


def test_built_in_strategies_are_the_shipped_ones_without_the_oracle(plugin_root: Path) -> None:
    (plugin_root / "strategies" / "mine.py").write_text(
        "import numpy as np\n"
        "from benchmark.plugins import Strategy\n\n"
        "class Mine(Strategy):\n"
        "    name = 'mine'\n"
        "    description = 'a user strategy'\n\n"
        "    def score(self, ctx):\n"
        "        return np.zeros(len(ctx.label_counts))\n"
    )
    registry.refresh()
    assert "mine" in registry.discover("strategy")
    names = summary_section.builtin_strategies()
    assert {"random", "loss", "eq2", "entropy", "bald"} <= names
    assert "mine" not in names and "oracle" not in names


def test_the_summary_csv_is_the_same_bytes_for_the_same_runs() -> None:
    runs = make_runs(THREE)
    first = summary.summary_csv(summary.summary(summary.setting_table(runs, BUILTIN)))
    shuffled = runs.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = summary.summary_csv(summary.summary(summary.setting_table(shuffled, BUILTIN)))
    assert first == again
    header = first.splitlines()[0].split(",")
    assert header[:4] == ["rank", "strategy", "mean_rank", "n_settings"]
    assert "vs_eq2_win" in header and "vs_best_loss" in header and "a / truth: vs_eq2_lo" in header
    numbers = [f for line in first.splitlines()[1:] for f in line.split(",") if "." in f]
    assert numbers and all(len(f.split(".")[1]) == 6 for f in numbers if f[0] in "-0123456789")


def test_alcbench_report_writes_the_summary_at_the_top_of_the_leaderboard(tmp_path: Path) -> None:
    runs, curves = make_tables()
    runs.to_parquet(tmp_path / "runs.parquet")
    curves.to_parquet(tmp_path / "curves.parquet")
    assert main(["report", str(tmp_path)]) == 0
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert list(csv["strategy"]) == ["oracle", EQ2, "random"]
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith("# Across settings\n")
    md = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Across settings"
    assert "| 1 | oracle |" in md and "plots/summary.png" in md
    html = (tmp_path / "leaderboard.html").read_text(encoding="utf-8")
    assert html.index("<h2>Across settings</h2>") < html.index("<h2>toy[noise=0.2]")
    for suffix in (".png", ".svg", ".pdf"):
        assert (tmp_path / "plots" / f"summary{suffix}").is_file()
    # a second report leaves the summary as it was
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("summary*")}
    assert main(["report", str(tmp_path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("summary*")} == before


def test_the_site_fragment_is_a_sortable_table_and_the_heat_map() -> None:
    fragment = summary_section.site_fragment(make_runs(THREE))
    assert fragment.startswith('<section id="across"><h2>Across settings</h2>')
    assert '<table class="sortable" id="across-table">' in fragment and 'src="plots/summary.png"' in fragment
    assert ">reference</td>" in fragment and "[1/1/1 of 3]" in fragment  # eq2's row, and loss's
    assert summary_section.site_figures(make_runs(THREE)) == ["plots/summary"]
    assert summary_section.site_fragment(make_runs({})) == ""
