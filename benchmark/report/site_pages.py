"""The HTML of the static site's pages (:mod:`benchmark.report.site` writes them): the frame
every page shares (head, navigation, provenance footer), the index (the best strategy per
setting first, the terms folded, learners table, AUC overview, "not run, and why"), the group
pages (sortable leaderboard table, curves, failed cells) and the downstream fragment; the
failed-and-skipped page is :mod:`benchmark.report.site_skipped`.

Tables fit the page: a number's ``± CI`` and bracket wrap below it, a spec breaks after its
``[``, ``,`` and ``=``, and on a phone the optional columns hide (``.opt``, see
:mod:`benchmark.report.site_style`)."""

from __future__ import annotations

import html
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from benchmark.downstream import report as downstream_report
from benchmark.report import pages as report
from benchmark.report.site_skipped import scrub_paths
from benchmark.results import plots
from benchmark.results.leaderboard import is_finite
from benchmark.results.learner_summary import SELECTORS, learner_summary
from benchmark.results.tables import commit_date

#: Columns that stay on a phone's screen (the rest hide below
#: :data:`benchmark.report.site_style.NARROW_PX`).
KEY_COLUMNS = ("rank", "strategy", "AUC", "efficiency")
#: Shorter headers for the group table's widest columns (the full name is the header's tooltip).
SHORT_HEADERS = {
    "first picks: wrong / ambiguous / clear (%)": "first picks (%): wrong / amb. / clear",
    "left: clear / ambiguous": "left: clear / amb.",
}


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
            # a unit stays with its number ("15.4 % noise") when the title wraps
            f"<header>{nav}<h1>{_e(page.title).replace(' %', '&nbsp;%')}</h1></header>",
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


@dataclass(frozen=True)
class Best:
    """A setting's headline: its best strategy other than the oracle, those tied with it on
    rank, its AUC and its efficiency against Random (means, and the texts with their CIs)."""

    strategy: str
    tied: list[str]
    auc: object
    auc_text: str
    efficiency: object
    efficiency_text: str


def _headline(rows: pd.DataFrame) -> Best | None:
    """The best strategy other than the oracle (None when only the oracle ran)."""
    candidates = rows[rows["strategy"].astype(str).str.split("[").str[0] != "oracle"]
    if not len(candidates):
        return None
    ordered = candidates.sort_values("rank", kind="mergesort")
    best = ordered.iloc[0]
    return Best(
        strategy=str(best["strategy"]),
        tied=[str(s) for s in ordered["strategy"][ordered["rank"] == best["rank"]].iloc[1:]],
        auc=best["auc_mean"],
        auc_text=plots.format_pm(best["auc_mean"], best["auc_ci"], 4),
        efficiency=best["efficiency_mean"],
        efficiency_text=_times(plots.format_pm(best["efficiency_mean"], best["efficiency_ci"], 2)),
    )


def _times(text: str) -> str:
    """``"3.26 ± 0.25"`` as ``"3.26× ± 0.25"``: an efficiency's mean with its unit."""
    if text == "—":
        return text
    return text.replace(" ±", "× ±", 1) if "±" in text else text + "×"


def _best_table(shown: Sequence[report.Section], board: pd.DataFrame) -> str:
    """The index's headline: per setting (dataset × learner), the best strategy besides the
    oracle, its AUC and its efficiency against Random; a row links the setting's page. On a
    phone the best strategy goes below the setting, and its own column hides."""
    rows: list[list[tuple[str, object, object]]] = []
    from benchmark.results.names import display_names  # display names, the spec beside or as tooltip

    named = display_names(board)
    for s in shown:
        head = _headline(report.group_rows(board, s))
        strategy = "" if head is None else head.strategy
        best = "only the oracle ran" if head is None else _e(named["strategy"].get(strategy, strategy))
        if head is not None and best != _e(strategy):
            best += f'<span class="sub">{_breakable(head.strategy)}</span>'
        if head is not None and head.tied:
            best += f'<span class="sub">tied: {", ".join(_breakable(t) for t in head.tied)}</span>'
        data, learner = named["dataset"].get(s.dataset, s.dataset), named["learner"].get(s.learner, s.learner)
        link = Html(
            f'<a href="group-{_e(s.file_name)}.html" title="{_e(s.dataset)}">{_e(data)}</a>'
            f'<span class="sub" title="{_e(s.learner)}">{_e(learner)}</span>'
            f'<span class="phone-only">best: {best}</span>'
        )
        rows.append(
            [
                ("name", link, None),
                ("name", Html(best), None),
                ("num", head.auc_text if head else "—", head.auc if head else None),
                ("num", head.efficiency_text if head else "—", head.efficiency if head else None),
            ]
        )
    header = ["setting", "best strategy", "AUC", "vs Random"]
    return _table("best", header, rows, numeric={2, 3}, optional={1}, filter_box=False)


def index_page(
    shown: Sequence[report.Section],
    empty: Sequence[report.Section],
    board: pd.DataFrame,
    runs: pd.DataFrame,
    downstream: bool,
) -> Page:
    """``index.html``: first the headline (the best strategy per setting), then the terms
    (folded), the learners table, the AUC overview, the downstream link and the datasets that
    did not run."""
    parts = []
    if shown:
        parts.append(
            '<p class="lead">The best strategy per setting (dataset × learner), the oracle aside: '
            "its AUC and its efficiency against Random (± 95 % CI over seeds). A setting's page "
            "has every strategy.</p>"
        )
        parts.append(_best_table(shown, board))
    else:
        parts.append("<p>No successful runs.</p>")
    # <!-- across-settings -->: the cross-setting summary ("Across settings") goes right here,
    # after the headline and before the terms.
    from benchmark.report import summary_section  # --- Across settings

    parts.append(summary_section.site_fragment(runs))  # --- end Across settings
    parts.append(_terms(report.PREAMBLE))
    summary = learner_summary(runs, board)
    if len(summary):
        parts.append("<h2>Learners</h2>")
        parts.append(f'<p class="note">{_e(report.LEARNERS_PREAMBLE)}</p>')
        parts.append(_learners_table(summary))
    if shown:
        parts.append("<h2>Every strategy</h2>")
        from benchmark.report.figures import overview_pages  # one figure per dataset
        from benchmark.results.names import display_names

        datasets = display_names(board)["dataset"]
        for stem, dataset, _ in overview_pages(shown, board):
            caption = f"AUC of every strategy per learner: {datasets.get(dataset, dataset)} (mean, 95 % CI)"
            parts.append(_figure(f"plots/{stem}", caption))
    if downstream:
        parts.append(
            '<h2>Downstream</h2><p><a href="downstream.html">What cleaning buys</a>: models re-trained, '
            "evaluated and selected with the cleaned labels.</p>"
        )
    if empty:
        parts.append("<h2>Not run, and why</h2>")
        parts.append(_not_run(empty, runs))
    return Page("index.html", "Active label cleaning leaderboard", "\n".join(parts))


def _terms(text: str) -> str:
    """The glossary, folded away under "Terms"."""
    return f'<details class="terms"><summary>Terms</summary><p class="note">{_e(text)}</p></details>'


def _not_run(empty: Sequence[report.Section], runs: pd.DataFrame) -> str:
    """One entry per dataset whose groups have no successful run, with its distinct reasons."""
    items = []
    for dataset in dict.fromkeys(s.dataset for s in empty):
        mine = runs[(runs["dataset"] == dataset) & (runs["status"] != "ok")]
        reasons = sorted({report.first_line(scrub_paths(str(e))) for e in mine["error"]})
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
    # a phone keeps the setting, the accuracy and the first selector's AUC
    optional = set(range(4, len(head)))
    return _table("learners", head, rows, numeric={i for i in range(2, len(head))}, optional=optional)


class Html(str):
    """Text that is HTML already: a table cell that :func:`_table` does not escape."""


def _breakable(text: str) -> str:
    """``text`` escaped, with a line-break opportunity after each ``[``, ``,`` and ``_`` of a
    spec, and after an ``=`` whose value is long (``method=<wbr>normalized_<wbr>margin``, not
    ``temperature=<wbr>2``)."""
    escaped = _e(text)
    for ch in ("[", ",", "_"):
        escaped = escaped.replace(ch, ch + "<wbr>")
    return _LONG_VALUE.sub("=<wbr>", escaped)


_LONG_VALUE = re.compile(r"=(?=[^\],=<]{5,})")


def _number(text: str) -> str:
    """A number cell's text as ``<span class="v">4.84×<span class="pm"> ± 0.28</span></span>``
    and ``<span class="x">(3/5 never)</span>``: the bracket wraps below the value, and on a phone
    the ``±`` part too (see :mod:`benchmark.report.site_style`)."""
    value, _, bracket = text.partition(" (")
    mean, _, pm = value.partition(" ± ")
    out = f'<span class="v">{_e(mean)}' + (f'<span class="pm"> ± {_e(pm)}</span>' if pm else "") + "</span>"
    return out + (f' <span class="x">({_e(bracket)}</span>' if bracket else "")


def _table(
    table_id: str,
    head: Sequence[str],
    rows: Sequence[Sequence[tuple[str, object, object]]],
    numeric: set[int],
    optional: frozenset[int] | set[int] = frozenset(),
    *,
    titles: Sequence[str | None] = (),
    filter_box: bool = True,
    wide: bool = False,
) -> str:
    """A sortable table; each cell is (class, text, sort value or None): a "num" cell's text
    wraps between its mean, its ``±`` part and its bracket; a "name" cell's after the parts of
    a spec; an :class:`Html` text goes in as it is. ``optional`` columns hide on a phone;
    ``titles`` are the headers' tooltips (their full names)."""
    ths = []
    for i, h in enumerate(head):
        cls = " ".join(c for c in ("num" if i in numeric else "", "opt" if i in optional else "") if c)
        title = titles[i] if i < len(titles) else None
        attrs = (f' class="{cls}"' if cls else "") + (f' title="{_e(title)}"' if title else "")
        ths.append(f'<th scope="col"{attrs}>{_breakable(h)}</th>')
    body = []
    for cells in rows:
        tds = []
        for i, (cls, text, sort) in enumerate(cells):
            classes = " ".join(c for c in (cls, "opt" if i in optional else "") if c)
            value = f' data-value="{float(sort)!r}"' if is_finite(sort) else ""  # type: ignore[arg-type]
            if isinstance(text, Html):
                inner = str(text)
            elif cls == "num":
                inner = _number(str(text))
            else:
                inner = _breakable(str(text))
            tds.append(f'<td class="{classes}"{value}>{inner}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    box = (
        f'<input class="filter" type="search" placeholder="filter rows" aria-label="filter rows" '
        f'data-table="{table_id}">'
        if filter_box
        else ""
    )
    classes = "sortable wide" if wide else "sortable"
    return (
        f'{box}<div class="table-wrap"><table class="{classes}" id="{table_id}">'
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
    headers = [SHORT_HEADERS.get(c, c) for c in order]
    titles = [c if c != h else None for c, h in zip(order, headers, strict=True)]
    parts = [
        '<p class="note">Click a column header to sort; type in the box to filter.</p>',
        _terms(report.PREAMBLE),
        _table("leaderboard", headers, body, numeric=numeric, optional=optional, titles=titles),
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
    spec = f"<p class=spec><code>{_e(section.dataset)}</code> · <code>{_e(section.learner)}</code></p>"
    return Page(f"group-{section.file_name}.html", section.display_title, "\n".join([spec, *parts]))


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
