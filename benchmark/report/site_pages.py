"""The HTML of the static site's pages (:mod:`benchmark.report.site` writes them): the frame
every page shares (head, navigation, provenance footer), the index (group cards, AUC overview,
learners table, "not run, and why"), the group pages (sortable leaderboard table, curves, failed
cells), the downstream fragment and the failed-and-skipped page."""

from __future__ import annotations

import html
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from benchmark.downstream import report as downstream_report
from benchmark.report import pages as report
from benchmark.results import plots
from benchmark.results.leaderboard import is_finite
from benchmark.results.learner_summary import SELECTORS, learner_summary
from benchmark.results.tables import commit_date

#: Columns that stay on a phone's screen (the rest hide below
#: :data:`benchmark.report.site_style.NARROW_PX`).
KEY_COLUMNS = ("rank", "strategy", "AUC", "efficiency")


@dataclass(frozen=True)
class Page:
    """One page of the site: its file name, title and body HTML."""

    name: str
    title: str
    body: str


def _e(text: object) -> str:
    return html.escape(str(text))


def page_document(page: Page, nav: str, footer: str) -> str:
    """The whole HTML document of ``page``, with the site's stylesheet, script, navigation and footer."""
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


def page_nav(downstream: bool) -> str:
    """The navigation bar; it links the downstream page only when the site has one."""
    links = [("index.html", "Leaderboard")]
    if downstream:
        links.append(("downstream.html", "Downstream"))
    links.append(("skipped.html", "Failed and skipped"))
    return "<nav>" + "".join(f'<a href="{href}">{_e(text)}</a>' for href, text in links) + "</nav>"


def page_footer(runs: pd.DataFrame) -> str:
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


def index_page(
    shown: Sequence[report.Section],
    empty: Sequence[report.Section],
    board: pd.DataFrame,
    runs: pd.DataFrame,
    downstream: bool,
) -> Page:
    """``index.html``: a card per group with a result, the AUC overview, the learners table, the
    downstream link and the datasets that did not run."""
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


def group_page(
    section: report.Section, rows: pd.DataFrame, downstream: Sequence[downstream_report.Section] = ()
) -> Page:
    """``group-<name>.html``: the group's sortable leaderboard, its figures, its downstream results and
    its failed or skipped cells."""
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
        parts.append(downstream_fragment(mine, []))
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


def downstream_fragment(secs: Sequence[downstream_report.Section], notes: list[str]) -> str:
    """The downstream tables and figures as HTML, each table wrapped to scroll on a narrow screen."""
    return (
        downstream_report.html_fragment(secs, notes)
        .replace("<table", '<div class="table-wrap"><table')
        .replace("</table>", "</table></div>")
    )


def skipped_body(runs: pd.DataFrame) -> str:
    """The body of ``skipped.html``: every failed or skipped cell with its full reason."""
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
