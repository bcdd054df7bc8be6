"""Figures worth publishing (benchmark/results/styles.py, names.py, plots.py, overview.py,
benchmark/report/figures.py, benchmark/downstream/figures.py): the user's strategies and those
``--highlight`` names stand out in every figure, plugins are named by their display names,
titles wrap between words, and every figure fits a journal's column or page.

The results are small hand-made tables (as in tests/test_report.py): nine built-in strategies
besides Random and the oracle, so that without a highlight all but the best three fade, and a
user's strategy, ``label_margin``, loaded from a plugin folder, whose AUC is the worst.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text
from PIL import Image

from benchmark import registry
from benchmark.arguments import build_parser
from benchmark.downstream import figures as downstream_figures
from benchmark.report import figures as report_figures
from benchmark.report import pages as report
from benchmark.results import names, overview, plots, styles
from benchmark.results.leaderboard import leaderboard
from benchmark.run import identity

REPO = Path(__file__).resolve().parent.parent
USER = "label_margin[doubt_weight=0]"
USER_NAME = "label_margin (doubt_weight = 0)"
BUILTINS = [
    "oracle",
    "cleanlab[method=normalized_margin]",
    "cleanlab[method=self_confidence]",
    "loss",
    "cleanlab[method=confidence_weighted_entropy]",
    "eq2[hinge=0.3]",
    "eq2[hinge=None]",
    "entropy",
    "bald",
    "random",
]
#: The README's example strategy, as a user saves it.
LABEL_MARGIN = re.search(
    r"<!-- strategy-example -->\s*```python\n(.*?)```",
    (Path(__file__).resolve().parent.parent / "README.md").read_text(),
    re.S,
).group(1)  # type: ignore[union-attr]


def tables(
    datasets: dict[str, float], learners: list[str], strategies: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and curves: every (dataset, learner, strategy) with seeds 0 and 1, a strategy's AUC
    falling with its position in ``strategies``, budget 200, curves from 80 % up."""
    runs, curves = [], []
    for dataset, noise in datasets.items():
        for learner in learners:
            for i, strategy in enumerate(strategies):
                for seed in (0, 1):
                    key = f"{dataset}|{learner}|{strategy}|{seed}"
                    auc = 0.95 - 0.01 * i + 0.001 * seed
                    runs.append(
                        {
                            "config_hash": key,
                            "dataset": dataset,
                            "learner": learner,
                            "strategy": strategy,
                            "seed": seed,
                            "status": "ok",
                            "error": "",
                            "n_samples": 1000,
                            "n_classes": 10,
                            "noise_rate": noise,
                            "budget": 200,
                            "initially_mislabelled": 200,
                            "auc": auc,
                            "initial_accuracy": 80.0,
                            "final_accuracy": 80.0 + 20 * auc,
                            "annotations_spent": 200.0,
                            "selections": 150.0,
                            "pct_mislabelled_corrected": 50.0,
                            "target_accuracy": 95.0,
                            "annotations_to_target": 150.0,
                            "clear_mislabelled_left": 10.0,
                            "ambiguous_mislabelled_left": 5.0,
                            "commit": "abc123",
                        }
                    )
                    for step, x in enumerate((0, 50, 100, 200)):
                        y = 80.0 + (20 * auc - 2 * i / 10) * x / 200 + seed * 0.1
                        curves.append(
                            {
                                "config_hash": key,
                                "step": step,
                                "annotations": x,
                                "accuracy": y,
                                "mislabelled_clear": 150.0 - y,
                                "mislabelled_ambiguous": (100.0 - y) / 4,
                            }
                        )
    return pd.DataFrame(runs), pd.DataFrame(curves)


@pytest.fixture
def user_plugin(plugin_root: Path) -> Path:
    (plugin_root / "strategies" / "label_margin.py").write_text(LABEL_MARGIN)
    registry.refresh()
    return plugin_root


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Path, Figure]]]:
    """Every figure a report draws, with its PNG path: drawn in this process (no workers)."""
    found: list[tuple[Path, Figure]] = []
    save = plots.save_figure

    def keep(fig: Figure, path: Path, **kw: Any) -> Path:
        found.append((Path(path), fig))
        return save(fig, path, **kw)

    monkeypatch.setattr(report_figures, "available_cores", lambda: 1)
    # every paper figure (curves, overviews, downstream) is saved by plots.save_paper_figure
    monkeypatch.setattr(plots, "save_figure", keep)
    yield found


def strategy_lines(fig: Figure) -> dict[str, list[Line2D]]:
    """The curves of each strategy in a figure, by their label."""
    out: dict[str, list[Line2D]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not str(line.get_label()).startswith("_"):
                out.setdefault(str(line.get_label()), []).append(line)
    return out


def curve_figures(found: list[tuple[Path, Figure]]) -> list[tuple[Path, Figure]]:
    return [(p, f) for p, f in found if "__" in p.name]


def alpha(line: Line2D) -> float:
    a = line.get_alpha()
    return 1.0 if a is None else float(a)


def assert_strong(fig: Figure, label: str, shown_as: str) -> None:
    """``label`` is drawn strongly in ``fig``: opaque, the thickest, on top, in a reserved
    colour no other strategy has and dark enough, with its band, first and bold in the legend."""
    lines = strategy_lines(fig)
    others = [line for s, group in lines.items() if s != label for line in group]
    for line in lines[label]:
        assert alpha(line) == 1.0
        assert line.get_linewidth() >= max(o.get_linewidth() for o in others)
        assert line.get_zorder() > max(o.get_zorder() for o in others)
        assert line.get_color() in styles.HIGHLIGHT_COLOURS
        assert styles.luminance(line.get_color()) <= styles.MAX_LUMINANCE
        assert line.get_color() not in {o.get_color() for o in others}
    legend = next(c for c in fig.get_children() if isinstance(c, Legend))
    first = legend.get_texts()[0]
    assert shown_as in first.get_text() and first.get_fontweight() == "bold"


# --- highlight ------------------------------------------------------------------------------


def test_a_user_strategy_is_drawn_strongly_in_every_curve_figure_of_its_groups(
    user_plugin: Path, captured: list[tuple[Path, Figure]], tmp_path: Path
) -> None:
    runs, curves = tables({"toy[noise=0.2]": 0.2}, ["truth", "file:post.npy"], [*BUILTINS, USER])
    report.write_report(tmp_path, runs, curves)
    figs = curve_figures(captured)
    assert len(figs) == 4  # two groups, two figures each
    for _, fig in figs:
        assert_strong(fig, USER, USER_NAME)
        # the built-ins below the best three fade, as before
        assert alpha(strategy_lines(fig)["bald"][0]) < 1


def test_a_file_in_the_project_s_own_folder_counts_as_the_user_s_and_the_built_ins_do_not() -> None:
    # the rule is the shipped names (a new file of strategies/ has another name) and the origin
    assert names.is_user_strategy("label_margin[doubt_weight=0]")  # even not installed
    assert names.is_user_strategy("my_new_file (active, re-fit every 100)")
    assert not any(names.is_user_strategy(s) for s in BUILTINS)
    assert not names.is_user_strategy("eq2[hinge=0.5] (active, re-fit every 1000)")


def test_builtin_strategies_are_the_strategies_the_repository_ships() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "strategies"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    shipped = set()
    for rel in tracked:
        if rel.endswith(".py") and not Path(rel).name.startswith("_"):
            for node in ast.walk(ast.parse((REPO / rel).read_text())):
                if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["name"]:
                    shipped.add(ast.literal_eval(node.value))
    assert set(names.BUILTIN_STRATEGIES) == shipped


def test_highlight_on_a_built_in_makes_it_strong_and_first() -> None:
    order = [s for s in BUILTINS]
    plain = styles.strategy_styles(order, user=())
    assert not plain["bald"].highlighted and plain["bald"].alpha < 1 and not plain["bald"].band
    drawn = styles.strategy_styles(order, highlight=["bald"], user=())
    assert drawn["bald"].highlighted and drawn["bald"].alpha == 1 and drawn["bald"].band
    assert drawn["bald"].color in styles.HIGHLIGHT_COLOURS
    assert drawn["bald"].zorder > max(st.zorder for s, st in drawn.items() if s != "bald")
    assert styles.legend_order(order, drawn)[0] == "bald"
    # a plugin name matches every grid point; an active run follows its static twin
    both = styles.styles([*order, "eq2[hinge=0.3] (active, re-fit every 1000)"], highlight=["eq2"], user=())
    assert {s for s, st in both.items() if st.highlighted} == {
        "eq2[hinge=0.3]",
        "eq2[hinge=None]",
        "eq2[hinge=0.3] (active, re-fit every 1000)",
    }
    assert both["eq2[hinge=0.3]"].color != both["eq2[hinge=None]"].color
    assert both["eq2[hinge=0.3] (active, re-fit every 1000)"].color == both["eq2[hinge=0.3]"].color
    assert names.unmatched(["eq2", "nope"], order) == ["nope"]


def test_highlight_is_in_the_figure_keys_so_the_report_redraws(
    captured: list[tuple[Path, Figure]], tmp_path: Path
) -> None:
    runs, curves = tables({"toy[noise=0.2]": 0.2}, ["truth"], BUILTINS)
    report.write_report(tmp_path, runs, curves)
    again = report.write_report(tmp_path, runs, curves, highlight=["bald"])
    drawn = {p.name for p in again if p.suffix == ".png"}
    assert {"toy_noise_0.2__truth.png", "toy_noise_0.2__truth_mislabelled.png"} <= drawn
    fig = next(f for p, f in captured[::-1] if p.name == "toy_noise_0.2__truth.png")
    assert_strong(fig, "bald", "BALD")
    assert report.write_report(tmp_path, runs, curves, highlight=["bald"]) == []


def test_highlight_is_an_option_of_suite_run_report_and_publish() -> None:
    parse = build_parser().parse_args
    assert parse(["report", "r", "--highlight", "a", "--highlight", "b[k=1]"]).highlight == ["a", "b[k=1]"]
    assert parse(["publish", "r", "--highlight", "a"]).highlight == ["a"]
    assert parse(["suite", "--highlight", "a"]).highlight == ["a"]
    run = ["run", "--dataset", "d", "--strategy", "s", "--out", "o", "--highlight", "a"]
    assert parse(run).highlight == ["a"]
    assert parse(["report", "r"]).highlight == []


def test_palettes_are_dark_enough_and_the_highlight_s_are_reserved() -> None:
    every = [*styles.KNOWN_COLOURS.values(), *styles.PALETTE, *styles.HIGHLIGHT_COLOURS]
    assert all(styles.luminance(c) <= styles.MAX_LUMINANCE for c in every)
    assert styles.luminance("#ffbb78") > styles.MAX_LUMINANCE  # the old near-white peach
    assert not set(styles.HIGHLIGHT_COLOURS) & (set(styles.KNOWN_COLOURS.values()) | set(styles.PALETTE))
    # a new strategy nobody highlights gets a palette colour by its spec, whatever is beside it
    alone = styles.styles(["loss", "mine[k=1]"], user=())
    assert alone["mine[k=1]"].color in styles.PALETTE and not alone["mine[k=1]"].highlighted
    assert styles.styles(["mine[k=1]", "zzz"], user=())["mine[k=1]"] == alone["mine[k=1]"]


# --- names ----------------------------------------------------------------------------------


def test_built_ins_have_readable_display_names() -> None:
    cifar = names.plugin_name("dataset", "cifar10h[temperature=2]", 0.1538)
    assert cifar == "CIFAR-10H, T = 2 (15.4 % noise)"
    assert names.plugin_name("dataset", "cifar10h[temperature=10]") == "CIFAR-10H, T = 10"
    learner = {
        "ensemble[members=5,posteriors=insample,views=8]": "5-member ensemble, in-sample, 8 views",
        "smallcnn": "vanilla CNN, out-of-fold",
        "smallcnn[posteriors=insample]": "vanilla CNN, in-sample",
        "ssl": "self-supervised (BYOL) + linear head",
        "resnet50": "ResNet-50",
    }
    for spec, shown in learner.items():
        assert names.plugin_name("learner", spec) == shown
    strategy = {
        "eq2[hinge=0.3]": "Eq. 2 (hinge 0.3)",
        "cleanlab[method=normalized_margin]": "cleanlab normalized margin",
        "random": "Random",
        "oracle": "Oracle",
        "loss (active, re-fit every 1000)": "Cross-entropy loss (active, re-fit every 1000)",
    }
    for label, shown in strategy.items():
        assert names.strategy_name(label) == shown


def test_a_plugin_without_its_own_display_name_and_an_unknown_one(user_plugin: Path) -> None:
    assert names.strategy_name(USER) == USER_NAME  # the default: the spec in words
    assert names.strategy_name("gone[k=1]") == "gone[k=1]"  # not installed: the spec
    assert names.plugin_name("dataset", "toy[noise=0.2]", 0.2) == "toy[noise=0.2] (20.0 % noise)"


def test_titles_wrap_between_words_and_never_inside_one(
    captured: list[tuple[Path, Figure]], tmp_path: Path
) -> None:
    runs, curves = tables(
        {"cifar10h[temperature=2]": 0.1538}, ["ensemble[members=5,posteriors=insample,views=8]"], BUILTINS[:4]
    )
    report.write_report(tmp_path, runs, curves)
    title = "CIFAR-10H, T = 2 (15.4 % noise) — 5-member ensemble, in-sample, 8 views (N = 1000, budget 200)"
    for path, fig in captured:
        text = fig.get_suptitle()
        assert text.split() == (title if "__" in path.name else f"AUC per learner: {title[:31]}").split()
        words = set(title.split()) | {"AUC", "per", "learner:"}
        assert all(word in words for line in text.split("\n") for word in line.split()), text
    assert names.wrap("ensemble[members=5,posteriors=insample,views=8]", 10) == (
        "ensemble[members=5,posteriors=insample,views=8]"
    )
    assert names.wrap("a-b c-d e", 3) == "a-b\nc-d\ne"


# --- paper layout ---------------------------------------------------------------------------


def inches(png: Path) -> tuple[float, float]:
    with Image.open(png) as im:
        dpi = im.info["dpi"]
        return im.size[0] / dpi[0], im.size[1] / dpi[1]


def test_curve_figures_fit_a_column_with_the_legend_below_and_no_small_font(
    captured: list[tuple[Path, Figure]], tmp_path: Path
) -> None:
    runs, curves = tables({"toy[noise=0.2]": 0.2}, ["truth"], BUILTINS)
    report.write_report(tmp_path, runs, curves)
    accuracy = next(f for p, f in captured if p.name == "toy_noise_0.2__truth.png")
    mislabelled = next(f for p, f in captured if p.name == "toy_noise_0.2__truth_mislabelled.png")
    assert accuracy.get_size_inches()[0] == plots.NARROW and mislabelled.get_size_inches()[0] == plots.WIDE
    assert inches(tmp_path / "plots" / "toy_noise_0.2__truth.png")[0] == pytest.approx(plots.NARROW, abs=0.01)
    for fig in (accuracy, mislabelled):
        fig.draw_without_rendering()
        legend = next(c for c in fig.get_children() if isinstance(c, Legend))
        box = legend.get_window_extent()
        assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # below the axes
        texts = [t for t in fig.findobj(Text) if isinstance(t, Text) and t.get_text().strip()]
        assert texts and all(float(t.get_fontsize()) >= plots.MIN_FONT for t in texts)
        assert fig.get_size_inches()[1] <= 9


def test_the_overview_is_one_figure_per_dataset_each_fitting_a_page(
    captured: list[tuple[Path, Figure]], tmp_path: Path
) -> None:
    learners = ["truth", "file:a.npy", "file:b.npy"]
    runs, curves = tables({"toy[noise=0.2]": 0.2, "other": 0.3}, learners, BUILTINS)
    written = report.write_report(tmp_path, runs, curves)
    plots_dir = tmp_path / "plots"
    pages = {p.name for p in written if p.name.startswith("auc_overview_") and p.suffix == ".png"}
    assert pages == {"auc_overview_toy_noise_0.2.png", "auc_overview_other.png"}
    for name in (*pages, "auc_overview.png"):
        width, height = inches(plots_dir / name)
        assert width <= 7.0 + 1e-6 and height <= 9.0 + 1e-6
        for ext in (".svg", ".pdf"):
            assert (plots_dir / name).with_suffix(ext).is_file()
    # one panel per learner, titled with its display name
    other = next(f for p, f in captured if p.name == "auc_overview_other.png")
    titles = [ax.get_title(loc="left") for ax in other.axes if ax.get_visible()]
    assert titles == ["file:a.npy", "file:b.npy", "true label distribution (upper bound)"]
    copy = (plots_dir / "auc_overview.png").read_bytes()
    assert copy == (plots_dir / "auc_overview_other.png").read_bytes()  # the first dataset's
    # a dataset with many learners spreads over pages that each fit
    board = leaderboard(runs, curves)
    rows = board[(board["dataset"] == "other") & (board["learner"] == "truth")]
    many = [(f"learner {i}", rows) for i in range(13)]
    split = overview.pages(many, len(BUILTINS))
    assert len(split) > 1 and sum(len(p) for p in split) == 13
    for page in split:
        fig = overview.overview_figure("t", page, styles.styles(BUILTINS, user=()))
        assert fig.get_size_inches()[0] <= 7.0 and fig.get_size_inches()[1] <= 9.0
    # a dataset whose runs are gone loses its overview
    report.write_report(tmp_path, *tables({"other": 0.3}, learners, BUILTINS))
    assert not (plots_dir / "auc_overview_toy_noise_0.2.png").exists()
    assert (plots_dir / "auc_overview_other.png").is_file()


def test_the_downstream_figure_names_its_learner_and_draws_the_best_few_and_the_baselines() -> None:
    rows = []
    others = [s for s in BUILTINS if s not in ("random", "oracle")]
    for i, strategy in enumerate(["random", "oracle", *others]):
        for fraction in (0.0, 0.5, 1.0):
            acc = 56.0 + fraction * (3.0 - 0.3 * i)
            rows.append(
                {
                    "dataset": "cifar10h[temperature=2]",
                    "learner": "ensemble[members=5,posteriors=insample,views=8]",
                    "strategy": strategy,
                    "fraction": fraction,
                    "test_accuracy": acc,
                    "test_accuracy_ci": 0.3,
                    "gain": acc - 56.0,
                    "gain_ci": 0.2,
                    "model": "ssl linear head",
                }
            )
    for ref, acc in (("noisy labels", 56.0), ("true labels", 58.0)):
        rows.append({**rows[0], "strategy": ref, "fraction": np.nan, "test_accuracy": acc, "gain": np.nan})
    t = pd.DataFrame(rows)
    ensemble = "ensemble[members=5,posteriors=insample,views=8]"
    named = {
        "dataset": {"cifar10h[temperature=2]": "CIFAR-10H, T = 2 (15.4 % noise)"},
        "learner": {ensemble: "5-member ensemble, in-sample, 8 views"},
    }
    fig = downstream_figures.training_figure("cifar10h[temperature=2]", t, names=named)
    title = " ".join(fig.get_suptitle().split())
    assert "5-member ensemble, in-sample, 8 views" in title and "CIFAR-10H, T = 2" in title
    drawn = {str(c.get_label()) for ax in fig.axes for c in ax.containers}
    assert drawn == {*others[:3], "random"}  # the best three by final accuracy, and Random
    legend = next(c for c in fig.get_children() if isinstance(c, Legend))
    texts = [x.get_text() for x in legend.get_texts()]
    assert "trained on the noisy labels" in texts and "trained on the true labels" in texts
    assert fig.get_size_inches()[0] == plots.WIDE
    # a highlighted strategy is drawn too, however it ranks
    style = styles.styles([*others, "random", "oracle"], highlight=["bald"], user=())
    fig = downstream_figures.training_figure("cifar10h[temperature=2]", t, style, named)
    assert "bald" in {str(c.get_label()) for ax in fig.axes for c in ax.containers}


# --- identity -------------------------------------------------------------------------------


def test_a_display_name_is_no_part_of_a_cell_s_identity(user_plugin: Path) -> None:
    path = user_plugin / "strategies" / "label_margin.py"
    before = identity.plugin_fingerprint("strategy", "label_margin")
    path.write_text(LABEL_MARGIN + '\n    def display_name(self) -> str:\n        return "Label margin"\n')
    registry.refresh()
    assert names.strategy_name(USER) == "Label margin"
    assert identity.plugin_fingerprint("strategy", "label_margin") == before
    edited = LABEL_MARGIN.replace("p.max(axis=1) - current", "p.max(axis=1) - 2 * current")
    assert edited != LABEL_MARGIN
    path.write_text(edited)
    registry.refresh()
    assert identity.plugin_fingerprint("strategy", "label_margin") != before
    source = LABEL_MARGIN.encode()
    assert identity.without_presentation(source) == source
