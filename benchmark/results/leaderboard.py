"""Aggregation of the result tables: DataFrames in, DataFrames out, no I/O.

Inputs are the two tables a benchmark writes (:mod:`benchmark.results.tables`):

* ``runs``: one row per cell (dataset, learner, strategy, seed) with its ``status``
  (``"ok"``, ``"failed"`` or ``"skipped"``), the group's size, noise rate and budget, and for ok
  rows the metrics of :func:`benchmark.simulation.metrics.run_metrics`;
* ``curves``: one row per curve point of a run (``config_hash``, ``step``, ``annotations``,
  ``accuracy`` in %, ``mislabelled_clear``, ``mislabelled_ambiguous``).

A *group* is (dataset, learner): strategies are compared within a group and seeds are
replicates. Aggregates are the mean over seeds and the 95 % Student-t confidence half-width.
:func:`leaderboard` gives one row per strategy of a group, :func:`curve_bands` the mean curves
with their bands; the figures (:mod:`benchmark.results.plots`) and pages (:mod:`benchmark.report.pages`)
both read these two frames.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.params import spec_sort_key
from benchmark.results.tables import CELL, CURVE_COLUMNS, GROUP, RUN_COLUMNS
from benchmark.simulation.diagnostics import PICK_COLUMNS
from benchmark.simulation.metrics import annotations_to_reach, curve_on_grid

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
    # where the first picks fall (benchmark.simulation.diagnostics); absent from older runs tables
    *PICK_COLUMNS,
)
GROUP_INFO = ("n_samples", "n_classes", "noise_rate", "budget", "target_accuracy")
#: The curve columns aggregation reads (the selected sample is not needed).
CURVE_POINT_COLUMNS = tuple(c for c in CURVE_COLUMNS if c != "sample")
#: The series of :func:`curve_bands`, each as ``<series>_mean`` and ``<series>_ci``.
BAND_SERIES = ("accuracy", "clear", "ambiguous")


def check_columns(df: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {', '.join(missing)}")


def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The ok rows, checked for duplicated cells (a seed counted twice would shrink the CI)."""
    check_columns(runs, RUN_COLUMNS, "runs")
    ok = runs[runs["status"] == "ok"].copy()
    dup = ok.duplicated([*CELL, "seed"], keep=False)
    if dup.any():
        cells = ok.loc[dup, [*CELL, "seed"]].drop_duplicates().astype(str)
        shown = "; ".join(" / ".join(r) for r in cells.itertuples(index=False))
        raise ValueError(f"runs table has several ok rows for the same cell and seed: {shown}")
    return ok.sort_values([*CELL, "seed"], kind="mergesort").reset_index(drop=True)


@dataclass(frozen=True)
class RunCurve:
    """One run's curve points, by step: annotations, accuracy %, mislabelled clear/ambiguous."""

    x: np.ndarray
    acc: np.ndarray
    clear: np.ndarray
    ambiguous: np.ndarray


def curves_by_run(curves: pd.DataFrame, hashes: Iterable[str]) -> dict[str, RunCurve]:
    """Curves of the given runs; every one of them must have at least its initial point."""
    check_columns(curves, CURVE_POINT_COLUMNS, "curves")
    wanted = set(hashes)
    sub = curves[curves["config_hash"].isin(wanted)]
    sub = sub.sort_values(["config_hash", "step"], kind="mergesort")
    out: dict[str, RunCurve] = {}
    for h, g in sub.groupby("config_hash", sort=False):
        out[str(h)] = RunCurve(
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


def _efficiency(ok: pd.DataFrame, by_run: dict[str, RunCurve]) -> pd.DataFrame:
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


def group_info(runs: pd.DataFrame) -> pd.DataFrame:
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
    ok = ok_runs(runs)
    by_run = curves_by_run(curves, ok["config_hash"].astype(str))
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
            values = g[m] if m in g else pd.Series(np.nan, index=g.index)
            row[f"{m}_mean"], row[f"{m}_ci"] = mean_ci95(
                pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
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
    table = table.merge(counts, on=CELL, how="left").merge(group_info(runs), on=GROUP, how="left")
    for col in ("n_failed", "n_skipped"):
        table[col] = table[col].fillna(0).astype(np.int64)
    for col in ("n_samples", "n_classes", "budget"):
        table[col] = table[col].round().astype("Int64")  # counts, NA where a run lacks them

    # Groups in natural order (T=2 before T=10), then by AUC, best first.
    groups = list(zip(table["dataset"], table["learner"], strict=True))
    group_rank = {g: i for i, g in enumerate(sorted(set(groups), key=group_key))}
    table = (
        table.assign(_group=[group_rank[g] for g in groups])
        .sort_values(["_group", "auc_mean", "strategy"], ascending=[True, False, True], kind="mergesort")
        .drop(columns="_group")
        .reset_index(drop=True)
    )
    table["rank"] = table.groupby(GROUP)["auc_mean"].rank(method="min", ascending=False).astype(np.int64)
    first = [*GROUP, "rank", "strategy", "n_seeds", "n_failed", "n_skipped", *GROUP_INFO]
    return table[first + [c for c in table.columns if c not in first]]


def group_key(group: tuple[str, str]) -> tuple[object, ...]:
    """Sort key of a (dataset, learner) group: parameters compared as numbers, so that
    ``cifar10h[temperature=2]`` comes before ``cifar10h[temperature=10]``."""
    return (spec_sort_key(str(group[0])), spec_sort_key(str(group[1])))


def is_finite(v: object) -> bool:
    """Whether ``v`` is a finite number (False for None, strings and NA)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v))


def _grid_stats(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise mean and 95 % half-width (zero for one seed) over equally long curves."""
    stack = np.vstack(curves)
    mean = stack.mean(axis=0)
    n = stack.shape[0]
    if n < 2:
        return mean, np.zeros_like(mean)
    half = float(stats.t.ppf(0.975, n - 1)) * stack.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, half


def curve_bands(runs: pd.DataFrame, curves: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Mean curves over seeds with their 95 % bands, per (dataset, learner, strategy).

    Each seed's curve is interpolated on the integer grid 0..top of its group, where top is
    the larger of the group's budget (from ``board``, the :func:`leaderboard`) and the most
    annotations any of its runs spent (as the reference does, so the overshoot of the last
    selection stays visible past the budget line).

    Columns: ``dataset, learner, strategy, annotations``, then ``accuracy_mean, accuracy_ci``
    (label accuracy, %), ``clear_mean, clear_ci`` and ``ambiguous_mean, ambiguous_ci``
    (mislabelled samples left); the half-widths are 0 for a single seed.
    """
    ok = ok_runs(runs)
    by_run = curves_by_run(curves, ok["config_hash"].astype(str))
    frames = []
    for (dataset, learner), group in ok.groupby(GROUP, sort=True):
        rows = board[(board["dataset"] == dataset) & (board["learner"] == learner)]
        budget = float(rows["budget"].iloc[0]) if len(rows) and pd.notna(rows["budget"].iloc[0]) else math.nan
        hashes = group["config_hash"].astype(str).tolist()
        end = max([budget if is_finite(budget) else 0.0] + [float(by_run[h].x[-1]) for h in hashes])
        top = max(int(math.ceil(end)), 1)
        for strategy, g in group.groupby("strategy", sort=True):
            cs = [by_run[str(h)] for h in g["config_hash"]]
            frame: dict[str, object] = {
                "dataset": dataset,
                "learner": learner,
                "strategy": strategy,
                "annotations": np.arange(top + 1, dtype=np.float64),
            }
            for series, attr in zip(BAND_SERIES, ("acc", "clear", "ambiguous"), strict=True):
                mean, half = _grid_stats([curve_on_grid(c.x, getattr(c, attr), top) for c in cs])
                frame[f"{series}_mean"], frame[f"{series}_ci"] = mean, half
            frames.append(pd.DataFrame(frame))
    columns = [*CELL, "annotations", *(f"{s}_{k}" for s in BAND_SERIES for k in ("mean", "ci"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
