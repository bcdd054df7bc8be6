"""Specification of the leaderboard, its pages and plots (benchmark/results/leaderboard.py, plots.py,
report.py) on small hand-made result tables.

Two groups (one dataset, learners "truth" and "file:post.npy"), strategies random, eq2 and
oracle, seeds 0..2. Every curve starts at 80 % with 0 annotations and the budget is 200:

* random: 85 % at 50, 90 % at 100, stays at 90 % until 200 -> A_R = 90, a_R = 100;
* eq2:    90 % at 50, 95 % at 200                            -> a_S = 50, efficiency 2;
* oracle: 90 % at 25, 100 % at 200                           -> a_S = 25, efficiency 4.

AUCs in the runs table are chosen by hand (the report aggregates them, it does not recompute
them), so means, CIs and ranks can be worked out on paper.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.report import pages as report
from benchmark.results import leaderboard, plots, tables

T_975_DF2 = 4.302652729749464  # Student t, 97.5 % quantile, 2 degrees of freedom
DATASET = "toy[noise=0.2]"
TRUTH, FILE = "truth", "file:post.npy"
EQ2 = "eq2[hinge=0.3]"

CURVES = {
    "random": [(0, 80.0), (50, 85.0), (100, 90.0), (200, 90.0)],
    EQ2: [(0, 80.0), (50, 90.0), (200, 95.0)],
    "oracle": [(0, 80.0), (25, 90.0), (200, 100.0)],
}
AUC = {
    TRUTH: {"random": [0.87, 0.88, 0.89], EQ2: [0.90, 0.92, 0.94], "oracle": [0.95, 0.95, 0.95]},
    # eq2 below random here, so the order cannot come from the names
    FILE: {"random": [0.88, 0.88, 0.88], EQ2: [0.84, 0.86, 0.86], "oracle": [0.96, 0.96, 0.96]},
}


def _run(
    learner: str,
    strategy: str,
    seed: int,
    *,
    status: str = "ok",
    auc: float = 0.9,
    error: str = "",
    to_target: float = 150.0,
) -> dict[str, object]:
    return {
        "config_hash": f"{learner}|{strategy}|{seed}",
        "dataset": DATASET,
        "learner": learner,
        "strategy": strategy,
        "seed": seed,
        "status": status,
        "error": error,
        "n_samples": 1000,
        "n_classes": 10,
        "noise_rate": 0.2,
        "budget": 200,
        "initially_mislabelled": 200,
        "auc": auc,
        "initial_accuracy": 80.0,
        "final_accuracy": CURVES.get(strategy, [(0, 80.0)])[-1][1],
        "annotations_spent": 200.0,
        "selections": 150.0,
        "pct_mislabelled_corrected": 50.0,
        "target_accuracy": 95.0,
        "annotations_to_target": to_target,
        "clear_mislabelled_left": 10.0 + seed,
        "ambiguous_mislabelled_left": 5.0,
        "commit": "abc123",
    }


def _curve(config_hash: str, points: Sequence[tuple[float, float]]) -> list[dict[str, object]]:
    return [
        {
            "config_hash": config_hash,
            "step": step,
            "annotations": x,
            "accuracy": y,
            "mislabelled_clear": 150.0 - y,
            "mislabelled_ambiguous": (100.0 - y) / 4,
        }
        for step, (x, y) in enumerate(points)
    ]


def make_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, curves = [], []
    for learner, by_strategy in AUC.items():
        for strategy, aucs in by_strategy.items():
            for seed, auc in enumerate(aucs):
                row = _run(learner, strategy, seed, auc=auc)
                runs.append(row)
                curves += _curve(str(row["config_hash"]), CURVES[strategy])
    # eq2 seed 2 under FILE failed: its (garbage) AUC must not enter the mean
    failed = next(r for r in runs if r["config_hash"] == f"{FILE}|{EQ2}|2")
    failed.update(
        status="failed", auc=0.0, error="CUDA out of memory\nTraceback (most recent call last): ..."
    )
    runs.append(
        _run(
            FILE,
            "bald",
            0,
            status="skipped",
            auc=float("nan"),
            error="strategy bald requires stochastic posteriors",
        )
    )
    return pd.DataFrame(runs), pd.DataFrame(curves)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The report of :func:`make_tables`, written once (plotting is the slow part)."""
    out = tmp_path_factory.mktemp("report")
    return out, report.write_report(out, *make_tables())


def row(board: pd.DataFrame, learner: str, strategy: str) -> pd.Series:
    sel = board[(board["learner"] == learner) & (board["strategy"] == strategy)]
    assert len(sel) == 1
    return sel.iloc[0]


# --- aggregation ------------------------------------------------------------------------


def test_mean_and_ci_half_width_are_student_t_over_seeds() -> None:
    board = leaderboard.leaderboard(*make_tables())
    r = row(board, TRUTH, EQ2)  # AUC 0.90, 0.92, 0.94: sd 0.02
    assert r["n_seeds"] == 3
    assert r["auc_mean"] == pytest.approx(0.92)
    assert r["auc_ci"] == pytest.approx(T_975_DF2 * 0.02 / math.sqrt(3))
    assert r["clear_mislabelled_left_mean"] == pytest.approx(11.0)  # 10, 11, 12
    assert r["clear_mislabelled_left_ci"] == pytest.approx(T_975_DF2 * 1.0 / math.sqrt(3))


def test_ci_is_nan_for_a_single_seed_and_zero_for_identical_seeds() -> None:
    mean, half = leaderboard.mean_ci95(np.array([0.9]))
    assert mean == 0.9 and math.isnan(half)
    assert leaderboard.mean_ci95(np.array([0.5, 0.5, 0.5])) == (0.5, 0.0)
    assert all(math.isnan(v) for v in leaderboard.mean_ci95(np.array([np.nan])))


def test_efficiency_is_random_annotations_over_strategy_annotations() -> None:
    board = leaderboard.leaderboard(*make_tables())
    assert row(board, TRUTH, "random")["efficiency_mean"] == pytest.approx(1.0)
    assert row(board, TRUTH, EQ2)["efficiency_mean"] == pytest.approx(2.0)  # 100 / 50
    assert row(board, TRUTH, "oracle")["efficiency_mean"] == pytest.approx(4.0)  # 100 / 25
    assert row(board, TRUTH, EQ2)["efficiency_ci"] == pytest.approx(0.0)


def test_efficiency_uses_the_random_run_of_the_same_seed() -> None:
    runs, curves = make_tables()
    # seed 1's random run reaches its final 90 % only at 150 annotations: eq2's seed 1 -> 3.0
    h = f"{TRUTH}|random|1"
    curves = curves[curves["config_hash"] != h]
    curves = pd.concat([curves, pd.DataFrame(_curve(h, [(0, 80.0), (150, 90.0), (200, 90.0)]))])
    r = row(leaderboard.leaderboard(runs, curves), TRUTH, EQ2)
    assert r["efficiency_mean"] == pytest.approx((2.0 + 3.0 + 2.0) / 3)


def test_efficiency_is_nan_and_counted_when_the_strategy_never_reaches_random() -> None:
    runs, curves = make_tables()
    h = f"{TRUTH}|{EQ2}|0"
    curves = curves[curves["config_hash"] != h]
    curves = pd.concat([curves, pd.DataFrame(_curve(h, [(0, 80.0), (200, 89.0)]))])
    r = row(leaderboard.leaderboard(runs, curves), TRUTH, EQ2)
    assert r["n_efficiency_unreached"] == 1
    assert r["efficiency_mean"] == pytest.approx(2.0)  # over the two seeds that reached it
    assert row(leaderboard.leaderboard(*make_tables()), TRUTH, EQ2)["n_efficiency_unreached"] == 0


def test_efficiency_is_nan_without_a_random_run() -> None:
    runs, curves = make_tables()
    runs = runs[runs["strategy"] != "random"]
    board = leaderboard.leaderboard(runs, curves)
    assert board["efficiency_mean"].isna().all()
    assert (board["n_efficiency_unreached"] == 0).all()


def test_annotations_to_target_is_averaged_over_seeds_that_reached_it() -> None:
    runs, curves = make_tables()
    at = (runs["learner"] == TRUTH) & (runs["strategy"] == EQ2)
    runs.loc[at, "annotations_to_target"] = [100.0, 140.0, np.nan]
    r = row(leaderboard.leaderboard(runs, curves), TRUTH, EQ2)
    assert r["n_target_reached"] == 2
    assert r["annotations_to_target_mean"] == pytest.approx(120.0)


def test_rows_are_sorted_by_group_then_auc_with_a_rank_per_group() -> None:
    board = leaderboard.leaderboard(*make_tables())
    assert list(zip(board["learner"], board["strategy"], board["rank"], strict=True)) == [
        (FILE, "oracle", 1),
        (FILE, "random", 2),
        (FILE, EQ2, 3),
        (TRUTH, "oracle", 1),
        (TRUTH, EQ2, 2),
        (TRUTH, "random", 3),
    ]


def test_failed_and_skipped_runs_are_excluded_from_aggregates() -> None:
    board = leaderboard.leaderboard(*make_tables())
    r = row(board, FILE, EQ2)
    assert r["n_seeds"] == 2 and r["n_failed"] == 1 and r["n_skipped"] == 0
    assert r["auc_mean"] == pytest.approx(0.85)  # (0.84 + 0.86) / 2, not counting the 0.0
    assert "bald" not in set(board["strategy"])  # only skipped: no leaderboard row


def test_group_noise_rate_and_budget_are_reported() -> None:
    board = leaderboard.leaderboard(*make_tables())
    assert (board["noise_rate"] == 0.2).all()
    assert (board["budget"] == 200).all()
    assert (board["n_samples"] == 1000).all()


def test_duplicated_ok_cell_is_an_error() -> None:
    runs, curves = make_tables()
    runs = pd.concat([runs, runs.iloc[[0]]])
    with pytest.raises(ValueError, match="several ok rows"):
        leaderboard.leaderboard(runs, curves)


def test_ok_run_without_curve_is_an_error_naming_it() -> None:
    runs, curves = make_tables()
    curves = curves[curves["config_hash"] != f"{TRUTH}|oracle|0"]
    with pytest.raises(ValueError, match=r"truth\|oracle\|0"):
        leaderboard.leaderboard(runs, curves)


# --- files ------------------------------------------------------------------------------


def test_group_title_gives_size_noise_and_budget() -> None:
    info: dict[str, object] = {"n_samples": 5000, "noise_rate": 0.1538, "budget": 3076}
    assert report.group_title("cifar10h[temperature=2]", "smallcnn", info) == (
        "cifar10h[temperature=2] — learner smallcnn (N=5000, 15.4 % noise, budget 3076)"
    )


def test_write_report_writes_tables_and_valid_pngs(written: tuple[Path, list[Path]]) -> None:
    out, paths = written
    names = {p.relative_to(out).as_posix() for p in paths}
    assert {"leaderboard.csv", "leaderboard.md", "leaderboard.html", "plots/auc_overview.png"} <= names
    pngs = [p for p in paths if p.suffix == ".png"]
    # accuracy + mislabelled per group, the dataset's AUC overview and its copy as
    # auc_overview.png, the summary
    assert len(pngs) == 2 * 2 + 3
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    for p in pngs:
        assert not set("[]=,: ") & set(p.name)


def test_csv_holds_every_leaderboard_column(written: tuple[Path, list[Path]]) -> None:
    csv = pd.read_csv(written[0] / "leaderboard.csv")
    board = leaderboard.leaderboard(*make_tables())
    assert list(csv.columns) == list(board.columns)
    assert len(csv) == len(board)


def test_markdown_has_a_section_per_group_and_lists_failed_and_skipped_cells(
    written: tuple[Path, list[Path]],
) -> None:
    md = (written[0] / "leaderboard.md").read_text(encoding="utf-8")
    # each group under its display name, with its specs beside it
    assert (
        "## toy[noise=0.2] (20.0 % noise) — true label distribution (upper bound) (N = 1000, budget 200)"
        in md
    )
    assert f"`{DATASET}` · `{TRUTH}`" in md and f"`{DATASET}` · `{FILE}`" in md
    assert f"`{EQ2}` seed 2: failed — CUDA out of memory" in md
    assert "Traceback" not in md  # only the first line of an error
    assert "`bald` seed 0: skipped — strategy bald requires stochastic posteriors" in md
    assert "| 2 | eq2[hinge=0.3] | 0.9200 ± 0.0497 |" in md
    assert "2.00×" in md
    html = (written[0] / "leaderboard.html").read_text(encoding="utf-8")
    assert "<table" in html and "CUDA out of memory" in html
    assert "<link" not in html and "http" not in html  # self-contained
    # every plot the page shows exists beside it
    shown = re.findall(r'<img src="([^"]+)"', html)
    assert shown and all((written[0] / src).is_file() for src in shown)


def test_group_without_successful_runs_still_gets_a_section(tmp_path: Path) -> None:
    runs, curves = make_tables()
    runs = pd.concat(
        [
            runs,
            pd.DataFrame(
                [_run("smallcnn", "random", 0, status="failed", auc=float("nan"), error="no images")]
            ),
        ]
    )
    report.write_report(tmp_path, runs, curves)
    md = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert "## Not run, and why" in md
    assert "learner smallcnn (N=1000, 20.0 % noise, budget 200): no successful runs" in md
    assert "  - `random` seed 0: failed — no images" in md
    assert md.index("## Not run, and why") > md.index(f"`{FILE}`")  # after every table


def test_write_report_twice_gives_identical_bytes(written: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, first = written
    second = report.write_report(tmp_path, *make_tables())
    assert [p.relative_to(out) for p in first] == [p.relative_to(tmp_path) for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_colliding_safe_names_are_told_apart(tmp_path: Path) -> None:
    runs, curves = make_tables()
    runs = runs.copy()
    runs.loc[runs["learner"] == FILE, "learner"] = "a:b"
    runs.loc[runs["learner"] == TRUTH, "learner"] = "a=b"
    pngs = [p for p in report.write_report(tmp_path, runs, curves) if p.suffix == ".png"]
    assert len({p.name for p in pngs}) == len(pngs) == 7  # with the overview (twice) and the summary


def test_a_group_no_longer_in_the_runs_loses_its_figures_and_nothing_else_is_removed(tmp_path: Path) -> None:
    runs, curves = make_tables()
    first = report.write_report(tmp_path, runs, curves)
    dropped = sorted(p for p in first if "file_post" in p.name)
    assert len(dropped) == 6  # accuracy and mislabelled figures, PNG, SVG and PDF
    (tmp_path / "plots" / "mine__notes.txt").write_text("a user's file")
    (tmp_path / "plots" / "sketch.png").write_bytes(b"not a group figure")
    second = report.write_report(tmp_path, runs[runs["learner"] != FILE], curves)
    assert not any(p.exists() for p in dropped)
    assert all(p.is_file() for p in second)
    assert (tmp_path / "plots" / "mine__notes.txt").is_file() and (
        tmp_path / "plots" / "sketch.png"
    ).is_file()
    kept = {p.name for p in (tmp_path / "plots").iterdir()}
    # what the second report wrote and what it left as it was (the remaining group's figures)
    produced = [*second, *second.kept]
    assert kept == {p.name for p in produced if p.parent.name == "plots"} | {"mine__notes.txt", "sketch.png"}


def test_load_tables_reads_parquet_and_names_a_missing_file(tmp_path: Path) -> None:
    runs, curves = make_tables()
    runs.to_parquet(tmp_path / "runs.parquet")
    with pytest.raises(FileNotFoundError, match="curves.parquet"):
        tables.load_tables(tmp_path)
    curves.to_parquet(tmp_path / "curves.parquet")
    got_runs, got_curves = tables.load_tables(tmp_path)
    assert len(got_runs) == len(runs) and len(got_curves) == len(curves)


# --- figure styles ----------------------------------------------------------------------


def test_adding_a_strategy_keeps_every_other_strategy_s_colour() -> None:
    # (none of them the user's here: a user's strategy is highlighted, see test_figures_paper.py)
    before = plots.styles(["random", "oracle", "loss", "eq2[hinge=0.3]", "bald", "my_strategy"], user=())
    after = plots.styles(
        ["random", "oracle", "loss", "eq2[hinge=0.3]", "bald", "my_strategy", "another[k=2]", "aaa"], user=()
    )
    for name, style in before.items():
        assert after[name] == style, name
    # the baselines keep their neutral styles; built-in strategies their own distinct colours
    assert before["random"].color == "black" and before["oracle"].color == "0.45"
    builtin = [plots.strategy_style(s).color for s in plots.KNOWN_COLOURS]
    assert len(set(builtin)) == len(builtin)
    assert not set(builtin) & set(plots.PALETTE)
    # an active run is drawn dotted in its static twin's colour
    active = plots.strategy_style("loss (active, re-fit every 1000)")
    assert active.color == before["loss"].color and active.linestyle == ":"


def test_many_strategies_emphasise_the_best_few_and_the_baselines() -> None:
    order = ["oracle", "a", "b", "c", "d", "e", "f", "g", "random"]
    assert plots.emphasis(order) == {"oracle", "a", "b", "c", "random"}
    assert plots.emphasis(order[:5]) == set(order[:5])


def test_identical_curves_are_named_in_the_legend() -> None:
    flat = (np.ones(5), np.zeros(5))
    series = {"loss": flat, "cleanlab": flat, "other": (np.arange(5.0), np.zeros(5))}
    assert plots.same_curves(series, ["cleanlab", "loss", "other"]) == {"loss": "cleanlab"}


def test_every_figure_has_svg_and_pdf_beside_it(written: tuple[Path, list[Path]]) -> None:
    out, paths = written
    for png in (p for p in paths if p.suffix == ".png"):
        for vector in plots.vector_paths(png):
            assert vector in paths and vector.stat().st_size > 0
    svg = (out / "plots" / "auc_overview.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert (out / "plots" / "auc_overview.pdf").read_bytes().startswith(b"%PDF")
