"""The "Across settings" summary in the report and on the site: ``summary.csv``, ``summary.md``,
``plots/summary.png`` (with SVG and PDF) and a section at the top of ``leaderboard.md`` and
``leaderboard.html`` and of the site's index.

The numbers come from :mod:`benchmark.results.summary` (pure aggregation), the heat map from
:mod:`benchmark.results.summary_plot`. This module decides which strategies are built-in (the
registry's strategy plugins that ship with alcbench, not a user's on ``ALCBENCH_PLUGIN_PATH`` or
an entry point, and not one that reads the truth, the oracle), formats the tables and keeps the
report incremental: the figure's key (:func:`benchmark.results.incremental.digest`) is the heat
map's frame and the code that draws it, so it is drawn again only when that changes, and the
pages are written by the report's own compare-before-write loop.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.style
import pandas as pd

from benchmark import registry
from benchmark.results import incremental, summary
from benchmark.results.incremental import Manifest, figure_files
from benchmark.results.leaderboard import is_finite
from benchmark.results.names import is_user_strategy
from benchmark.results.plots import markdown_table
from benchmark.results.summary_plot import plot_summary

#: The heat map, under the report's ``plots/`` (and the site's).
FIGURE = "plots/summary"
#: What draws the heat map: in its key.
FIGURE_CODE = ("benchmark.results.summary_plot", "benchmark.results.plots")
#: Rows shown at the top of the leaderboard (summary.md has them all).
TOP = 10
HEADING = "Across settings"
CAPTION = "AUC difference against Random per strategy and setting (strategies by mean rank)"
EQ2_SHORT = "Eq. 2"

NOTE = (
    f"One row per strategy (an active run is a strategy of its own), ranked by its mean rank over "
    f"the settings (dataset, learner) it ran in (1 = best AUC in a setting, ties averaged). Δ is "
    f"the strategy's AUC minus the reference's, paired over the seeds both ran: in a setting, a "
    f"seed fixes the noisy labels, the posteriors and the expert's draws for every strategy "
    f"alike, so the per-seed differences take the seed's luck out. Per setting, the 95 % paired "
    f"t interval over the n shared seeds (n - 1 degrees of freedom) decides a win (the interval "
    f"lies above 0), a loss (below 0) or a tie (it includes 0); W/T/L counts them over the "
    f"settings compared (a setting where the strategy or the reference did not run is left out). "
    f"There is no correction for testing in many settings: the counts describe, they do not "
    f"test a family. The mean Δ is the mean over those settings; its interval takes the settings "
    f"as fixed and combines their seed-level uncertainty only (how Δ varies from setting to "
    f"setting shows in W/T/L and the heat map). Mean ranks over different sets of settings (an "
    f"active run ran where its learner re-fits) are not directly comparable: the number of "
    f"settings is beside each. References: {summary.EQ2} (the "
    f"paper's Eq. 2) and the best built-in strategy of each setting (by mean AUC, other than the "
    f"strategy itself; not the oracle, which reads the truth, and not a user's plugin). The "
    f"settings of the truth learner (posteriors = the true label distribution, an upper bound "
    f"on any learner) are included."
)


def builtin_strategies() -> frozenset[str]:
    """Names of the registered strategy plugins this project ships
    (:func:`benchmark.results.names.is_user_strategy` is false: the rule the figures highlight
    by) that do not read the truth."""
    return frozenset(
        name
        for name, info in registry.discover("strategy").items()
        if info.cls is not None
        and not is_user_strategy(name)
        and "truth" not in getattr(info.cls, "requires", ())
    )


@dataclass(frozen=True)
class Across:
    """The per-setting comparisons, the summary and the heat map's frame of one runs table."""

    table: pd.DataFrame
    summary: pd.DataFrame
    cells: pd.DataFrame

    @property
    def has_figure(self) -> bool:
        return bool(len(self.cells)) and bool(self.cells["delta"].notna().any())


def across(runs: pd.DataFrame, builtin: frozenset[str] | None = None) -> Across:
    table = summary.setting_table(runs, builtin_strategies() if builtin is None else builtin)
    board = summary.summary(table)
    return Across(table, board, summary.heatmap_frame(table, list(board["strategy"])))


def _num(v: object, fmt: str) -> str:
    return format(float(v), fmt) if is_finite(v) else "—"  # type: ignore[arg-type]


def delta_text(row: Mapping[Any, Any], ref: str, interval: bool = True) -> str:
    """``"+0.0028 [+0.0027, +0.0029]"``: the mean Δ over settings and its interval;
    "reference" for Eq. 2's own row."""
    if ref == "eq2" and row["strategy"] == summary.EQ2:
        return "reference"
    text = _num(row[f"vs_{ref}_mean"], "+.4f")
    if interval and text != "—" and is_finite(row[f"vs_{ref}_lo"]):
        text += f" [{_num(row[f'vs_{ref}_lo'], '+.4f')}, {_num(row[f'vs_{ref}_hi'], '+.4f')}]"
    return text


def wtl_text(row: Mapping[Any, Any], ref: str) -> str:
    """``"12/3/2 of 17"``; "—" when no setting was compared."""
    n = int(row[f"vs_{ref}_settings"])
    if not n:
        return "—"
    return "/".join(str(int(row[f"vs_{ref}_{o}"])) for o in summary.OUTCOMES) + f" of {n}"


def display_table(board: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """The summary as strings: rank, strategy, mean rank (settings), Δ and W/T/L per reference."""
    rows = []
    for r in board.head(top).to_dict("records") if top else board.to_dict("records"):
        rows.append(
            {
                "rank": str(r["rank"]),
                "strategy": str(r["strategy"]),
                "mean rank (settings)": f"{_num(r['mean_rank'], '.2f')} ({int(r['n_settings'])})",
                f"Δ vs {summary.EQ2}": delta_text(r, "eq2"),
                "W/T/L vs Eq. 2": wtl_text(r, "eq2"),
                "Δ vs best built-in": delta_text(r, "best"),
                "W/T/L vs best": wtl_text(r, "best"),
            }
        )
    return pd.DataFrame(rows)


def _best_lines(table: pd.DataFrame) -> list[str]:
    """One line per setting: its best built-in strategy (the reference of every other row)."""
    lines = []
    for setting, g in table.groupby("setting", sort=False):
        others = g[g["best_reference"] != g["strategy"]]["best_reference"]
        best = str(others.iloc[0]) if len(others) and others.iloc[0] else "—"
        seeds = sorted({int(n) for n in g["n_seeds"]})
        lines.append(f"- {setting}: {best} ({len(g)} strategies, {'/'.join(map(str, seeds))} seeds)")
    return lines


def markdown_section(a: Across) -> str:
    """The section at the top of ``leaderboard.md``: the first :data:`TOP` rows and the figure."""
    parts = [f"## {HEADING}", "", markdown_table(display_table(a.summary, TOP)), ""]
    more = f" ({len(a.summary)} strategies, all in [summary.md](summary.md) and summary.csv)"
    parts += [f"Δ: AUC difference, paired over seeds, mean over settings [95 % interval]{more}.", ""]
    if a.has_figure:
        parts += [f"![{CAPTION}]({FIGURE}.png)", ""]
    return "\n".join(parts)


def summary_markdown(a: Across) -> str:
    """``summary.md``: the test, every row, the best built-in of each setting, the figure."""
    parts = [f"# {HEADING}", "", NOTE, "", markdown_table(display_table(a.summary)), ""]
    parts += ["Best built-in strategy of each setting:", "", *_best_lines(a.table), ""]
    if a.has_figure:
        parts += [f"![{CAPTION}]({FIGURE}.png)", ""]
    parts += ["Per-setting mean AUC, rank and paired intervals: summary.csv.", ""]
    return "\n".join(parts)


def html_section(a: Across) -> str:
    """The section at the top of ``leaderboard.html``."""
    parts = [
        f"<h2>{HEADING}</h2>",
        f'<p class="note">{html.escape(NOTE)}</p>',
        display_table(a.summary, TOP).to_html(index=False, border=0, escape=True),
        f'<p class="note">{len(a.summary)} strategies in all: <a href="summary.md">summary.md</a>, '
        '<a href="summary.csv">summary.csv</a>.</p>',
    ]
    if a.has_figure:
        parts.append(f'<p><img src="{FIGURE}.png" alt="{html.escape(CAPTION)}" width="700"></p>')
    return "\n".join(parts)


def _insert_after(text: str, marker: str, fragment: str) -> str:
    """``fragment`` after the first ``marker`` of ``text`` (at the start when there is none)."""
    at = text.find(marker)
    at = 0 if at < 0 else at + len(marker)
    return text[:at] + fragment + text[at:]


def add_to_report(
    folder: Path, runs: pd.DataFrame, pages: Sequence[tuple[str, str]], manifest: Manifest | None
) -> tuple[list[tuple[str, str]], list[Path]]:
    """The report's pages with the summary added: the section at the top of ``leaderboard.md``
    and ``leaderboard.html``, ``summary.csv`` and ``summary.md`` after ``leaderboard.csv``; and
    the heat map drawn into ``folder`` unless the manifest holds it as fresh (removed when there
    is nothing to draw). Returns the pages and the figure files drawn."""
    a = across(runs)
    if not len(a.summary):
        return list(pages), []
    png = folder / f"{Path(FIGURE).name}.png"
    drawn: list[Path] = []
    if a.has_figure:
        key = incremental.digest("summary", incremental.code_fingerprint(*FIGURE_CODE), a.cells)

        def draw() -> None:
            with matplotlib.style.context("default"):
                plot_summary(png, a.cells)

        drawn = incremental.draw_if_stale(manifest, png, key, draw)
    else:
        for f in figure_files(png):
            f.unlink(missing_ok=True)
    out: list[tuple[str, str]] = []
    for name, text in pages:
        if name == "leaderboard.md":
            text = _insert_after(text, "# Leaderboard\n\n", markdown_section(a) + "\n")
        elif name == "leaderboard.html":
            text = _insert_after(text, "<h1>Leaderboard</h1>\n", html_section(a) + "\n")
        out.append((name, text))
        if name == "leaderboard.csv":
            out += [("summary.csv", summary.summary_csv(a.summary)), ("summary.md", summary_markdown(a))]
    return out, drawn


# --------------------------------------------------------------------------- the site


def site_figures(runs: pd.DataFrame) -> list[str]:
    """The figure stems the site's index shows from here (copied from the report)."""
    return [FIGURE] if across(runs).has_figure else []


def _with_counts(row: Mapping[Any, Any], ref: str) -> str:
    """``"+0.0028 [12/3/2 of 17]"``: the mean Δ and the win / tie / loss counts."""
    counts = wtl_text(row, ref)
    return delta_text(row, ref, False) + (f" [{counts}]" if counts != "—" else "")


def site_fragment(runs: pd.DataFrame) -> str:
    """The index's "Across settings" part: a compact sortable table of every strategy and the
    heat map (classes of the site's stylesheet: ``table-wrap``, ``sortable``, ``num``,
    ``name``, ``opt``, ``note``); empty when nothing ran."""
    a = across(runs)
    if not len(a.summary):
        return ""
    head = [
        ("num", "rank"),
        ("", "strategy"),
        ("num", "mean rank"),
        ("num", f"Δ vs {EQ2_SHORT} [W/T/L]"),
        ("num opt", "Δ vs best built-in [W/T/L]"),
    ]
    body = []
    for r in a.summary.to_dict("records"):
        cells = [
            (str(r["rank"]), r["rank"]),
            (str(r["strategy"]), None),
            (f"{_num(r['mean_rank'], '.2f')} ({int(r['n_settings'])})", r["mean_rank"]),
            (_with_counts(r, "eq2"), r["vs_eq2_mean"]),
            (_with_counts(r, "best"), r["vs_best_mean"]),
        ]
        tds = []
        for (cls, _), (text, value) in zip(head, cells, strict=True):
            sort = f' data-value="{float(value)!r}"' if is_finite(value) else ""
            tds.append(f'<td class="{cls or "name"}"{sort}>{html.escape(text)}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    ths = "".join(
        f'<th scope="col"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{html.escape(h)}</th>'
        for cls, h in head
    )
    parts = [
        f'<section id="across"><h2>{HEADING}</h2>',
        '<p class="note">Δ: AUC minus the reference\'s, paired over seeds, mean over the settings; '
        "W/T/L: the settings where the 95 % paired t interval lies above 0 / includes 0 / lies "
        "below 0, of those compared.</p>",
        f'<details><summary>How strategies are compared</summary><p class="note">{html.escape(NOTE)}</p>'
        "</details>",
        f'<div class="table-wrap"><table class="sortable" id="across-table"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>",
    ]
    if a.has_figure:
        parts.append(
            f'<figure><img src="{FIGURE}.png" alt="{html.escape(CAPTION)}">'
            f'<figcaption>{html.escape(CAPTION)} · <a href="{FIGURE}.svg">SVG</a> · '
            f'<a href="{FIGURE}.pdf">PDF</a></figcaption></figure>'
        )
    parts.append("</section>")
    return "\n".join(parts)
