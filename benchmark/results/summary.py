"""Strategies compared across settings: ranks and paired differences against two references.

Pure aggregation, like :mod:`benchmark.results.leaderboard`: the runs table in, DataFrames out,
no I/O. A *setting* is a (dataset, learner) group. Within a setting every strategy ran on the
same seeds, and a seed fixes the noisy labels, the posteriors and the expert's draws for every
strategy alike, so two strategies' AUCs are *paired* by seed: their difference on a seed has
the seed's luck taken out.

:func:`setting_table` gives one row per (setting, strategy): its mean AUC over seeds, its rank
in the setting (1 = best, ties averaged) and, against each reference, the paired difference of
AUC over the seeds both ran (strategy minus reference): its mean, the 95 % paired t interval
(``t.ppf(0.975, n - 1) * sd / sqrt(n)`` over the n differences) and the outcome, a *win* when
the interval lies above 0, a *loss* when below, a *tie* otherwise (also with fewer than two
shared seeds, where there is no interval). The references are

* ``eq2``: the paper's Eq. 2 with the reference code's hinge, :data:`EQ2`;
* ``best``: the best built-in strategy of the setting by mean AUC, other than the strategy
  itself; built-in strategies are the plugin names the caller passes (those shipped with the
  project, not a user's, and not the oracle, which reads the truth);
* ``random``: Random (for the heat map of :mod:`benchmark.results.summary_plot`).

:func:`summary` turns it into one row per strategy, sorted by mean rank: the mean rank over the
settings it ran in, and per reference the mean over settings of the paired mean differences,
its interval (settings taken as fixed, each setting's seed-level uncertainty combined, Welch
Satterthwaite degrees of freedom), the win / tie / loss counts and the number of settings
compared; then per setting the mean AUC, the rank and both comparisons. A setting where the
strategy or the reference did not run is left out of that comparison. No correction is made
for testing in many settings: the counts describe, they do not test a family.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.params import format_spec, parse_spec, spec_sort_key
from benchmark.results.leaderboard import ORACLE, RANDOM, group_key, ok_runs

#: The paper's Eq. 2 with the reference code's hinge, as the tables name it (its canonical spec).
EQ2 = format_spec(*parse_spec("eq2[hinge=0.3]"))
#: The references, by the prefix of their columns.
REFERENCES = ("eq2", "best", "random")
#: The references :func:`summary` reports.
SUMMARY_REFERENCES = ("eq2", "best")
OUTCOMES = ("win", "tie", "loss")
#: How an active run's label starts after its strategy (see ``CellConfig.strategy_label``).
ACTIVE = " (active"
#: Each setting's columns in :func:`summary`, after ``"<setting>: "``.
SETTING_FIELDS = (
    "auc",
    "rank",
    "n_seeds",
    *(f"vs_{r}_{k}" for r in SUMMARY_REFERENCES for k in ("mean", "lo", "hi")),
    "best_builtin",
)


def setting_name(dataset: object, learner: object) -> str:
    """How a setting is named in columns and figures: ``"<dataset> / <learner>"``."""
    return f"{dataset} / {learner}"


def paired_interval(diffs: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % paired t interval (lower, upper) of the finite per-seed differences; the
    bounds are NaN with fewer than two, all three with none."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = d.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def outcome(lo: float, hi: float) -> str:
    """``"win"`` when the interval lies above 0, ``"loss"`` below, ``"tie"`` otherwise
    (an interval that touches 0, or none)."""
    if lo > 0:
        return "win"
    if hi < 0:
        return "loss"
    return "tie"


def combined_interval(means: np.ndarray, sds: np.ndarray, ns: np.ndarray) -> tuple[float, float, float]:
    """The mean of per-setting mean differences and its 95 % interval, the settings fixed:
    variance ``sum(sd_k^2 / n_k) / K^2``, t quantile with Welch-Satterthwaite degrees of
    freedom. NaN bounds when a setting has fewer than two seeds; no settings: all NaN."""
    means, sds, ns = (np.asarray(a, dtype=np.float64) for a in (means, sds, ns))
    k = means.size
    if k == 0:
        return math.nan, math.nan, math.nan
    mean = float(means.mean())
    if not (np.all(ns >= 2) and np.all(np.isfinite(sds))):
        return mean, math.nan, math.nan
    v = sds**2 / ns
    if not float(v.sum()) > 0:
        return mean, mean, mean
    df = float(v.sum()) ** 2 / float(np.sum(v**2 / (ns - 1)))
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(float(v.sum())) / k
    return mean, mean - half, mean + half


def plugin_name(label: str, spec: object = None) -> str:
    """The strategy plugin's name of a label: from its spec when the table has one, else from
    the label with the active run's suffix taken off."""
    text = str(spec) if isinstance(spec, str) and spec.strip() else str(label).partition(ACTIVE)[0]
    try:
        return parse_spec(text)[0]
    except ValueError:
        return text.strip()


def _best(means: pd.Series, builtin: Collection[str], plugins: dict[str, str], other_than: str) -> str | None:
    """The built-in strategy (not the oracle) with the best mean AUC, other than ``other_than``;
    ties to the first by spec order."""
    candidates = [
        s
        for s in means.index
        if s != other_than and plugins[s] in builtin and plugins[s] != ORACLE and math.isfinite(means[s])
    ]
    if not candidates:
        return None
    return sorted(candidates, key=lambda s: (-float(means[s]), spec_sort_key(s)))[0]


def setting_table(runs: pd.DataFrame, builtin: Collection[str], reference: str = EQ2) -> pd.DataFrame:
    """One row per (setting, strategy) from the ok runs: ``dataset, learner, setting, strategy,
    n_seeds, auc_mean, rank``, then per reference ``r`` of :data:`REFERENCES`: ``r_reference``
    (its label; empty when there is none), ``r_n`` (shared seeds, 0 when left out),
    ``r_mean``, ``r_sd``, ``r_lo``, ``r_hi`` (the paired differences' mean, sd and 95 %
    interval) and ``r_outcome`` (win, tie or loss; empty when left out). ``builtin``: the
    plugin names that may be the best built-in. Settings in group order, then by rank."""
    ok = ok_runs(runs)
    ok = ok[np.isfinite(pd.to_numeric(ok["auc"], errors="coerce").to_numpy(np.float64))]
    specs = ok["strategy_spec"] if "strategy_spec" in ok else pd.Series(None, index=ok.index)
    plugins = {str(s): plugin_name(str(s), p) for s, p in zip(ok["strategy"], specs, strict=True)}
    groups = sorted(
        {(str(d), str(le)) for d, le in zip(ok["dataset"], ok["learner"], strict=True)}, key=group_key
    )
    rows = []
    for dataset, learner in groups:
        g = ok[(ok["dataset"] == dataset) & (ok["learner"] == learner)]
        auc = g.pivot(index="seed", columns="strategy", values="auc").astype(np.float64)
        auc.columns = [str(c) for c in auc.columns]
        means = auc.mean(axis=0)
        ranks = means.rank(method="average", ascending=False)
        order = sorted(auc.columns, key=lambda s: (float(ranks[s]), spec_sort_key(s)))
        for s in order:
            row: dict[str, object] = {
                "dataset": dataset,
                "learner": learner,
                "setting": setting_name(dataset, learner),
                "strategy": s,
                "n_seeds": int(auc[s].notna().sum()),
                "auc_mean": float(means[s]),
                "rank": float(ranks[s]),
            }
            refs = {
                "eq2": reference,
                "best": _best(means, builtin, plugins, other_than=s),
                "random": RANDOM,
            }
            for key, ref in refs.items():
                row.update(_compare(auc, s, ref, key))
            rows.append(row)
    columns = ["dataset", "learner", "setting", "strategy", "n_seeds", "auc_mean", "rank"]
    columns += [
        f"{r}_{k}" for r in REFERENCES for k in ("reference", "n", "mean", "sd", "lo", "hi", "outcome")
    ]
    return pd.DataFrame(rows, columns=columns)


def _compare(auc: pd.DataFrame, strategy: str, reference: str | None, key: str) -> dict[str, object]:
    """The paired comparison of ``strategy`` with ``reference`` over the seeds both ran."""
    out: dict[str, object] = {f"{key}_reference": reference or "", f"{key}_n": 0, f"{key}_outcome": ""}
    out.update({f"{key}_{k}": math.nan for k in ("mean", "sd", "lo", "hi")})
    if reference is None or reference == strategy or reference not in auc.columns:
        return out
    d = (auc[strategy] - auc[reference]).dropna().to_numpy(np.float64)
    if not d.size:
        return out
    mean, lo, hi = paired_interval(d)
    out.update(
        {
            f"{key}_n": int(d.size),
            f"{key}_mean": mean,
            f"{key}_sd": float(d.std(ddof=1)) if d.size > 1 else math.nan,
            f"{key}_lo": lo,
            f"{key}_hi": hi,
            f"{key}_outcome": outcome(lo, hi),
        }
    )
    return out


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy of a :func:`setting_table`, by mean rank (ties by spec order).

    Columns: ``rank`` (position by mean rank, ties share the lower one), ``strategy``,
    ``mean_rank``, ``n_settings``; per reference ``r`` of :data:`SUMMARY_REFERENCES`:
    ``vs_r_mean`` (mean over the settings compared of the paired mean differences),
    ``vs_r_lo``, ``vs_r_hi`` (:func:`combined_interval`), ``vs_r_win``, ``vs_r_tie``,
    ``vs_r_loss`` and ``vs_r_settings`` (settings compared); then per setting, in group order,
    ``"<setting>: <field>"`` for each field of :data:`SETTING_FIELDS` (empty where the strategy
    did not run; ``best_builtin`` names the best built-in it was compared with).
    """
    settings = list(dict.fromkeys(table["setting"]))
    head = ["rank", "strategy", "mean_rank", "n_settings"]
    for r in SUMMARY_REFERENCES:
        head += [f"vs_{r}_{k}" for k in ("mean", "lo", "hi", *OUTCOMES, "settings")]
    wide = [f"{s}: {f}" for s in settings for f in SETTING_FIELDS]
    rows = []
    for strategy, g in table.groupby("strategy", sort=False):
        row: dict[str, object] = {
            "strategy": str(strategy),
            "mean_rank": float(g["rank"].mean()),
            "n_settings": len(g),
        }
        for r in SUMMARY_REFERENCES:
            used = g[g[f"{r}_n"] > 0]
            mean, lo, hi = combined_interval(
                used[f"{r}_mean"].to_numpy(), used[f"{r}_sd"].to_numpy(), used[f"{r}_n"].to_numpy()
            )
            row.update({f"vs_{r}_mean": mean, f"vs_{r}_lo": lo, f"vs_{r}_hi": hi})
            for o in OUTCOMES:
                row[f"vs_{r}_{o}"] = int((used[f"{r}_outcome"] == o).sum())
            row[f"vs_{r}_settings"] = len(used)
        for rec in g.to_dict("records"):
            s = rec["setting"]
            row.update(
                {f"{s}: auc": rec["auc_mean"], f"{s}: rank": rec["rank"], f"{s}: n_seeds": rec["n_seeds"]}
            )
            for r in SUMMARY_REFERENCES:
                for k in ("mean", "lo", "hi"):
                    row[f"{s}: vs_{r}_{k}"] = rec[f"{r}_{k}"]
            row[f"{s}: best_builtin"] = rec["best_reference"]
        rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in head + wide if c != "rank"])
    if len(out):
        key = [(float(m), spec_sort_key(s)) for m, s in zip(out["mean_rank"], out["strategy"], strict=True)]
        out = out.iloc[sorted(range(len(out)), key=key.__getitem__)].reset_index(drop=True)
    out.insert(0, "rank", out["mean_rank"].rank(method="min").astype("Int64"))
    for c in out.columns:
        if c.endswith((": n_seeds", "_win", "_tie", "_loss", "_settings")) or c == "n_settings":
            out[c] = out[c].astype("Int64")
    return out


def summary_csv(table: pd.DataFrame) -> str:
    """A :func:`summary` as CSV text: fixed float format, ``\\n`` line ends, empty cells for
    missing values, so the same table gives the same bytes."""
    return table.to_csv(index=False, float_format="%.6f", lineterminator="\n")


def heatmap_frame(table: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """The AUC difference against Random of each strategy of ``order`` but Random (rows, in
    that order) in each setting (in group order): ``strategy, setting, delta, lo, hi,
    outcome``, NaN and empty where the strategy or Random did not run."""
    settings = list(dict.fromkeys(table["setting"]))
    cells = table.set_index(["strategy", "setting"])
    rows = []
    for s in (s for s in order if s != RANDOM):
        for setting in settings:
            rec = cells.loc[(s, setting)] if (s, setting) in cells.index else None
            ran = rec is not None and int(rec["random_n"]) > 0
            rows.append(
                {
                    "strategy": s,
                    "setting": setting,
                    "delta": float(rec["random_mean"]) if ran else math.nan,  # type: ignore[index]
                    "lo": float(rec["random_lo"]) if ran else math.nan,  # type: ignore[index]
                    "hi": float(rec["random_hi"]) if ran else math.nan,  # type: ignore[index]
                    "outcome": str(rec["random_outcome"]) if ran else "",  # type: ignore[index]
                }
            )
    return pd.DataFrame(rows, columns=["strategy", "setting", "delta", "lo", "hi", "outcome"])
