"""An incremental report and site (benchmark.results.incremental, benchmark.report.pages,
benchmark.report.site): a figure is drawn again only when the data it draws or the code that
draws it changed, a page is written only when its bytes change, and the manifest that records
the keys is the same for the same results.

The results are the two groups of tests/test_report.py (learners ``truth`` and
``file:post.npy``): seven figures (two per group, the dataset's AUC overview, its copy as
``auc_overview.png`` and the across-settings summary), each as PNG, SVG and PDF.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_report import EQ2, TRUTH, make_tables

from benchmark.report import pages as report
from benchmark.report.site import publish
from benchmark.results import incremental
from benchmark.results.incremental import MANIFEST

TRUTH_FIGURES = {"toy_noise_0.2__truth.png", "toy_noise_0.2__truth_mislabelled.png"}
FILE_FIGURES = {"toy_noise_0.2__file_post.npy.png", "toy_noise_0.2__file_post.npy_mislabelled.png"}
#: The figures over every group: the AUC overview and the across-settings heat map.
#: (the overview is the dataset's, auc_overview_<dataset>.png, and its copy auc_overview.png)
ACROSS = {"auc_overview.png", "auc_overview_toy_noise_0.2.png", "summary.png"}
ALL_FIGURES = TRUTH_FIGURES | FILE_FIGURES | ACROSS


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its mtime (ns) and bytes."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def changed(before: dict[str, tuple[int, bytes]], after: dict[str, tuple[int, bytes]]) -> set[str]:
    return {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}


def pngs(paths: list[Path]) -> set[str]:
    return {p.name for p in paths if p.suffix == ".png"}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of :func:`make_tables`, written once; each test works on a copy."""
    out = tmp_path_factory.mktemp("base")
    written = report.write_report(out, *make_tables())
    assert pngs(written) == ALL_FIGURES and (out / "plots" / MANIFEST) in written
    return out


@pytest.fixture
def folder(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(base, out)
    return out


def test_a_second_report_rewrites_nothing_and_says_so(folder: Path) -> None:
    before = snapshot(folder)
    again = report.write_report(folder, *make_tables())
    assert list(again) == []
    assert changed(before, snapshot(folder)) == set()
    assert pngs(again.kept) == ALL_FIGURES
    assert again.summary().startswith("report: 0 figures redrawn, 7 up to date; 0 other files written, ")


def test_a_change_no_figure_or_page_shows_rewrites_only_the_manifest(folder: Path) -> None:
    """The runs' commit is read (the inputs key changes) but neither drawn nor printed: every
    figure's own key still matches, so nothing is drawn and no page is rewritten."""
    runs, curves = make_tables()
    before = snapshot(folder)
    again = report.write_report(folder, runs.assign(commit="def456"), curves)
    assert list(again) == [folder / "plots" / MANIFEST]
    assert changed(before, snapshot(folder)) == {f"plots/{MANIFEST}"}


def test_one_group_s_change_redraws_its_figures_and_the_overview_and_summary_only(folder: Path) -> None:
    runs, curves = make_tables()
    gone = (runs["learner"] == TRUTH) & (runs["strategy"] == EQ2)
    curves = curves[~curves["config_hash"].isin(runs.loc[gone, "config_hash"])]
    before = snapshot(folder)
    again = report.write_report(folder, runs[~gone], curves)
    assert pngs(again) == TRUTH_FIGURES | ACROSS
    assert pngs(again.kept) == FILE_FIGURES
    touched = changed(before, snapshot(folder))
    figures = {
        Path(rel).with_suffix(".png").name for rel in touched if rel.endswith((".png", ".svg", ".pdf"))
    }
    assert figures == TRUTH_FIGURES | ACROSS
    assert len([rel for rel in touched if rel.endswith((".png", ".svg", ".pdf"))]) == 15
    # the pages show the group's table, the learners table its eq2 AUC, the summary its ranks
    assert {rel for rel in touched if not rel.startswith("plots/")} == {
        "leaderboard.csv",
        "leaderboard.md",
        "leaderboard.html",
        "learners.csv",
        "learners.md",
        "summary.csv",
        "summary.md",
    }
    assert again.summary().startswith("report: 5 figures redrawn, 2 up to date;")


def test_a_change_of_the_drawing_code_redraws_every_figure(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = incremental.code_fingerprint
    monkeypatch.setattr(incremental, "code_fingerprint", lambda *modules: "edited " + real(*modules))
    before = snapshot(folder)
    again = report.write_report(folder, *make_tables())
    assert pngs(again) == ALL_FIGURES
    touched = changed(before, snapshot(folder))
    assert {Path(rel).name for rel in touched if rel.endswith(".png")} == ALL_FIGURES
    assert {rel for rel in touched if not rel.startswith("plots/")} == set()  # the same pages


def test_a_deleted_output_is_written_again(folder: Path) -> None:
    svg = folder / "plots" / "toy_noise_0.2__file_post.npy_mislabelled.svg"
    svg.unlink()
    (folder / "leaderboard.md").unlink()
    before = snapshot(folder)
    again = report.write_report(folder, *make_tables())
    assert svg.is_file() and (folder / "leaderboard.md").is_file()
    assert pngs(again) == {svg.with_suffix(".png").name}  # that figure only, all three files
    assert {svg.with_suffix(s) for s in (".png", ".svg", ".pdf")} <= set(again)
    touched = changed(before, snapshot(folder))
    assert touched == {
        "leaderboard.md",
        f"plots/{MANIFEST}",
        *(f"plots/{svg.with_suffix(s).name}" for s in (".png", ".svg", ".pdf")),
    }


def test_the_manifest_is_the_same_for_the_same_results(base: Path, tmp_path: Path) -> None:
    report.write_report(tmp_path, *make_tables())
    text = (tmp_path / "plots" / MANIFEST).read_text(encoding="utf-8")
    assert text == (base / "plots" / MANIFEST).read_text(encoding="utf-8")
    content = json.loads(text)
    assert json.dumps(content, sort_keys=True, indent=1) + "\n" == text
    assert str(tmp_path) not in text and str(base) not in text
    figures = {Path(rel).name for rel in content["files"]}
    assert {Path(n).with_suffix(".png").name for n in figures} == ALL_FIGURES and len(figures) == 21
    assert set(content["pages"]) >= {"leaderboard.csv", "leaderboard.md", "leaderboard.html"}


def test_publish_twice_rewrites_nothing_and_a_change_rewrites_what_shows_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    runs, curves = make_tables()
    runs.to_parquet(results / "runs.parquet")
    curves.to_parquet(results / "curves.parquet")
    site = tmp_path / "site"
    first = publish(results, site)
    assert (site / "index.html") in first and (site / MANIFEST) in first
    before = snapshot(tmp_path)
    again = publish(results, site)
    assert list(again) == [] and changed(before, snapshot(tmp_path)) == set()
    assert again.summary().startswith("site: 0 figures copied, 7 up to date; 0 other files written, ")

    gone = (runs["learner"] == TRUTH) & (runs["strategy"] == EQ2)
    runs[~gone].to_parquet(results / "runs.parquet")
    before = snapshot(site)
    publish(results, site)
    touched = changed(before, snapshot(site))
    assert {Path(rel).name for rel in touched if rel.endswith(".png")} == TRUTH_FIGURES | ACROSS
    assert "group-toy_noise_0.2__truth.html" in touched
    assert "group-toy_noise_0.2__file_post.npy.html" not in touched


def test_a_clone_elsewhere_with_another_data_root_finds_the_site_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make benchmark on a fresh clone: another folder, no data root (or another one); the
    # committed site must stay as it is, its manifest included
    here = tmp_path / "here" / "results"
    here.mkdir(parents=True)
    runs, curves = make_tables()
    runs.to_parquet(here / "runs.parquet")
    curves.to_parquet(here / "curves.parquet")
    monkeypatch.setenv("ALCBENCH_DATA", str(tmp_path / "some" / "data"))
    publish(here, here / "site")
    clone = tmp_path / "elsewhere" / "results"
    shutil.copytree(here, clone)
    monkeypatch.setenv("ALCBENCH_DATA", str(tmp_path / "other" / "root"))
    before = snapshot(clone)
    assert list(publish(clone, clone / "site")) == []
    assert changed(before, snapshot(clone)) == set()
