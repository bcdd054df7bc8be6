"""The proof behind the committed results: every cell re-run from scratch, compared with them.

``alcbench reproduce results`` (``make reproduce``) runs the cells of the default suite again
in a scratch folder, from nothing but the code, the data and the shipped posteriors, and
compares each run row and each curve with the committed ones, value for value: numbers must be
equal bit for bit (two NaNs are equal). The provenance columns (versions, commit) and the
identity are left out of the comparison, and so is the message of a skipped cell (it may name
the folders of the machine that wrote it). A cell whose inputs are not here (a data file
absent) cannot be re-run; it is counted apart, never called equal.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: Run-table columns that say who made a row rather than what it found.
PROVENANCE = (
    "cell_id",
    "alcbench_version",
    "commit",
    "numpy_version",
    "torch_version",
    "cleanlab_version",
    "plugin_path",
)


@dataclass
class Comparison:
    """What :func:`compare` found.

    Attributes:
        equal: cells re-run whose row and curve equal the committed ones.
        differ: one line per cell that differs, saying where.
        not_here: cells that could not be re-run here (their inputs are absent).
    """

    equal: int = 0
    differ: list[str] = field(default_factory=list)
    not_here: list[str] = field(default_factory=list)

    @property
    def rerun(self) -> int:
        return self.equal + len(self.differ)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if (
        a is None
        or b is None
        or (isinstance(a, float) and math.isnan(a))
        or (isinstance(b, float) and math.isnan(b))
    ):
        return _missing(a) and _missing(b)
    return bool(a == b)


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _name(row: Mapping[Hashable, Any]) -> str:
    return f"{row['dataset']} / {row['learner']} / {row['strategy']} / seed {row['seed']}"


def compare(
    committed_runs: pd.DataFrame,
    committed_curves: pd.DataFrame,
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    not_here: set[str],
) -> Comparison:
    """Compares the re-run tables (``runs``, ``curves``) with the committed ones, cell by cell;
    ``not_here`` holds the config hashes of the cells whose inputs were absent."""
    result = Comparison()
    before = {r["config_hash"]: r for r in committed_runs.to_dict("records")}
    old_curves = {h: g.reset_index(drop=True) for h, g in committed_curves.groupby("config_hash", sort=False)}
    new_curves = {h: g.reset_index(drop=True) for h, g in curves.groupby("config_hash", sort=False)}
    for row in runs.to_dict("records"):
        h = row["config_hash"]
        if h in not_here:
            result.not_here.append(_name(row))
            continue
        old = before.get(h)
        if old is None:
            result.differ.append(f"{_name(row)}: not in the committed results")
            continue
        columns = [c for c in dict.fromkeys([*old, *row]) if c not in PROVENANCE]
        if row.get("status") == "skipped" and old.get("status") == "skipped":
            columns = [c for c in columns if c != "error"]
        wrong = [c for c in columns if not _same(old.get(c), row.get(c))]
        if wrong:
            shown = ", ".join(f"{c} {old.get(c)!r} committed, {row.get(c)!r} now" for c in wrong[:3])
            more = f" and {len(wrong) - 3} more columns" if len(wrong) > 3 else ""
            result.differ.append(f"{_name(row)}: {shown}{more}")
            continue
        a, b = old_curves.get(h), new_curves.get(h)
        if (a is None) != (b is None) or (a is not None and b is not None and not a.equals(b)):
            result.differ.append(f"{_name(row)}: its curve differs")
            continue
        result.equal += 1
    return result


def summary(result: Comparison) -> list[str]:
    """The lines ``alcbench reproduce`` prints."""
    lines = []
    if result.differ:
        lines.append(f"{result.rerun} cells re-run, {len(result.differ)} differ from the committed results:")
        lines += [f"  {line}" for line in result.differ]
    else:
        lines.append(f"{result.rerun} cells re-run, all equal to the committed results")
    if result.not_here:
        lines.append(
            f"{len(result.not_here)} cells not re-run: their inputs are not here (e.g. {result.not_here[0]})"
        )
    return lines
