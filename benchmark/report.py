"""Leaderboard tables and comparison plots from the long-format result tables.

Inputs are the two tables a benchmark writes (DESIGN.md, "Results"):

* ``runs``: one row per cell (dataset, learner, strategy, seed) with its ``status``
  (``"ok"``, ``"failed"`` or ``"skipped"``), the group's size, noise rate and budget, and for ok
  rows the metrics of :func:`benchmark.metrics.run_metrics`;
* ``curves``: one row per curve point of a run (``config_hash``, ``step``, ``annotations``,
  ``accuracy`` in %, ``mislabelled_clear``, ``mislabelled_ambiguous``).

A *group* is (dataset, learner): strategies are compared within a group and seeds are
replicates. Aggregates are the mean over seeds and the 95 % Student-t confidence half-width.
Everything here is a pure function of the two tables, so the same tables give the same
leaderboard bytes (and PNGs without volatile metadata).
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import ColorType
from scipy import stats

from benchmark.atomic import atomic_path, write_bytes
from benchmark.metrics import annotations_to_reach, curve_on_grid

GROUP = ["dataset", "learner"]
CELL = [*GROUP, "strategy"]
#: The baseline efficiency is measured against: the strategy spec exactly ``"random"``.
RANDOM = "random"
ORACLE = "oracle"
#: Per-run metrics aggregated over seeds, each as ``<metric>_mean`` and ``<metric>_ci``.
METRICS = (
    "auc",
    "final_accuracy",
    "pct_mislabelled_corrected",
    "annotations_to_target",
    "efficiency",
    "clear_mislabelled_left",
    "ambiguous_mislabelled_left",
)
GROUP_INFO = ("n_samples", "n_classes", "noise_rate", "budget", "target_accuracy")
RUN_COLUMNS = (
    "config_hash",
    *CELL,
    "seed",
    "status",
    "error",
    "n_samples",
    "n_classes",
    "noise_rate",
    "budget",
    "auc",
    "final_accuracy",
    "pct_mislabelled_corrected",
    "target_accuracy",
    "annotations_to_target",
    "clear_mislabelled_left",
    "ambiguous_mislabelled_left",
)
CURVE_COLUMNS = (
    "config_hash",
    "step",
    "annotations",
    "accuracy",
    "mislabelled_clear",
    "mislabelled_ambiguous",
)

_DPI = 120
# No software version or timestamp in the PNG, so unchanged results give unchanged bytes.
_PNG_METADATA: dict[str, str | None] = {"Software": None}
_CURVE_SIZE = (12.0, 6.0)


# --------------------------------------------------------------------------------------------
# Loading and validation


def load_tables(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads ``out_dir/runs.parquet`` and ``out_dir/curves.parquet``.

    Raises:
        FileNotFoundError: naming the missing file.
    """
    out_dir = Path(out_dir)
    tables = []
    for name in ("runs.parquet", "curves.parquet"):
        path = out_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"result table {path} not found: reports are built from runs.parquet and "
                f"curves.parquet in the results folder; run the benchmark first or point to "
                f"the folder that holds them"
            )
        tables.append(pd.read_parquet(path))
    return tables[0], tables[1]


def _check_columns(df: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {', '.join(missing)}")


def _ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The ok rows, checked for duplicated cells (a seed counted twice would shrink the CI)."""
    _check_columns(runs, RUN_COLUMNS, "runs")
    ok = runs[runs["status"] == "ok"].copy()
    dup = ok.duplicated([*CELL, "seed"], keep=False)
    if dup.any():
        cells = ok.loc[dup, [*CELL, "seed"]].drop_duplicates().astype(str)
        shown = "; ".join(" / ".join(r) for r in cells.itertuples(index=False))
        raise ValueError(f"runs table has several ok rows for the same cell and seed: {shown}")
    return ok.sort_values([*CELL, "seed"], kind="mergesort").reset_index(drop=True)


@dataclass(frozen=True)
class _Curve:
    """One run's curve points, by step: annotations, accuracy %, mislabelled clear/ambiguous."""

    x: np.ndarray
    acc: np.ndarray
    clear: np.ndarray
    ambiguous: np.ndarray


def _curves_by_run(curves: pd.DataFrame, hashes: Iterable[str]) -> dict[str, _Curve]:
    """Curves of the given runs; every one of them must have at least its initial point."""
    _check_columns(curves, CURVE_COLUMNS, "curves")
    wanted = set(hashes)
    sub = curves[curves["config_hash"].isin(wanted)]
    sub = sub.sort_values(["config_hash", "step"], kind="mergesort")
    out: dict[str, _Curve] = {}
    for h, g in sub.groupby("config_hash", sort=False):
        out[str(h)] = _Curve(
            x=g["annotations"].to_numpy(np.float64),
            acc=g["accuracy"].to_numpy(np.float64),
            clear=g["mislabelled_clear"].to_numpy(np.float64),
            ambiguous=g["mislabelled_ambiguous"].to_numpy(np.float64),
        )
    missing = sorted(wanted - set(out))
    if missing:
        raise ValueError(
            f"curves table has no points for {len(missing)} ok run(s), "
            f"config_hash {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return out


# --------------------------------------------------------------------------------------------
# Aggregation


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95 % confidence half-width over the finite entries of ``values``.

    The half-width is ``t.ppf(0.975, n - 1) * sd / sqrt(n)`` (Student t, sample sd); NaN when
    fewer than two values are finite, and both are NaN when none is.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return float("nan"), float("nan")
    mean = float(v.mean())
    if n == 1:
        return mean, float("nan")
    half = float(stats.t.ppf(0.975, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return mean, half


def _efficiency(ok: pd.DataFrame, by_run: dict[str, _Curve]) -> pd.DataFrame:
    """Per ok run: ``efficiency`` and ``efficiency_unreached`` (DESIGN.md, "Curves and AUC").

    For each (dataset, learner, seed), A_R is the final accuracy of the ``"random"`` run,
    a_R the annotations it first reached A_R with and a_S the annotations strategy S first
    reached A_R with, both read from the curve points; efficiency = a_R / a_S (random = 1,
    higher = fewer annotations). It is NaN when there is no random run for that seed, when
    a_R = 0 (random never improved on the initial labels, so there is nothing to measure), or
    when S never reached A_R; the last case is flagged in ``efficiency_unreached``.
    """
    eff = np.full(len(ok), np.nan)
    unreached = np.zeros(len(ok), dtype=bool)
    random_runs = ok[ok["strategy"] == RANDOM]
    reference: dict[tuple[str, str, int], tuple[float, float]] = {}
    for row in random_runs.itertuples(index=False):
        c = by_run[str(row.config_hash)]
        a_final = float(c.acc[-1])
        key = (str(row.dataset), str(row.learner), int(row.seed))  # type: ignore[arg-type]
        reference[key] = (a_final, annotations_to_reach(c.x, c.acc, a_final))
    for i, row in enumerate(ok.itertuples(index=False)):
        key = (str(row.dataset), str(row.learner), int(row.seed))  # type: ignore[arg-type]
        if key not in reference:
            continue
        target, a_r = reference[key]
        if not a_r > 0:
            continue
        c = by_run[str(row.config_hash)]
        a_s = annotations_to_reach(c.x, c.acc, target)
        if np.isnan(a_s):
            unreached[i] = True
        elif a_s > 0:
            eff[i] = a_r / a_s
    return pd.DataFrame({"efficiency": eff, "efficiency_unreached": unreached}, index=ok.index)


def _group_info(runs: pd.DataFrame) -> pd.DataFrame:
    """Size, noise rate, budget and target of each group, from its ok runs when it has any.

    A group whose runs disagree (e.g. two budget multipliers mixed in one table) is reported
    with its largest value and a warning: its strategies were not compared on equal terms.
    """
    ok_first = runs.assign(_not_ok=runs["status"] != "ok").sort_values(
        [*GROUP, "_not_ok", "strategy", "seed"], kind="mergesort"
    )
    rows = []
    for (dataset, learner), g in ok_first.groupby(GROUP, sort=True):
        g = g[~g["_not_ok"]] if (~g["_not_ok"]).any() else g
        row: dict[str, object] = {"dataset": dataset, "learner": learner}
        for col in GROUP_INFO:
            values = pd.to_numeric(g[col], errors="coerce").dropna().unique()
            if len(values) > 1:
                warnings.warn(
                    f"group {dataset} / {learner} mixes runs with different {col}: "
                    f"{sorted(values.tolist())}; reporting the largest",
                    stacklevel=3,
                )
            row[col] = float(values.max()) if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=[*GROUP, *GROUP_INFO])


def leaderboard(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, learner, strategy), aggregated over the seeds of its ok runs.

    Columns: ``dataset, learner, rank, strategy, n_seeds, n_failed, n_skipped``, the group's
    ``n_samples, n_classes, noise_rate`` (fraction), ``budget, target_accuracy`` (%), then
    ``<metric>_mean`` and ``<metric>_ci`` (95 % half-width, NaN for one seed) for each of
    :data:`METRICS`, and ``n_target_reached`` (seeds that reached the target accuracy;
    ``annotations_to_target`` is averaged over those) and ``n_efficiency_unreached`` (seeds
    whose strategy never reached Random's final accuracy; ``efficiency`` is averaged over the
    others). Rows are sorted by group, then AUC descending (ties by strategy name); ``rank``
    is 1 for the best AUC of a group, tied AUCs share the lower rank.
    """
    ok = _ok_runs(runs)
    by_run = _curves_by_run(curves, ok["config_hash"].astype(str))
    ok = ok.join(_efficiency(ok, by_run))

    rows = []
    for (dataset, learner, strategy), g in ok.groupby(CELL, sort=True):
        row: dict[str, object] = {
            "dataset": dataset,
            "learner": learner,
            "strategy": strategy,
            "n_seeds": len(g),
        }
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_ci"] = mean_ci95(
                pd.to_numeric(g[m], errors="coerce").to_numpy(np.float64)
            )
        row["n_target_reached"] = int(g["annotations_to_target"].notna().sum())
        row["n_efficiency_unreached"] = int(g["efficiency_unreached"].sum())
        rows.append(row)
    metric_cols = [f"{m}_{s}" for m in METRICS for s in ("mean", "ci")]
    table = pd.DataFrame(
        rows,
        columns=[*CELL, "n_seeds", *metric_cols, "n_target_reached", "n_efficiency_unreached"],
    )

    status = runs[[*CELL, "status"]]
    counts = (
        status.assign(n=1)
        .pivot_table(index=CELL, columns="status", values="n", aggfunc="sum", fill_value=0)
        .reindex(columns=["failed", "skipped"], fill_value=0)
        .rename(columns={"failed": "n_failed", "skipped": "n_skipped"})
        .reset_index()
    )
    counts.columns.name = None
    table = table.merge(counts, on=CELL, how="left").merge(_group_info(runs), on=GROUP, how="left")
    for col in ("n_failed", "n_skipped"):
        table[col] = table[col].fillna(0).astype(np.int64)
    for col in ("n_samples", "n_classes", "budget"):
        table[col] = table[col].round().astype("Int64")  # counts, NA where a run lacks them

    table = table.sort_values(
        [*GROUP, "auc_mean", "strategy"], ascending=[True, True, False, True], kind="mergesort"
    ).reset_index(drop=True)
    table["rank"] = table.groupby(GROUP)["auc_mean"].rank(method="min", ascending=False).astype(np.int64)
    first = [*GROUP, "rank", "strategy", "n_seeds", "n_failed", "n_skipped", *GROUP_INFO]
    return table[first + [c for c in table.columns if c not in first]]


# --------------------------------------------------------------------------------------------
# Tables


def safe_name(text: str) -> str:
    """A file-system-safe version of a group or spec name (letters, digits, ``. _ -``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


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


def _finite(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v))


def _pm(mean: object, ci: object, digits: int) -> str:
    if not _finite(mean):
        return "—"
    text = f"{float(mean):.{digits}f}"  # type: ignore[arg-type]
    if _finite(ci):
        text += f" ± {float(ci):.{digits}f}"  # type: ignore[arg-type]
    return text


def _count(v: object) -> str:
    """A mean of counts: no decimals when it is a whole number."""
    if not _finite(v):
        return "—"
    f = float(v)  # type: ignore[arg-type]
    return f"{f:.0f}" if f.is_integer() else f"{f:.1f}"


def group_title(dataset: str, learner: str, info: dict[str, object]) -> str:
    """``"<dataset> — learner <learner> (N=5000, 15.4 % noise, budget 3076)"``."""
    parts = []
    if _finite(info.get("n_samples")):
        parts.append(f"N={int(info['n_samples'])}")  # type: ignore[call-overload]
    if _finite(info.get("noise_rate")):
        parts.append(f"{100 * float(info['noise_rate']):.1f} % noise")  # type: ignore[arg-type]
    if _finite(info.get("budget")):
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
        to_target = _pm(r["annotations_to_target_mean"], r["annotations_to_target_ci"], 0)
        if 0 < r["n_target_reached"] < n:
            to_target += f" ({r['n_target_reached']}/{n} seeds)"
        elif r["n_target_reached"] == 0:
            to_target = "not reached"
        eff = _pm(r["efficiency_mean"], r["efficiency_ci"], 2)
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
                "AUC": _pm(r["auc_mean"], r["auc_ci"], 4),
                "final acc. (%)": _pm(r["final_accuracy_mean"], r["final_accuracy_ci"], 2),
                "mislabelled corrected (%)": _pm(
                    r["pct_mislabelled_corrected_mean"], r["pct_mislabelled_corrected_ci"], 1
                ),
                target_label: to_target,
                "efficiency": eff,
                "left: clear / ambiguous": (
                    f"{_count(r['clear_mislabelled_left_mean'])} / "
                    f"{_count(r['ambiguous_mislabelled_left_mean'])}"
                ),
                "seeds": seeds,
            }
        )
    return pd.DataFrame(out)


def _markdown_table(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |"]
    lines.append("|" + "|".join("---:" if c == "rank" else "---" for c in df.columns) + "|")
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return "\n".join(lines)


def _failures(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "ok"]
    return bad.sort_values([*CELL, "seed"], kind="mergesort")


def _failure_lines(bad: pd.DataFrame, group_runs: pd.DataFrame) -> list[str]:
    """One line per reason: the cells it concerns (all of the group's, or the strategies and
    seeds), its status and the first line of the message."""
    lines = []
    bad = bad.assign(line=bad["error"].map(_error_line))
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


def _error_line(error: object) -> str:
    """First line of an error message, shortened; tracebacks stay in the runs table."""
    text = "" if error is None or (isinstance(error, float) and math.isnan(error)) else str(error)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else "(no message)"
    return first if len(first) <= 300 else first[:297] + "..."


_PREAMBLE = (
    "AUC: area under label accuracy against expert annotations on 0..budget, divided by "
    "budget × 100 (1 = perfect). Efficiency: annotations Random needs to first reach its own "
    "final accuracy ÷ annotations the strategy needs to reach it (Random = 1×, higher is "
    "better). ± is the 95 % Student-t confidence half-width over seeds. Left: mislabelled "
    "samples left at the end, clear / ambiguous (normalised entropy of the true label "
    "distribution > 0.3)."
)


@dataclass(frozen=True)
class _Section:
    dataset: str
    learner: str
    title: str
    file_name: str
    table: pd.DataFrame
    failures: list[str]


def _sections(runs: pd.DataFrame, board: pd.DataFrame) -> list[_Section]:
    """One section per group seen in ``runs``, including groups none of whose runs succeeded."""
    groups = sorted({(str(d), str(learner)) for d, learner in runs[GROUP].itertuples(index=False)})
    names = _group_file_names(groups)
    info = {
        (str(r["dataset"]), str(r["learner"])): {str(k): v for k, v in r.items()}
        for r in _group_info(runs).to_dict("records")
    }
    failures = _failures(runs)
    target_label = _target_label(board)
    sections = []
    for dataset, learner in groups:
        rows = board[(board["dataset"] == dataset) & (board["learner"] == learner)]
        bad = failures[(failures["dataset"] == dataset) & (failures["learner"] == learner)]
        listed = _failure_lines(bad, runs[(runs["dataset"] == dataset) & (runs["learner"] == learner)])
        sections.append(
            _Section(
                dataset=dataset,
                learner=learner,
                title=group_title(dataset, learner, info[(dataset, learner)]),
                file_name=names[(dataset, learner)],
                table=_display_table(rows, target_label),
                failures=listed,
            )
        )
    return sections


def _markdown(sections: list[_Section], has_plots: set[str]) -> str:
    parts = ["# Leaderboard", "", _PREAMBLE, ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if len(s.table):
            parts += [_markdown_table(s.table), ""]
        else:
            parts += ["No successful runs.", ""]
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
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
tbody tr:nth-child(even) { background: #fafafa; }
p.note { max-width: 60em; color: #555; }
"""


def _html(sections: list[_Section], has_plots: set[str]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>alcbench leaderboard</title>',
        f"<style>{_CSS}</style></head>",
        "<body>",
        "<h1>Leaderboard</h1>",
        f'<p class="note">{html.escape(_PREAMBLE)}</p>',
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if len(s.table):
            parts.append(s.table.to_html(index=False, border=0, escape=True))
        else:
            parts.append("<p>No successful runs.</p>")
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
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Plots


@dataclass(frozen=True)
class _Style:
    color: ColorType
    linestyle: str
    linewidth: float
    zorder: float


def _base_name(spec: str) -> str:
    return spec.split("[", 1)[0].strip()


def _styles(strategies: Iterable[str]) -> dict[str, _Style]:
    """One style per strategy spec, the same in every figure.

    Random is black dashed and the oracle grey dash-dotted (drawn on top, so the baselines
    stay recognisable); the others take tab20 colours by name, the dark shades first, leaving
    out tab20's greys, which would pass for the baselines.
    """
    cmap = mpl.colormaps["tab20"]
    order = [i for i in [*range(0, 20, 2), *range(1, 20, 2)] if i not in (14, 15)]
    styles: dict[str, _Style] = {}
    others = sorted(s for s in set(strategies) if _base_name(s) not in (RANDOM, ORACLE))
    for i, s in enumerate(others):
        styles[s] = _Style(cmap(order[i % len(order)]), "-", 1.5, 2.0)
    for s in sorted(set(strategies) - set(others)):
        if _base_name(s) == RANDOM:
            styles[s] = _Style("black", "--", 1.8, 3.0)
        else:
            styles[s] = _Style("0.45", "-.", 1.8, 3.0)
    return styles


def _grid_stats(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise mean and 95 % half-width (zero for one seed) over equally long curves."""
    stack = np.vstack(curves)
    mean = stack.mean(axis=0)
    n = stack.shape[0]
    if n < 2:
        return mean, np.zeros_like(mean)
    half = float(stats.t.ppf(0.975, n - 1)) * stack.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, half


@dataclass(frozen=True)
class _GroupCurves:
    grid: np.ndarray
    budget: float
    # strategy -> (mean, half-width) on the grid
    accuracy: dict[str, tuple[np.ndarray, np.ndarray]]
    clear: dict[str, tuple[np.ndarray, np.ndarray]]
    ambiguous: dict[str, tuple[np.ndarray, np.ndarray]]


def _group_curves(ok_group: pd.DataFrame, by_run: dict[str, _Curve], budget: float) -> _GroupCurves:
    """Each seed's curve interpolated on 0..max(budget, annotations spent), as the reference
    does, so the overshoot of the last selection stays visible past the budget line."""
    hashes = ok_group["config_hash"].astype(str).tolist()
    end = max([budget if _finite(budget) else 0.0] + [float(by_run[h].x[-1]) for h in hashes])
    top = max(int(math.ceil(end)), 1)
    grid = np.arange(top + 1, dtype=np.float64)
    acc: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    clear: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    amb: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for strategy, g in ok_group.groupby("strategy", sort=True):
        cs = [by_run[str(h)] for h in g["config_hash"]]
        acc[str(strategy)] = _grid_stats([curve_on_grid(c.x, c.acc, top) for c in cs])
        clear[str(strategy)] = _grid_stats([curve_on_grid(c.x, c.clear, top) for c in cs])
        amb[str(strategy)] = _grid_stats([curve_on_grid(c.x, c.ambiguous, top) for c in cs])
    return _GroupCurves(grid, budget, acc, clear, amb)


def _budget_line(ax: Axes, budget: float) -> None:
    if _finite(budget):
        ax.axvline(budget, color="0.55", linestyle=":", linewidth=1.2, zorder=1)
        ax.annotate(
            "budget",
            xy=(budget, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3, -3),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize="small",
            color="0.4",
        )


def _finish_axes(fig: Figure, ax: Axes, gc: _GroupCurves, title: str, ylabel: str) -> None:
    # A little room past the last point, so the budget line does not sit on the frame.
    ax.set_xlim(0, gc.grid[-1] * 1.015)
    ax.set_xlabel("expert annotations spent")
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_title(title, fontsize="medium", loc="left")


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png", metadata=_PNG_METADATA)
    return path


def _plot_accuracy(
    path: Path, title: str, gc: _GroupCurves, rows: pd.DataFrame, styles: dict[str, _Style]
) -> Path:
    fig = Figure(figsize=_CURVE_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    handles, labels = [], []
    for r in rows.itertuples(index=False):  # best AUC first, so the legend reads as the ranking
        s = str(r.strategy)
        st = styles[s]
        mean, half = gc.accuracy[s]
        (line,) = ax.plot(
            gc.grid,
            mean,
            color=st.color,
            linestyle=st.linestyle,
            linewidth=st.linewidth,
            zorder=st.zorder,
        )
        ax.fill_between(
            gc.grid, mean - half, mean + half, color=st.color, alpha=0.15, linewidth=0, zorder=st.zorder - 1
        )
        handles.append(line)
        labels.append(f"{_pm(r.auc_mean, r.auc_ci, 4)}   {s}")
    _budget_line(ax, gc.budget)
    _finish_axes(fig, ax, gc, title, "label accuracy (%)")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, min(top, 100.5))  # a CI band may poke past 100 %; accuracy cannot
    _legend(fig, handles, labels, "AUC (mean ± 95 % CI)   strategy")
    return _save(fig, path)


def _plot_mislabelled(
    path: Path, title: str, gc: _GroupCurves, rows: pd.DataFrame, styles: dict[str, _Style]
) -> Path:
    fig = Figure(figsize=_CURVE_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    handles: list[Line2D] = []
    labels: list[str] = []
    for r in rows.itertuples(index=False):
        s = str(r.strategy)
        st = styles[s]
        for series, ls in ((gc.clear, "-"), (gc.ambiguous, "--")):
            ax.plot(
                gc.grid, series[s][0], color=st.color, linestyle=ls, linewidth=st.linewidth, zorder=st.zorder
            )
        handles.append(Line2D([], [], color=st.color, linewidth=2.5))
        labels.append(s)
    handles += [
        Line2D([], [], color="0.3", linestyle="-", linewidth=1.5),
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.5),
    ]
    labels += ["clear (solid)", "ambiguous (dashed)"]
    _budget_line(ax, gc.budget)
    _finish_axes(fig, ax, gc, title, "mislabelled samples left (mean over seeds)")
    ax.set_ylim(bottom=0)
    _legend(fig, handles, labels, "strategy (by AUC)")
    return _save(fig, path)


def _legend(fig: Figure, handles: list[Line2D], labels: list[str], title: str) -> None:
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize="small",
        frameon=False,
        title=title,
        title_fontsize="small",
        alignment="left",
    )


def _plot_overview(
    path: Path, sections: list[_Section], board: pd.DataFrame, styles: dict[str, _Style]
) -> Path:
    """Horizontal bars of AUC mean ± 95 % CI, one panel per group, best strategy on top."""
    panels = [(s, board[(board["dataset"] == s.dataset) & (board["learner"] == s.learner)]) for s in sections]
    panels = [(s, rows) for s, rows in panels if len(rows)]
    heights = [0.3 * len(rows) + 0.9 for _, rows in panels]
    fig = Figure(figsize=(9.0, sum(heights) + 0.4), dpi=_DPI, layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (section, rows) in zip(axes, panels, strict=True):
        means = rows["auc_mean"].to_numpy(np.float64)
        cis = np.nan_to_num(rows["auc_ci"].to_numpy(np.float64), nan=0.0)
        y = np.arange(len(rows))[::-1]
        colors = [styles[str(s)].color for s in rows["strategy"]]
        lo, hi = float(np.min(means - cis)), float(np.max(means + cis))
        pad = max(0.08 * (hi - lo), 0.002)
        left = max(lo - 3 * pad, 0.0)
        ax.barh(
            y,
            means - left,
            left=left,
            xerr=cis,
            color=colors,
            height=0.7,
            error_kw={"elinewidth": 1.0, "capsize": 2.5, "ecolor": "0.2"},
        )
        for yi, m, c in zip(y, means, cis, strict=True):
            ax.text(m + c + 0.4 * pad, yi, f"{m:.4f}", va="center", fontsize="x-small")
        ax.set_yticks(y, [str(s) for s in rows["strategy"]], fontsize="small")
        ax.set_xlim(left, hi + 2.5 * pad)
        ax.set_title(section.title, fontsize="small", loc="left")
        ax.grid(True, axis="x", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[-1].set_xlabel("AUC (mean ± 95 % CI over seeds; axis does not start at 0)")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Writing


def write_report(out_dir: Path, runs: pd.DataFrame, curves: pd.DataFrame) -> list[Path]:
    """Writes the leaderboard (csv, md, html) and the plots into ``out_dir``.

    Files: ``leaderboard.csv`` (every column of :func:`leaderboard`), ``leaderboard.md`` and
    ``leaderboard.html`` (one compact table per group, plus its failed or skipped cells), and
    under ``plots/``: ``<group>.png`` (label accuracy against annotations, mean ± 95 % CI over
    seeds), ``<group>_mislabelled.png`` (mislabelled samples left, clear and ambiguous) for each
    group with successful runs, and ``auc_overview.png``. ``<group>`` is
    ``<dataset>__<learner>`` with characters other than letters, digits and ``. _ -`` replaced.
    The same tables give byte-identical outputs. Returns the paths written, in that order.
    """
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    board = leaderboard(runs, curves)
    sections = _sections(runs, board)
    ok = _ok_runs(runs)
    by_run = _curves_by_run(curves, ok["config_hash"].astype(str))
    styles = _styles(board["strategy"].astype(str))

    written: list[Path] = []
    csv_path = out_dir / "leaderboard.csv"
    write_bytes(csv_path, board.to_csv(index=False, lineterminator="\n").encode())
    written.append(csv_path)

    figures: list[Path] = []
    with_plots: set[str] = set()
    # The default style, not the user's matplotlibrc: same input, same PNG.
    with matplotlib.style.context("default"):
        for s in sections:
            rows = board[(board["dataset"] == s.dataset) & (board["learner"] == s.learner)]
            if not len(rows):
                continue
            group_ok = ok[(ok["dataset"] == s.dataset) & (ok["learner"] == s.learner)]
            budget = rows["budget"].iloc[0]
            gc = _group_curves(group_ok, by_run, float(budget) if pd.notna(budget) else math.nan)
            figures.append(_plot_accuracy(plots / f"{s.file_name}.png", s.title, gc, rows, styles))
            figures.append(
                _plot_mislabelled(plots / f"{s.file_name}_mislabelled.png", s.title, gc, rows, styles)
            )
            with_plots.add(s.file_name)
        if len(board):
            figures.append(_plot_overview(plots / "auc_overview.png", sections, board, styles))

    for name, text in (
        ("leaderboard.md", _markdown(sections, with_plots)),
        ("leaderboard.html", _html(sections, with_plots)),
    ):
        path = out_dir / name
        write_bytes(path, text.encode("utf-8"))
        written.append(path)
    return written + figures
