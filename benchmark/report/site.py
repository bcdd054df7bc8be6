"""The results as a self-contained static site: ``alcbench publish RESULTS_DIR --site OUT``.

Pages (flat in ``OUT``, so that every link is a plain relative path and the site works from
``file://`` and any static host; no CDN, no network, no external font):

- ``index.html``: first the headline, a table of the best strategy other than the oracle per
  (dataset, learner) setting with its AUC and efficiency against Random, T=2 before T=10; the
  terms (folded); the per-learner summary; the AUC overview; datasets with no successful run in
  one "not run, and why" list;
- ``group-<name>.html``: per group, the leaderboard as a table that sorts by any column (click
  its header) with a filter box, the curves (PNG, with SVG and PDF links), its failed or
  skipped cells;
- ``downstream.html``: the downstream tables and figures (:mod:`benchmark.downstream.report`),
  when the results hold them;
- ``skipped.html``: the failed or skipped cells, one entry per distinct reason
  (:mod:`benchmark.report.site_skipped`).

No page shows a machine's absolute paths: each is rewritten relative to the data root, the user
cache, the project, the home or the temporary folder (:func:`benchmark.report.site_skipped.scrub_paths`,
a last sweep over every page's HTML before it is written).

Every page has a provenance footer (commits, package versions, the commit date, the machine
that published it) and a layout for phones: on a narrow screen the tables keep the rank,
strategy, AUC and efficiency columns. The figures are copied from the results folder (written
by :func:`benchmark.report.pages.write_report`, which this calls first). This module decides
which pages and files are written; the HTML of each page is built in
:mod:`benchmark.report.site_pages`, the stylesheet and script are :mod:`benchmark.report.site_style`.

Publishing is incremental: ``OUT/manifest.json`` keeps the key of what the site was built from
(the report's inputs key, the report's manifest, the footer) and the sha256 of every file it
wrote. When the key matches and every file still has those bytes, nothing is done; otherwise
each page is rendered and written only when its bytes differ from the file's, and each figure
is copied only when its content differs from the copy's, so unchanged files keep their mtimes.
An up-to-date report (see :mod:`benchmark.report.pages`) costs about nothing to refresh.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from benchmark.downstream import report as downstream_report
from benchmark.report import pages as report
from benchmark.report.figures import overview_pages
from benchmark.report.site_pages import (
    Page,
    downstream_fragment,
    group_page,
    index_page,
    page_document,
    page_footer,
    page_nav,
)
from benchmark.report.site_skipped import machine_prefixes, scrub_paths, skipped_body
from benchmark.report.site_style import CSS, JS
from benchmark.results import incremental, plots
from benchmark.results.incremental import MANIFEST, Manifest, Written, write_if_changed
from benchmark.results.leaderboard import leaderboard
from benchmark.results.tables import load_tables


def publish(
    results_dir: Path, site_dir: Path, *, refresh_report: bool = True, highlight: Collection[str] = ()
) -> Written:
    """Writes the site of ``results_dir`` into ``site_dir``; returns the files written (a
    :class:`benchmark.results.incremental.Written`: ``kept`` lists the site's files left as
    they were). The report (whose figures the pages show) is written first, unless
    ``refresh_report`` is False because the caller just wrote it; ``highlight`` names the
    strategies its figures draw strongly besides the user's (``--highlight``)."""
    results_dir, site_dir = Path(results_dir), Path(site_dir)
    runs, curves = load_tables(results_dir)
    inputs = report.report_inputs(results_dir, runs, curves, highlight)
    if refresh_report:
        report.write_report(results_dir, runs, curves, inputs=inputs, highlight=highlight)
    footer = page_footer(runs)
    report_manifest = results_dir / "plots" / MANIFEST
    prefixes = machine_prefixes()
    # the machine's folders are not part of the key: a clone elsewhere, with another data root,
    # finds the site up to date (its pages name no machine's folder, whichever wrote them)
    key = incremental.digest(
        inputs, report_manifest.read_bytes() if report_manifest.is_file() else None, footer
    )
    manifest = Manifest(site_dir / MANIFEST, site_dir)
    if manifest.up_to_date(key):
        kept = manifest.keep_all(key)
        _prune(site_dir, kept)
        return Written([], kept, what="site")

    board = leaderboard(runs, curves)
    sections = report.sections(runs, board)
    shown = [s for s in sections if len(s.table)]
    empty = [s for s in sections if not len(s.table)]
    down_sections, down_notes, _ = downstream_report.render(results_dir, draw=False)

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

    files: list[tuple[Path, bytes]] = []
    figures = [f"plots/{s.file_name}{suffix}" for s in shown for suffix in ("", "_mislabelled")]
    # the AUC overview, one per dataset, and its copy under the name earlier sites had
    figures += [f"plots/{stem}" for stem, _, _ in overview_pages(shown, board)]
    figures += ["plots/auc_overview"] if shown else []
    from benchmark.report import summary_section  # the "Across settings" heat map

    figures += summary_section.site_figures(runs)
    for stem in figures:
        for ext in (".png", ".svg", ".pdf"):
            files.append((site_dir / f"{stem}{ext}", _read_figure(results_dir / f"{stem}{ext}")))
    for sec in down_sections:
        for rel, _ in sec.plots:
            for path in [Path(rel), *plots.vector_paths(Path(rel))]:
                files.append((site_dir / path, _read_figure(results_dir / path)))
    nav = page_nav(bool(down_sections))
    for asset, text in (("assets/site.css", CSS), ("assets/site.js", JS)):
        files.append((site_dir / asset, text.encode()))
    for page in pages:
        files.append((site_dir / page.name, _scrubbed(page_document(page, nav, footer), prefixes)))
    written: list[Path] = []
    for path, data in files:
        if write_if_changed(path, data):
            written.append(path)
        manifest.record_page(path, data)
    # pages and figures of groups an earlier site had and these results have not
    _prune(site_dir, [path for path, _ in files])
    manifest.inputs = key
    if manifest.save():
        written.append(manifest.path)
    return Written(written, [path for path, _ in files], what="site")


def _prune(site_dir: Path, produced: list[Path]) -> None:
    report.prune_stale(site_dir, ("group-*.html",), produced)
    report.prune_stale(site_dir / "plots", report.GROUP_FIGURES, produced)


def _scrubbed(document: str, prefixes: list[tuple[str, str]]) -> bytes:
    """The page with no absolute machine path left (the final sweep: the data roots, the user
    cache, the project, home and temporary folders, any ``/work``, ``/home``, ...)."""
    return scrub_paths(document, escaped=True, prefixes=prefixes).encode("utf-8")


def _read_figure(source: Path) -> bytes:
    if not source.is_file():
        raise FileNotFoundError(f"{source}: a figure the site shows is missing (run `alcbench report` first)")
    return source.read_bytes()
