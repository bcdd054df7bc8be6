"""The results as a self-contained static site: ``alcbench publish RESULTS_DIR --site OUT``.

Pages (flat in ``OUT``, so that every link is a plain relative path and the site works from
``file://`` and any static host; no CDN, no network, no external font):

- ``index.html``: one card per (dataset, learner) group with its headline (the best strategy
  other than the oracle, its AUC and efficiency against Random), T=2 before T=10; the AUC
  overview; the per-learner summary; datasets with no successful run in one "not run, and why"
  list;
- ``group-<name>.html``: per group, the leaderboard as a table that sorts by any column (click
  its header) with a filter box, the curves (PNG, with SVG and PDF links), its failed or
  skipped cells;
- ``downstream.html``: the downstream tables and figures (:mod:`benchmark.downstream.report`),
  when the results hold them;
- ``skipped.html``: every failed or skipped cell with its full reason.

Every page has a provenance footer (commits, package versions, the commit date, the machine
that published it) and a layout for phones: on a narrow screen the tables keep the rank,
strategy, AUC and efficiency columns. The figures are copied from the results folder (written
by :func:`benchmark.report.pages.write_report`, which this calls first). This module decides
which pages and files are written; the HTML of each page is built in
:mod:`benchmark.report.site_pages`, the stylesheet and script are :mod:`benchmark.report.site_style`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmark.atomic import write_bytes
from benchmark.downstream import report as downstream_report
from benchmark.report import pages as report
from benchmark.report.site_pages import (
    Page,
    downstream_fragment,
    group_page,
    index_page,
    page_document,
    page_footer,
    page_nav,
    skipped_body,
)
from benchmark.report.site_style import CSS, JS
from benchmark.results import plots
from benchmark.results.leaderboard import leaderboard
from benchmark.results.tables import load_tables


def publish(results_dir: Path, site_dir: Path, *, refresh_report: bool = True) -> list[Path]:
    """Writes the site of ``results_dir`` into ``site_dir``; returns the files written. The
    report (whose figures the pages show) is written first, unless ``refresh_report`` is False
    because the caller just wrote it."""
    results_dir, site_dir = Path(results_dir), Path(site_dir)
    runs, curves = load_tables(results_dir)
    if refresh_report:
        report.write_report(results_dir, runs, curves)
    board = leaderboard(runs, curves)
    sections = report.sections(runs, board)
    shown = [s for s in sections if len(s.table)]
    empty = [s for s in sections if not len(s.table)]
    down_sections, down_notes, _ = downstream_report.render(results_dir)

    pages = [index_page(shown, empty, board, runs, bool(down_sections))]
    pages += [group_page(s, report.group_rows(board, s), down_sections) for s in shown]
    if down_sections:
        pages.append(
            Page(
                "downstream.html",
                "What cleaning buys downstream",
                downstream_fragment(down_sections, down_notes),
            )
        )
    pages.append(Page("skipped.html", "Failed and skipped cells", skipped_body(runs)))

    written: list[Path] = []
    figures = [f"plots/{s.file_name}{suffix}" for s in shown for suffix in ("", "_mislabelled")]
    figures += ["plots/auc_overview"] if shown else []
    for stem in figures:
        for ext in (".png", ".svg", ".pdf"):
            written.append(_copy(results_dir / f"{stem}{ext}", site_dir / f"{stem}{ext}"))
    for sec in down_sections:
        for rel, _ in sec.plots:
            for path in [Path(rel), *plots.vector_paths(Path(rel))]:
                written.append(_copy(results_dir / path, site_dir / path))
    footer = page_footer(runs)
    nav = page_nav(bool(down_sections))
    for asset, text in (("assets/site.css", CSS), ("assets/site.js", JS)):
        write_bytes(site_dir / asset, text.encode())
        written.append(site_dir / asset)
    for page in pages:
        path = site_dir / page.name
        write_bytes(path, page_document(page, nav, footer).encode("utf-8"))
        written.append(path)
    # pages and figures of groups an earlier site had and these results have not
    report.prune_stale(site_dir, ("group-*.html",), written)
    report.prune_stale(site_dir / "plots", report.GROUP_FIGURES, written)
    return written


def _copy(source: Path, target: Path) -> Path:
    if not source.is_file():
        raise FileNotFoundError(f"{source}: a figure the site shows is missing (run `alcbench report` first)")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
