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
- ``downstream.html``: the downstream tables and figures (:mod:`benchmark.downstream_report`),
  when the results hold them;
- ``skipped.html``: every failed or skipped cell with its full reason.

Every page has a provenance footer (commits, package versions, the commit date, the machine
that published it) and a layout for phones: on a narrow screen the tables keep the rank,
strategy, AUC and efficiency columns. The figures are copied from the results folder (written
by :func:`benchmark.report.write_report`, which this calls first).
"""

from __future__ import annotations

import html
import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark import downstream_report, plots, report
from benchmark.atomic import write_bytes
from benchmark.leaderboard import is_finite, leaderboard
from benchmark.learner_summary import SELECTORS, learner_summary
from benchmark.results import commit_date, load_tables

#: Columns that stay on a phone's screen (the rest hide below :data:`NARROW_PX`).
KEY_COLUMNS = ("rank", "strategy", "AUC", "efficiency")
NARROW_PX = 700

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9d9de; --bg-alt: #f6f6f8; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  margin: 0; line-height: 1.45; }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1rem; }
header nav a { margin-right: 1rem; }
a { color: var(--accent); }
h1 { font-size: 1.6rem; margin: 0.4rem 0; overflow-wrap: anywhere; }
h2, h3 { overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
p.note { color: var(--muted); max-width: 60rem; font-size: 0.92rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr)); gap: 0.8rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 0.7rem 0.9rem; }
.card h3 { font-size: 1rem; margin: 0 0 0.3rem; overflow-wrap: anywhere; }
.card .big { font-size: 1.35rem; font-variant-numeric: tabular-nums; white-space: nowrap; }
.card .detail { color: var(--muted); font-size: 0.85rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.88rem; }
th, td { border-bottom: 1px solid var(--line); padding: 0.3rem 0.5rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg-alt); position: sticky; top: 0; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: var(--muted); font-size: 0.8em; }
th[aria-sort="ascending"]::after { content: " \\2191"; }
th[aria-sort="descending"]::after { content: " \\2193"; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.name { overflow-wrap: anywhere; min-width: 16rem; }
tr.hidden { display: none; }
input.filter { font: inherit; padding: 0.3rem 0.5rem; width: min(24rem, 100%); margin: 0.3rem 0; }
figure { margin: 1rem 0; }
figure img { width: 100%; max-width: 1100px; height: auto; border: 1px solid var(--line); }
main img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 0.85rem; }
footer { color: var(--muted); font-size: 0.8rem; border-top: 1px solid var(--line); margin-top: 3rem;
  padding-top: 0.8rem; padding-bottom: 2rem; }
ul.reasons li { margin-bottom: 0.4rem; }
@media (max-width: 700px) {
  .opt { display: none; }
  table { font-size: 0.8rem; }
  th, td { padding: 0.25rem 0.3rem; }
  td.name { min-width: 7rem; }
  header nav a { display: inline-block; margin-bottom: 0.3rem; }
}
"""

JS = """
(function () {
  function value(cell, numeric) {
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (!numeric) { return raw.toLowerCase(); }
    var v = parseFloat(raw);
    return isNaN(v) ? Infinity : v;
  }
  function sortBy(table, index, th) {
    var numeric = th.classList.contains("num");
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[index], numeric), y = value(b.cells[index], numeric);
      if (x < y) { return ascending ? -1 : 1; }
      if (x > y) { return ascending ? 1 : -1; }
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.classList.add("sortable");
      th.setAttribute("title", "sort by this column");
      th.addEventListener("click", function () { sortBy(table, index, th); });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.classList.toggle("hidden", q !== "" && r.textContent.toLowerCase().indexOf(q) < 0);
      });
    });
  });
})();
"""


@dataclass(frozen=True)
class Page:
    """One page of the site: its file name, title and body HTML."""

    name: str
    title: str
    body: str


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

    pages = [_index(shown, empty, board, runs, bool(down_sections))]
    pages += [_group_page(s, report.group_rows(board, s), down_sections) for s in shown]
    if down_sections:
        pages.append(
            Page("downstream.html", "What cleaning buys downstream", _downstream(down_sections, down_notes))
        )
    pages.append(Page("skipped.html", "Failed and skipped cells", _skipped(runs)))

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
    footer = _footer(runs)
    nav = _nav(bool(down_sections))
    for asset, text in (("assets/site.css", CSS), ("assets/site.js", JS)):
        write_bytes(site_dir / asset, text.encode())
        written.append(site_dir / asset)
    for page in pages:
        path = site_dir / page.name
        write_bytes(path, _document(page, nav, footer).encode("utf-8"))
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


def _e(text: object) -> str:
    return html.escape(str(text))


def _document(page: Page, nav: str, footer: str) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(page.title)} · alcbench</title>",
            '<link rel="stylesheet" href="assets/site.css">',
            "</head>",
            "<body>",
            f"<header>{nav}<h1>{_e(page.title)}</h1></header>",
            f"<main>{page.body}</main>",
            f"<footer>{footer}</footer>",
            '<script src="assets/site.js"></script>',
            "</body>",
            "</html>",
            "",
        ]
    )


def _nav(downstream: bool) -> str:
    links = [("index.html", "Leaderboard")]
    if downstream:
        links.append(("downstream.html", "Downstream"))
    links.append(("skipped.html", "Failed and skipped"))
    return "<nav>" + "".join(f'<a href="{href}">{_e(text)}</a>' for href, text in links) + "</nav>"


def _footer(runs: pd.DataFrame) -> str:
    """Commits and package versions of the runs, the date of the current commit, and the
    machine that published the site (no clock time: the same results give the same pages)."""

    def values(column: str) -> str:
        if column not in runs:
            return "—"
        found = sorted({str(v) for v in runs[column].dropna() if str(v)})
        return ", ".join(found) or "—"

    date = commit_date()
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    parts = [
        f"alcbench {values('alcbench_version')}",
        f"commit {values('commit')} (committed {date})",
        f"numpy {values('numpy_version')}",
        f"torch {values('torch_version')}",
        f"cleanlab {values('cleanlab_version')}",
        f"published on {machine}",
    ]
    return " · ".join(_e(p) for p in parts)


# --------------------------------------------------------------------------- pages


def _headline(rows: pd.DataFrame) -> tuple[str, str, str] | None:
    """(strategy, AUC text, efficiency text) of the best strategy other than the oracle."""
    candidates = rows[rows["strategy"].astype(str).str.split("[").str[0] != "oracle"]
    if not len(candidates):
        return None
    best = candidates.sort_values("rank").iloc[0]
    eff = best["efficiency_mean"]
    return (
        str(best["strategy"]),
        plots.format_pm(best["auc_mean"], best["auc_ci"], 4),
        f"{float(eff):.2f}× Random" if is_finite(eff) else "efficiency —",
    )


def _index(
    shown: Sequence[report.Section],
    empty: Sequence[report.Section],
    board: pd.DataFrame,
    runs: pd.DataFrame,
    downstream: bool,
) -> Page:
    cards = []
    for s in shown:
        head = _headline(report.group_rows(board, s))
        detail = (
            f'<div class="big">{_e(head[1])}</div>'
            f'<div class="detail">best: {_e(head[0])}<br>{_e(head[2])}</div>'
            if head
            else '<div class="detail">no strategy besides the oracle</div>'
        )
        cards.append(
            f'<div class="card"><h3><a href="group-{_e(s.file_name)}.html">{_e(s.title)}</a></h3>'
            f"{detail}</div>"
        )
    parts = [
        f'<p class="note">{_e(report.PREAMBLE)}</p>',
        f'<div class="cards">{"".join(cards)}</div>' if cards else "<p>No successful runs.</p>",
    ]
    if shown:
        parts.append(
            _figure(
                "plots/auc_overview",
                "AUC of every strategy per group (points: mean over seeds; whiskers: 95 % CI)",
            )
        )
    summary = learner_summary(runs, board)
    if len(summary):
        parts.append("<h2>Learners</h2>")
        parts.append(f'<p class="note">{_e(report.LEARNERS_PREAMBLE)}</p>')
        parts.append(_learners_table(summary))
    if downstream:
        parts.append(
            '<h2>Downstream</h2><p><a href="downstream.html">What cleaning buys</a>: models re-trained, '
            "evaluated and selected with the cleaned labels.</p>"
        )
    if empty:
        parts.append("<h2>Not run, and why</h2>")
        parts.append(_not_run(empty, runs))
    return Page("index.html", "Active label cleaning leaderboard", "\n".join(parts))


def _not_run(empty: Sequence[report.Section], runs: pd.DataFrame) -> str:
    """One entry per dataset whose groups have no successful run, with its distinct reasons."""
    items = []
    for dataset in dict.fromkeys(s.dataset for s in empty):
        mine = runs[(runs["dataset"] == dataset) & (runs["status"] != "ok")]
        reasons = sorted({report.first_line(e) for e in mine["error"]})
        learners = ", ".join(sorted({s.learner for s in empty if s.dataset == dataset}))
        items.append(
            f"<li><strong>{_e(dataset)}</strong> (learners {_e(learners)}): "
            + "; ".join(_e(r) for r in reasons)
            + ' — <a href="skipped.html">full reasons</a></li>'
        )
    return '<ul class="reasons">' + "".join(items) + "</ul>"


def _learners_table(summary: pd.DataFrame) -> str:
    head = ["dataset", "learner", "accuracy (%)", *[f"{s} AUC" for s in SELECTORS], "fit s / seed"]
    rows = []
    for r in summary.to_dict("records"):
        cells = [
            ("name", r["dataset"], None),
            ("name", r["learner"], None),
            ("num", f"{100 * r['accuracy']:.1f}" if is_finite(r["accuracy"]) else "—", r["accuracy"]),
        ]
        for s in SELECTORS:
            auc = r[f"{s}_auc"]
            text = plots.format_pm(auc, r[f"{s}_ci"], 4)
            if is_finite(r[f"{s}_efficiency"]):
                text += f" ({r[f'{s}_efficiency']:.2f}×)"
            cells.append(("num", text, auc))
        cells.append(
            ("num", f"{r['fit_seconds']:.0f}" if is_finite(r["fit_seconds"]) else "—", r["fit_seconds"])
        )
        rows.append(cells)
    return _table("learners", head, rows, numeric={i for i in range(2, len(head))})


def _table(
    table_id: str,
    head: Sequence[str],
    rows: Sequence[Sequence[tuple[str, object, object]]],
    numeric: set[int],
    optional: frozenset[int] | set[int] = frozenset(),
) -> str:
    """A sortable table; each cell is (class, text, sort value or None)."""
    ths = []
    for i, h in enumerate(head):
        cls = " ".join(c for c in ("num" if i in numeric else "", "opt" if i in optional else "") if c)
        ths.append(f'<th scope="col"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{_e(h)}</th>')
    body = []
    for cells in rows:
        tds = []
        for i, (cls, text, sort) in enumerate(cells):
            classes = " ".join(c for c in (cls, "opt" if i in optional else "") if c)
            value = f' data-value="{float(sort)!r}"' if is_finite(sort) else ""  # type: ignore[arg-type]
            tds.append(f'<td class="{classes}"{value}>{_e(text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<input class="filter" type="search" placeholder="filter rows" aria-label="filter rows" '
        f'data-table="{table_id}">'
        f'<div class="table-wrap"><table class="sortable" id="{table_id}">'
        f"<thead><tr>{''.join(ths)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _group_page(
    section: report.Section, rows: pd.DataFrame, downstream: Sequence[downstream_report.Section] = ()
) -> Page:
    display = section.table
    records = rows.to_dict("records")
    sort_values = {
        "rank": "rank",
        "AUC": "auc_mean",
        "final acc. (%)": "final_accuracy_mean",
        "mislabelled corrected (%)": "pct_mislabelled_corrected_mean",
        "efficiency": "efficiency_mean",
    }
    columns = list(display.columns)
    # the key columns first, so that a phone shows them without scrolling
    order = [c for c in KEY_COLUMNS if c in columns] + [c for c in columns if c not in KEY_COLUMNS]
    numeric = {i for i, c in enumerate(order) if c not in ("strategy",)}
    optional = {i for i, c in enumerate(order) if c not in KEY_COLUMNS}
    body = []
    for rec, (_, shown) in zip(records, display.iterrows(), strict=True):
        cells = []
        for c in order:
            key = sort_values.get(c)
            if key is None and c.startswith("annotations to"):
                key = "annotations_to_target_mean"
            cells.append(("name" if c == "strategy" else "num", shown[c], rec.get(key) if key else None))
        body.append(cells)
    parts = [
        f'<p class="note">{_e(report.PREAMBLE)} Click a column header to sort; type in the box to '
        "filter.</p>",
        _table("leaderboard", order, body, numeric=numeric, optional=optional),
        _figure(f"plots/{section.file_name}", "Label accuracy against the share of the budget spent"),
        _figure(f"plots/{section.file_name}_mislabelled", "Mislabelled samples left, clear and ambiguous"),
    ]
    mine = [d for d in downstream if (d.dataset, d.learner) == (section.dataset, section.learner)]
    if mine:
        parts.append("<h2>What cleaning buys downstream</h2>")
        parts.append(_downstream(mine, []))
    if section.failures:
        parts.append("<h2>Failed or skipped cells</h2><ul>")
        parts += [f"<li>{_e(f.replace('`', ''))}</li>" for f in section.failures]
        parts.append('</ul><p><a href="skipped.html">Full reasons</a></p>')
    return Page(f"group-{section.file_name}.html", section.title, "\n".join(parts))


def _figure(stem: str, caption: str) -> str:
    return (
        f'<figure><img src="{_e(stem)}.png" alt="{_e(caption)}">'
        f'<figcaption>{_e(caption)} · <a href="{_e(stem)}.svg">SVG</a> · <a href="{_e(stem)}.pdf">PDF</a>'
        "</figcaption></figure>"
    )


def _downstream(secs: Sequence[downstream_report.Section], notes: list[str]) -> str:
    return (
        downstream_report.html_fragment(secs, notes)
        .replace("<table", '<div class="table-wrap"><table')
        .replace("</table>", "</table></div>")
    )


def _skipped(runs: pd.DataFrame) -> str:
    bad = runs[runs["status"] != "ok"]
    if not len(bad):
        return "<p>Every cell ran.</p>"
    items = []
    for (dataset, learner, status, error), g in bad.groupby(
        ["dataset", "learner", "status", "error"], sort=True
    ):
        cells = ", ".join(f"{s} seed {int(seed)}" for s, seed in zip(g["strategy"], g["seed"], strict=True))
        items.append(
            f"<li><strong>{_e(dataset)} / {_e(learner)}</strong>: {_e(status)} ({len(g)} cells: {_e(cells)})"
            f"<pre>{_e(error)}</pre></li>"
        )
    return (
        f'<p class="note">{len(bad)} cells did not run to the end.</p><ul class="reasons">'
        + "".join(items)
        + "</ul>"
    )
