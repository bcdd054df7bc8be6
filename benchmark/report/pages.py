"""The leaderboard pages: ``leaderboard.csv``, ``leaderboard.md`` and ``leaderboard.html``,
with the figures of :mod:`benchmark.results.plots`, built from the result tables alone.

The flow is one way: the tables (:mod:`benchmark.results.tables`) are aggregated
(:mod:`benchmark.results.leaderboard`), drawn (:mod:`benchmark.report.figures`) and written out here. The same
tables give the same bytes.

A report is incremental: ``plots/manifest.json`` (:class:`benchmark.results.incremental.Manifest`)
keeps the key of everything the report read (:func:`report_inputs`: the tables, the downstream
tables, the code), the key of each figure and the sha256 of each page. When the inputs key
matches and every output is in place, nothing is computed or written; otherwise only the
figures whose key changed (or whose files are missing) are drawn, and a page is written only
when its bytes differ from the file's. :func:`write_report` returns the files it wrote;
``.summary()`` of what it returns counts those redrawn and those up to date.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.style
import pandas as pd

from benchmark.downstream import report as downstream_report
from benchmark.report.figures import draw_stale, report_figures
from benchmark.results import incremental, plots
from benchmark.results.incremental import MANIFEST, Manifest, Written, figure_files, write_if_changed
from benchmark.results.leaderboard import curve_bands, group_info, group_key, is_finite, leaderboard
from benchmark.results.learner_summary import learner_summary, summary_markdown
from benchmark.results.names import display_names, named_title, user_strategies
from benchmark.results.plots import format_pm, markdown_table, safe_name
from benchmark.results.tables import CELL, GROUP
from benchmark.simulation.diagnostics import PICK_COLUMNS


def _group_file_names(groups: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """``<dataset>__<learner>`` made safe; names that collide get a short hash of the raw one."""
    names = {g: f"{safe_name(g[0])}__{safe_name(g[1])}" for g in groups}
    seen: dict[str, int] = {}
    for n in names.values():
        seen[n] = seen.get(n, 0) + 1
    for g, n in names.items():
        if seen[n] > 1:
            digest = hashlib.sha1("\0".join(g).encode()).hexdigest()[:8]
            names[g] = f"{n}_{digest}"
    return names


def _count(v: object) -> str:
    """A mean of counts: no decimals when it is a whole number."""
    if not is_finite(v):
        return "—"
    f = float(v)  # type: ignore[arg-type]
    return f"{f:.0f}" if f.is_integer() else f"{f:.1f}"


def group_title(dataset: str, learner: str, info: dict[str, object]) -> str:
    """``"<dataset> — learner <learner> (N=5000, 15.4 % noise, budget 3076)"``."""
    parts = []
    if is_finite(info.get("n_samples")):
        parts.append(f"N={int(info['n_samples'])}")  # type: ignore[call-overload]
    if is_finite(info.get("noise_rate")):
        parts.append(f"{100 * float(info['noise_rate']):.1f} % noise")  # type: ignore[arg-type]
    if is_finite(info.get("budget")):
        parts.append(f"budget {int(info['budget'])}")  # type: ignore[call-overload]
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{dataset} — learner {learner}{detail}"


def _target_label(board: pd.DataFrame) -> str:
    targets = pd.to_numeric(board["target_accuracy"], errors="coerce").dropna().unique()
    if len(targets) == 1:
        return f"annotations to {float(targets[0]):g} %"
    return "annotations to target"


def _display_table(group_rows: pd.DataFrame, target_label: str) -> pd.DataFrame:
    """The compact human-readable table of one group (all cells are strings)."""
    out = []
    for r in group_rows.to_dict("records"):
        n = int(r["n_seeds"])
        to_target = format_pm(r["annotations_to_target_mean"], r["annotations_to_target_ci"], 0)
        if 0 < r["n_target_reached"] < n:
            to_target += f" ({r['n_target_reached']}/{n} seeds)"
        elif r["n_target_reached"] == 0:
            to_target = "not reached"
        eff = format_pm(r["efficiency_mean"], r["efficiency_ci"], 2)
        if eff != "—":
            eff = eff.replace(" ±", "× ±", 1) if "±" in eff else eff + "×"
        if r["n_efficiency_unreached"]:
            eff += f" ({r['n_efficiency_unreached']}/{n} never)"
        seeds = str(n)
        lost = [f"{r[k]} {k[2:]}" for k in ("n_failed", "n_skipped") if r[k]]
        if lost:
            seeds += f" ({', '.join(lost)})"
        out.append(
            {
                "rank": str(r["rank"]),
                "strategy": str(r["strategy"]),
                "AUC": format_pm(r["auc_mean"], r["auc_ci"], 4),
                "final acc. (%)": format_pm(r["final_accuracy_mean"], r["final_accuracy_ci"], 2),
                "mislabelled corrected (%)": format_pm(
                    r["pct_mislabelled_corrected_mean"], r["pct_mislabelled_corrected_ci"], 1
                ),
                target_label: to_target,
                "efficiency": eff,
                "first picks: wrong / ambiguous / clear (%)": _picks(r),
                "left: clear / ambiguous": (
                    f"{_count(r['clear_mislabelled_left_mean'])} / "
                    f"{_count(r['ambiguous_mislabelled_left_mean'])}"
                ),
                "seeds": seeds,
            }
        )
    return pd.DataFrame(out)


def _picks(r: Mapping[Any, object]) -> str:
    """Shares (%) of the first picks that are mislabelled / ambiguous and correct / clear and
    correct, or "—" when the runs do not record them."""
    values = [r.get(f"{c}_mean") for c in PICK_COLUMNS]
    if not all(is_finite(v) for v in values):
        return "—"
    return " / ".join(f"{100 * float(v):.0f}" for v in values)  # type: ignore[arg-type]


def _failures(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad.sort_values([*CELL, "seed"], kind="mergesort")


def _failure_lines(bad: pd.DataFrame, group_runs: pd.DataFrame) -> list[str]:
    """One line per reason: the cells it concerns (all of the group's, or the strategies and
    seeds), its status and the first line of the message."""
    lines = []
    bad = bad.assign(line=bad["error"].map(first_line))
    for (status, line), g in bad.groupby(["status", "line"], sort=True):
        if len(g) == len(group_runs) > 1:
            who = f"all {len(g)} cells"
        else:
            who = "; ".join(
                f"`{strategy}` seed{'s' if len(seeds) > 1 else ''} {', '.join(str(x) for x in seeds['seed'])}"
                for strategy, seeds in g.groupby("strategy", sort=True)
            )
        lines.append(f"{who}: {status} — {line}")
    return lines


def first_line(error: object) -> str:
    """First line of an error message, shortened; tracebacks stay in the runs table."""
    text = "" if error is None or (isinstance(error, float) and math.isnan(error)) else str(error)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else "(no message)"
    return first if len(first) <= 300 else first[:297] + "..."


PREAMBLE = (
    "AUC: area under label accuracy against expert annotations on 0..budget, divided by "
    "budget × 100 (1 = perfect). Efficiency: annotations Random needs to first reach its own "
    "final accuracy ÷ annotations the strategy needs to reach it (Random = 1×, higher is "
    "better). ± is the 95 % Student-t confidence half-width over seeds. Left: mislabelled "
    "samples left at the end, clear / ambiguous (normalised entropy of the true label "
    "distribution > 0.3). First picks: of the first k samples the strategy ranks at the "
    "start, k the number of mislabelled samples, the share (%) that is mislabelled / ambiguous "
    "but correctly labelled / clear and correctly labelled."
)


LEARNERS_PREAMBLE = (
    "Per learner: accuracy of its posteriors against the true (plurality) labels and seconds per "
    "fit, averaged over seeds; each selector's AUC ± 95 % half-width over seeds, its efficiency "
    "against Random in brackets, and the AUC of its active run (re-fitting the learner as the "
    "paper's Algorithm 1) where the suite ran one."
)


@dataclass(frozen=True)
class Section:
    dataset: str
    learner: str
    title: str
    file_name: str
    table: pd.DataFrame
    failures: list[str]
    #: The title in display names (:func:`benchmark.results.names.group_title`): figures, cards.
    display_title: str = ""


def sections(
    runs: pd.DataFrame, board: pd.DataFrame, shown: Mapping[str, Mapping[str, str]] | None = None
) -> list[Section]:
    """One section per group seen in ``runs``, including groups none of whose runs succeeded."""
    groups = sorted(
        {(str(d), str(learner)) for d, learner in runs[GROUP].itertuples(index=False)}, key=group_key
    )
    names = _group_file_names(groups)
    info = {
        (str(r["dataset"]), str(r["learner"])): {str(k): v for k, v in r.items()}
        for r in group_info(runs).to_dict("records")
    }
    failures = _failures(runs)
    target_label = _target_label(board)
    named = shown if shown is not None else display_names(runs)
    sections = []
    for dataset, learner in groups:
        rows = board[(board["dataset"] == dataset) & (board["learner"] == learner)]
        bad = failures[(failures["dataset"] == dataset) & (failures["learner"] == learner)]
        listed = _failure_lines(bad, runs[(runs["dataset"] == dataset) & (runs["learner"] == learner)])
        sections.append(
            Section(
                dataset=dataset,
                learner=learner,
                title=group_title(dataset, learner, info[(dataset, learner)]),
                file_name=names[(dataset, learner)],
                table=_display_table(rows, target_label),
                failures=listed,
                display_title=named_title(named, dataset, learner, info[(dataset, learner)]),
            )
        )
    return sections


def _markdown(sections: list[Section], has_plots: set[str]) -> str:
    parts = ["# Leaderboard", "", PREAMBLE, ""]
    for s in (s for s in sections if len(s.table)):
        parts += [
            f"## {s.display_title}",
            "",
            f"`{s.dataset}` · `{s.learner}`",
            "",
            markdown_table(s.table),
            "",
        ]
        if s.file_name in has_plots:
            parts += [
                f"![label accuracy against annotations](plots/{s.file_name}.png)",
                "",
                f"![mislabelled samples left](plots/{s.file_name}_mislabelled.png)",
                "",
            ]
        if s.failures:
            parts += ["Failed or skipped cells:", ""]
            parts += [f"- {f}" for f in s.failures]
            parts += [""]
    empty = [s for s in sections if not len(s.table)]
    if empty:
        parts += ["## Not run, and why", ""]
        for s in empty:
            parts += [f"- {s.title}: no successful runs"]
            parts += [f"  - {f}" for f in s.failures]
        parts += [""]
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
tbody tr:nth-child(even) { background: #fafafa; }
p.note { max-width: 60em; color: #555; }
"""


def _html(sections: list[Section], has_plots: set[str]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>alcbench leaderboard</title>',
        f"<style>{_CSS}</style></head>",
        "<body>",
        "<h1>Leaderboard</h1>",
        f'<p class="note">{html.escape(PREAMBLE)}</p>',
    ]
    for s in (s for s in sections if len(s.table)):
        spec = f"<p><code>{html.escape(s.dataset)}</code> · <code>{html.escape(s.learner)}</code></p>"
        parts += [f"<h2>{html.escape(s.display_title)}</h2>{spec}", s.table.to_html(index=False, border=0)]
        if s.file_name in has_plots:
            parts += [
                f'<p><img src="plots/{html.escape(s.file_name)}.png" alt="label accuracy against '
                f'annotations" width="900"><br><img src="plots/{html.escape(s.file_name)}_mislabelled.png" '
                'alt="mislabelled samples left" width="900"></p>'
            ]
        if s.failures:
            parts.append("<p>Failed or skipped cells:</p><ul>")
            parts += [f"<li>{html.escape(f.replace('`', ''))}</li>" for f in s.failures]
            parts.append("</ul>")
    empty = [s for s in sections if not len(s.table)]
    if empty:
        parts.append("<h2>Not run, and why</h2><ul>")
        for s in empty:
            reasons = "".join(f"<li>{html.escape(f.replace('`', ''))}</li>" for f in s.failures)
            parts.append(f"<li>{html.escape(s.title)}: no successful runs<ul>{reasons}</ul></li>")
        parts.append("</ul>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def group_rows(board: pd.DataFrame, section: Section) -> pd.DataFrame:
    """The leaderboard rows of one section's group."""
    return board[(board["dataset"] == section.dataset) & (board["learner"] == section.learner)]


#: The names of a group's figures in a report's ``plots/`` (``<dataset>__<learner>...``) and of
#: a dataset's AUC overview pages (``auc_overview_<dataset>...``).
GROUP_FIGURES = tuple(f"{stem}.{ext}" for stem in ("*__*", "auc_overview_*") for ext in ("png", "svg", "pdf"))


def prune_stale(folder: Path, patterns: Sequence[str], written: Sequence[Path]) -> list[Path]:
    """Removes the files of ``folder`` that match ``patterns`` and are not among ``written``:
    what an earlier report wrote for a group this one no longer has (a learner or dataset
    dropped from the suite). Returns the paths removed."""
    keep = {Path(p).resolve() for p in written}
    stale = sorted(
        {
            f
            for pattern in patterns
            for f in Path(folder).glob(pattern)
            if f.is_file() and f.resolve() not in keep
        }
    )
    for f in stale:
        f.unlink()
    return stale


#: The downstream stage's files a report reads (:func:`benchmark.downstream.report.render`).
DOWNSTREAM_INPUTS = (
    downstream_report.TRAINING_CSV,
    downstream_report.SELECTION_CSV,
    downstream_report.NOTES_TXT,
)


def report_inputs(
    out_dir: Path, runs: pd.DataFrame, curves: pd.DataFrame, highlight: Collection[str] = ()
) -> str:
    """The key of everything a report of ``out_dir`` reads: the two tables (columns in name
    order; the curves' selected samples left out), the downstream tables, the source of the
    whole package, the library versions, the plugins' display names, the user's strategies and
    the ``--highlight`` names. Equal keys give equal reports."""
    out_dir = Path(out_dir)
    extra = [
        (rel, (out_dir / rel).read_bytes() if (out_dir / rel).is_file() else None)
        for rel in DOWNSTREAM_INPUTS
    ]
    points = curves.drop(columns=["sample"], errors="ignore")
    return incremental.digest(
        incremental.code_fingerprint("benchmark"),
        incremental.environment_versions(),
        runs[sorted(runs.columns)],
        points[sorted(points.columns)],
        extra,
        display_names(runs),
        sorted(user_strategies(runs["strategy"].astype(str))) if "strategy" in runs else [],
        sorted(set(highlight)),
    )


def write_report(
    out_dir: Path,
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    inputs: str | None = None,
    highlight: Collection[str] = (),
) -> Written:
    """Writes the leaderboard (csv, md, html) and the plots into ``out_dir``.

    Files: ``leaderboard.csv`` (every column of :func:`leaderboard`), ``leaderboard.md`` and
    ``leaderboard.html`` (one compact table per group, plus its failed or skipped cells),
    ``learners.csv`` and ``learners.md`` (one row per learner:
    :func:`benchmark.results.learner_summary.learner_summary`), and under ``plots/``:
    ``<group>.png`` (label accuracy against annotations, mean ± 95 % CI over seeds),
    ``<group>_mislabelled.png`` (mislabelled samples left, clear and ambiguous) for each group
    with successful runs, and the AUC overview (:mod:`benchmark.report.figures`); the figures
    of groups an earlier report drew and this one has not are removed. The user's strategies
    and those ``highlight`` names (``--highlight``) stand out in every figure
    (:mod:`benchmark.results.styles`). ``<group>`` is ``<dataset>__<learner>``
    with characters other than letters, digits and ``. _ -`` replaced. ``plots/manifest.json``
    holds the keys that let the next report skip what has not changed (see the module's
    docstring); ``inputs`` is :func:`report_inputs` of these tables when the caller has it.
    The same tables give byte-identical outputs. Returns the paths written, in that order,
    as a :class:`benchmark.results.incremental.Written` whose ``kept`` lists the outputs left
    as they were.
    """
    out_dir = Path(out_dir)
    folder = out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(folder / MANIFEST, out_dir)
    inputs = inputs or report_inputs(out_dir, runs, curves, highlight)
    if manifest.up_to_date(inputs):
        kept = manifest.keep_all(inputs)
        prune_stale(folder, GROUP_FIGURES, kept)
        return Written([], kept)
    board = leaderboard(runs, curves)
    named = display_names(runs)
    groups = sections(runs, board, named)
    bands = curve_bands(runs, curves, board)
    styles = plots.styles(board["strategy"].astype(str), highlight)
    figures = report_figures(folder, groups, board, bands, styles, named)
    with_plots = {s.file_name for s in groups if len(group_rows(board, s))}
    drawn = draw_stale(figures, manifest)

    summary = learner_summary(runs, board)
    with matplotlib.style.context("default"):
        down_sections, down_notes, down_files = downstream_report.render(
            out_dir, manifest=manifest, names=named, highlight=highlight
        )
    md = _markdown(groups, with_plots)
    page = _html(groups, with_plots)
    if down_sections or down_notes:
        md += "\n## What cleaning buys downstream\n\n" + downstream_report.markdown(down_sections, down_notes)
        fragment = "<h2>What cleaning buys downstream</h2>\n" + downstream_report.html_fragment(
            down_sections, down_notes
        )
        page = page.replace("</body>", fragment + "\n</body>")
    pages = [("leaderboard.csv", board.to_csv(index=False, lineterminator="\n"))]
    pages += [("leaderboard.md", md), ("leaderboard.html", page)]
    if len(summary):
        pages += [
            ("learners.csv", summary.to_csv(index=False, lineterminator="\n")),
            ("learners.md", "# Learners\n\n" + LEARNERS_PREAMBLE + "\n\n" + summary_markdown(summary)),
        ]
    # --- Across settings (benchmark.report.summary_section): summary.csv / summary.md, the heat
    # map, and the section at the top of leaderboard.md and leaderboard.html
    from benchmark.report import summary_section

    pages, across_drawn = summary_section.add_to_report(folder, runs, pages, manifest)
    drawn += across_drawn
    # --- end Across settings
    written: list[Path] = []
    for name, text in pages:
        path, data = out_dir / name, text.encode("utf-8")
        if write_if_changed(path, data):
            written.append(path)
        manifest.record_page(path, data)
    prune_stale(folder, GROUP_FIGURES, [p for f in figures for p in figure_files(f.png)])
    manifest.inputs = inputs
    written += drawn + down_files
    if manifest.save():
        written.append(manifest.path)
    return Written(written, manifest.outputs())
