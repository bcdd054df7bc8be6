"""Tables and figures of the downstream results (:mod:`benchmark.downstream.training`).

Written under ``OUT/downstream/``: the long tables ``training.csv``, ``selection.csv`` and
``candidates.csv`` (one row per fit or per scored label version), the aggregated
``downstream.md`` (also pasted into the leaderboard pages) and, per dataset, the figures
``plots/downstream_<dataset>.png`` (clean-set accuracy of the re-trained model against the
budget spent, the best strategies and Random with 95 % CIs over seeds, the noisy-label and
true-label models as reference lines) and ``plots/selection_<dataset>.png`` (Kendall's tau of the candidates'
ranking under each strategy's labels against the budget spent), drawn by
:mod:`benchmark.downstream.figures`. Given the report's manifest, :func:`render` draws a figure
again only when the summary rows it draws or the code that draws it changed, and writes
``downstream.md`` only when its bytes change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.atomic import write_bytes
from benchmark.downstream.figures import ordered_strategies, plot_selection, plot_training
from benchmark.downstream.fits import DOWNSTREAM
from benchmark.downstream.selection import NOISY, TRUE, VALIDATION_SHARE
from benchmark.downstream.training import DownstreamResult
from benchmark.params import spec_sort_key
from benchmark.results import incremental
from benchmark.results.incremental import Manifest, write_if_changed
from benchmark.results.leaderboard import mean_ci95
from benchmark.results.plots import format_pm, markdown_table, safe_name
from benchmark.results.styles import styles

#: Tables of this stage, relative to a results folder.
TRAINING_CSV = f"{DOWNSTREAM}/training.csv"
SELECTION_CSV = f"{DOWNSTREAM}/selection.csv"
CANDIDATES_CSV = f"{DOWNSTREAM}/candidates.csv"
SUMMARY_MD = f"{DOWNSTREAM}/downstream.md"
NOTES_TXT = f"{DOWNSTREAM}/notes.txt"


def training_summary(training: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, learner, strategy, fraction): clean-set accuracy mean and 95 % half-width
    over seeds, its gain over the noisy-label model (paired by seed) and the share of the
    noisy-to-true gap it closes (%)."""
    t = training.dropna(subset=["test_accuracy"])
    out: list[dict[str, Any]] = []
    for (dataset, learner), g in t.groupby(["dataset", "learner"], sort=True):
        noisy = g[g["strategy"] == NOISY].set_index("seed")["test_accuracy"]
        true = g[g["strategy"] == TRUE].set_index("seed")["test_accuracy"]
        gap = float((true - noisy).mean()) if len(noisy) and len(true) else float("nan")
        for (strategy, fraction), s in g.groupby(["strategy", "fraction"], sort=True, dropna=False):
            acc = s.set_index("seed")["test_accuracy"]
            gain = (acc - noisy.reindex(acc.index)).to_numpy(np.float64)
            mean, ci = mean_ci95(acc.to_numpy(np.float64))
            gain_mean, gain_ci = mean_ci95(gain)
            out.append(
                {
                    "dataset": dataset,
                    "learner": learner,
                    "strategy": strategy,
                    "fraction": fraction,
                    "annotations": float(s["annotations"].mean()),
                    "label_accuracy": float(s["label_accuracy"].mean()),
                    "test_accuracy": mean,
                    "test_accuracy_ci": ci,
                    "gain": gain_mean,
                    "gain_ci": gain_ci,
                    "gap_closed": 100.0 * gain_mean / gap if gap > 0 else float("nan"),
                    "seeds": int(acc.size),
                    "model": s["model"].iloc[0],
                    "eval_set": s["eval_set"].iloc[0],
                }
            )
    return pd.DataFrame(out)


def selection_summary(selection: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, learner, strategy, fraction): bias, tau, right picks and pick cost over seeds."""
    out: list[dict[str, Any]] = []
    if selection.empty:
        return pd.DataFrame(out)
    for (dataset, learner, strategy, fraction), g in selection.groupby(
        ["dataset", "learner", "strategy", "fraction"], sort=True, dropna=False
    ):
        row: dict[str, Any] = {
            "dataset": dataset,
            "learner": learner,
            "strategy": strategy,
            "fraction": fraction,
        }
        for metric in ("bias", "tau", "pick_cost"):
            row[metric], row[f"{metric}_ci"] = mean_ci95(g[metric].to_numpy(np.float64))
        row["right_picks"] = int(g["right_pick"].sum())
        row["seeds"] = int(len(g))
        out.append(row)
    return pd.DataFrame(out)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


@dataclass
class Section:
    """The downstream results of one dataset, ready to print."""

    dataset: str
    learner: str
    training_intro: str = ""
    references: list[str] = field(default_factory=list)
    training: pd.DataFrame = field(default_factory=pd.DataFrame)
    selection_intro: str = ""
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    plots: list[tuple[str, str]] = field(default_factory=list)  # (relative path, alt text)


def sections(train_sum: pd.DataFrame, sel_sum: pd.DataFrame) -> list[Section]:
    """One :class:`Section` per dataset, T=2 before T=10."""
    out: list[Section] = []
    datasets = sorted(set(train_sum.get("dataset", [])) | set(sel_sum.get("dataset", [])), key=spec_sort_key)
    for dataset in datasets:
        t = train_sum[train_sum["dataset"] == dataset] if not train_sum.empty else train_sum
        s = sel_sum[sel_sum["dataset"] == dataset] if not sel_sum.empty else sel_sum
        sec = Section(dataset=dataset, learner=str((t if not t.empty else s)["learner"].iloc[0]))
        if not t.empty:
            sec.training_intro, sec.references, sec.training = _training_table(t)
            sec.plots.append(
                (
                    f"{DOWNSTREAM}/plots/downstream_{safe_name(dataset)}.png",
                    "accuracy of the re-trained model against the budget spent",
                )
            )
        if not s.empty:
            sec.selection_intro, sec.selection = _selection_table(s)
            sec.plots.append(
                (
                    f"{DOWNSTREAM}/plots/selection_{safe_name(dataset)}.png",
                    "Kendall tau against the budget spent",
                )
            )
        out.append(sec)
    return out


def markdown(secs: list[Section], notes: list[str], *, level: int = 3, prefix: str = "") -> str:
    """The sections as markdown; image links relative to the results folder, with ``prefix``."""
    lines: list[str] = []
    for sec in secs:
        lines += [f"{'#' * level} {sec.dataset} — labels cleaned by the runs of learner {sec.learner}", ""]
        if len(sec.training):
            lines += [
                sec.training_intro,
                "",
                *[f"- {r}" for r in sec.references],
                "",
                markdown_table(sec.training),
                "",
            ]
        if len(sec.selection):
            lines += [sec.selection_intro, "", markdown_table(sec.selection), ""]
        lines += [f"![{alt}]({prefix}{rel})" for rel, alt in sec.plots] + [""]
    if notes:
        lines += ["Not done:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def html_fragment(secs: Sequence[Section], notes: list[str]) -> str:
    """The sections as HTML (for the leaderboard page)."""
    import html

    parts: list[str] = []
    for sec in secs:
        parts.append(
            f"<h3>{html.escape(sec.dataset)} — labels cleaned by the runs of learner "
            f"{html.escape(sec.learner)}</h3>"
        )
        if len(sec.training):
            parts.append(f'<p class="note">{html.escape(sec.training_intro)}</p><ul>')
            parts += [f"<li>{html.escape(r)}</li>" for r in sec.references]
            parts.append("</ul>")
            parts.append(sec.training.to_html(index=False, border=0, escape=True))
        if len(sec.selection):
            parts.append(f'<p class="note">{html.escape(sec.selection_intro)}</p>')
            parts.append(sec.selection.to_html(index=False, border=0, escape=True))
        parts += [
            f'<p><img src="{html.escape(rel)}" alt="{html.escape(alt)}" width="900"></p>'
            for rel, alt in sec.plots
        ]
    if notes:
        parts.append("<p>Not done:</p><ul>")
        parts += [f"<li>{html.escape(n)}</li>" for n in notes]
        parts.append("</ul>")
    return "\n".join(parts)


def _training_table(t: pd.DataFrame) -> tuple[str, list[str], pd.DataFrame]:
    model, eval_set = t["model"].iloc[0], t["eval_set"].iloc[0]
    fractions = sorted(f for f in t["fraction"].dropna().unique())
    refs = t[t["fraction"].isna()].set_index("strategy")
    intro = (
        f"Training on the cleaned labels: accuracy (%) of a {model} re-trained on the labels as they "
        f"stood after each share of the budget, on the clean evaluation set ({eval_set}); mean ± 95 % CI "
        "over seeds, in brackets the gain over the model trained on the initial noisy labels (points, "
        "paired by seed). Gap closed: the share of the noisy-to-true-label difference that the labels "
        "at 100 % make up."
    )
    references = [
        f"trained on the {ref}: "
        f"{format_pm(refs.loc[ref, 'test_accuracy'], refs.loc[ref, 'test_accuracy_ci'], 2)} %"
        for ref in (NOISY, TRUE)
        if ref in refs.index
    ]
    body = t[t["fraction"].notna()]
    rows = []
    for strategy in ordered_strategies(body["strategy"]):
        g = body[body["strategy"] == strategy].set_index("fraction")
        row: dict[str, str] = {"strategy": strategy}
        for f in fractions:
            if f not in g.index:
                row[_pct(f)] = "—"
                continue
            r = g.loc[f]
            gain = "" if f == 0 else f" ({r['gain']:+.2f})"
            row[_pct(f)] = f"{format_pm(r['test_accuracy'], r['test_accuracy_ci'], 2)}{gain}"
        last = g.loc[fractions[-1]] if fractions and fractions[-1] in g.index else None
        closed = None if last is None else last["gap_closed"]
        row["gap closed at 100 %"] = "—" if closed is None or not np.isfinite(closed) else f"{closed:.0f} %"
        rows.append(row)
    return intro, references, pd.DataFrame(rows)


def _selection_table(s: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    fractions = sorted(f for f in s["fraction"].dropna().unique() if f > 0)
    train_pct, val_pct = 100 * (1 - VALIDATION_SHARE), 100 * VALIDATION_SHARE
    intro = (
        "Evaluation and model selection with noisy labels: candidate models trained on the noisy "
        f"labels of {train_pct:.0f} % of the samples, scored on the other {val_pct:.0f} % against each "
        "version of their labels. Kendall τ: rank correlation with the candidates' ranking under the "
        "true labels (1 = the same order), per budget share; bias: measured minus true accuracy "
        "(points, mean over candidates); right picks: seeds where the best-scoring candidate is the "
        "true labels' pick; cost: clean-set accuracy lost by the pick (points). Bias, picks and cost "
        "at 100 % of the budget."
    )
    rows = []
    for strategy in ordered_strategies(s["strategy"]):
        g = s[s["strategy"] == strategy]
        if strategy in (NOISY, TRUE):
            last = g.iloc[0]
            taus = [format_pm(last["tau"], last["tau_ci"], 3)] * len(fractions)
        else:
            by = g.set_index("fraction")
            if not fractions or fractions[-1] not in by.index:
                continue
            taus = [
                format_pm(by.loc[f, "tau"], by.loc[f, "tau_ci"], 3) if f in by.index else "—"
                for f in fractions
            ]
            last = by.loc[fractions[-1]]
        row = {"labels": strategy, **{f"τ at {_pct(f)}": tau for f, tau in zip(fractions, taus, strict=True)}}
        row.update(
            {
                "bias": format_pm(last["bias"], last["bias_ci"], 2),
                "right picks": f"{int(last['right_picks'])}/{int(last['seeds'])}",
                "cost": format_pm(last["pick_cost"], last["pick_cost_ci"], 2),
            }
        )
        rows.append(row)
    return intro, pd.DataFrame(rows)


#: The columns that name a row of each table, in the order the tables are sorted by.
TABLE_KEYS = {
    TRAINING_CSV: ["dataset", "learner", "seed", "strategy", "fraction"],
    SELECTION_CSV: ["dataset", "learner", "seed", "strategy", "fraction"],
    CANDIDATES_CSV: ["dataset", "seed", "candidate"],
}


def merge_downstream(
    out_dir: Path, result: DownstreamResult, keep: set[tuple[str, str, str, int]]
) -> DownstreamResult:
    """``result`` (the stage run on some runs only) with the rows of ``out_dir``'s tables that
    belong to the runs in ``keep``, (dataset, learner, strategy, seed) of runs it did not
    redo; the reference rows (noisy and true labels) and the candidates' rows of a dataset and
    seed with kept runs stay too where ``result`` has none. Rows of other runs leave."""
    out_dir = Path(out_dir)
    if not all((out_dir / rel).is_file() for rel in TABLE_KEYS):
        return result
    seeds = {(d, int(s)) for d, _, _, s in keep}
    merged = []
    for rel, new in ((TRAINING_CSV, result.training), (SELECTION_CSV, result.selection)):
        old = _read_csv(out_dir / rel)
        if not len(old):
            merged.append(new)
            continue
        redone = set(zip(new["dataset"], new["seed"].astype(int), strict=True)) if len(new) else set()
        ds = list(zip(old["dataset"], old["seed"].astype(int), strict=True))
        run_key = zip(old["dataset"], old["learner"], old["strategy"], old["seed"].astype(int), strict=True)
        stays = [
            key in keep or (strategy in (NOISY, TRUE) and pair in seeds and pair not in redone)
            for key, strategy, pair in zip(run_key, old["strategy"], ds, strict=True)
        ]
        merged.append(pd.concat([old[stays], new], ignore_index=True) if len(new) else old[stays])
    old = _read_csv(out_dir / CANDIDATES_CSV)
    candidates = result.candidates
    if len(old):
        redone = (
            set(zip(candidates["dataset"], candidates["seed"].astype(int), strict=True))
            if len(candidates)
            else set()
        )
        stays = [
            pair in seeds and pair not in redone
            for pair in zip(old["dataset"], old["seed"].astype(int), strict=True)
        ]
        candidates = pd.concat([old[stays], candidates], ignore_index=True) if len(candidates) else old[stays]
    return DownstreamResult(merged[0], merged[1], candidates, result.notes)


def write_downstream(out_dir: Path, result: DownstreamResult) -> list[Path]:
    """Writes the stage's long tables under ``out_dir/downstream/``, each sorted by
    :data:`TABLE_KEYS` (so a table merged from an earlier one equals one made at once; the
    report draws the summary and figures from them, see :func:`render`); returns the paths."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for rel, df in (
        (TRAINING_CSV, result.training),
        (SELECTION_CSV, result.selection),
        (CANDIDATES_CSV, result.candidates),
    ):
        if len(df):
            df = df.sort_values(TABLE_KEYS[rel], kind="stable", na_position="first").reset_index(drop=True)
        path = out_dir / rel
        write_bytes(path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode())
        written.append(path)
    path = out_dir / NOTES_TXT
    write_bytes(path, "".join(f"{n}\n" for n in result.notes).encode())
    written.append(path)
    return written


#: The modules whose source is in the key of each downstream figure: what draws it.
FIGURE_CODE = (
    "benchmark.downstream.figures",
    "benchmark.results.plots",
    "benchmark.results.styles",
    "benchmark.results.names",
)


def render(
    out_dir: Path,
    *,
    manifest: Manifest | None = None,
    draw: bool = True,
    names: Mapping[str, Mapping[str, str]] | None = None,
    highlight: Collection[str] = (),
) -> tuple[list[Section], list[str], list[Path]]:
    """The downstream sections and notes of ``out_dir``'s tables (none when the stage has not
    run), after writing ``downstream/downstream.md`` (when its bytes change) and the figures;
    and the paths written. With a ``manifest`` (:class:`benchmark.results.incremental.Manifest`)
    a figure is drawn only when its key (the summary rows it draws, :data:`FIGURE_CODE`)
    changed or one of its files is missing; ``draw=False`` writes nothing. The figures name
    the plugins by ``names`` (:func:`benchmark.results.names.display_names`; their specs when
    None) and draw the user's strategies and those ``highlight`` names strongly."""
    out_dir = Path(out_dir)
    paths = [out_dir / TRAINING_CSV, out_dir / SELECTION_CSV]
    if not all(p.is_file() for p in paths):
        return [], [], []
    training, selection = (_read_csv(p) for p in paths)
    notes_path = out_dir / NOTES_TXT
    notes = notes_path.read_text().splitlines() if notes_path.is_file() else []
    train_sum = training_summary(training) if len(training) else pd.DataFrame()
    sel_sum = selection_summary(selection) if len(selection) else pd.DataFrame()
    secs = sections(train_sum, sel_sum)
    if not draw:
        return secs, notes, []
    code = incremental.code_fingerprint(*FIGURE_CODE)
    drawn: list[Path] = []
    every = {str(x) for frame in (train_sum, sel_sum) if len(frame) for x in frame["strategy"]}
    style = styles(sorted(every - {NOISY, TRUE}), highlight)
    names = {kind: dict(names.get(kind, {})) for kind in ("dataset", "learner", "strategy")} if names else {}
    for sec in secs:
        todo: list[tuple[str, str, pd.DataFrame, Any]] = []
        if len(sec.training):
            todo.append(
                ("training", sec.plots[0][0], train_sum[train_sum["dataset"] == sec.dataset], plot_training)
            )
        if len(sec.selection):
            todo.append(
                ("selection", sec.plots[-1][0], sel_sum[sel_sum["dataset"] == sec.dataset], plot_selection)
            )
        for kind, rel, rows, plot in todo:
            png = out_dir / rel
            used = {x: style[x] for x in sorted(set(rows["strategy"].astype(str)) & set(style))}
            key = incremental.digest(kind, code, sec.dataset, rows, used, names)
            draw_it = partial(plot, png, sec.dataset, rows, used, names)
            drawn += incremental.draw_if_stale(manifest, png, key, draw_it)
    path = out_dir / SUMMARY_MD
    data = ("# What cleaning buys downstream\n\n" + markdown(secs, notes, level=2, prefix="../")).encode()
    written = [path] if write_if_changed(path, data) else []
    if manifest is not None:
        manifest.record_page(path, data)
    return secs, notes, [*written, *drawn]


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
