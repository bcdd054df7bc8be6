"""The side tables of a results folder: when active runs re-fitted their learner and how long
each re-fit took (``refit_timings.csv``, wall clock, so kept apart from the result tables),
and the inputs datasets dropped as unreadable (``skipped_inputs.csv``)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import pandas as pd

from benchmark.atomic import write_bytes
from benchmark.config import CellConfig
from benchmark.results.tables import CELLS
from benchmark.task import CleaningTask


def write_refit_timings(
    out_dir: Path, configs: Sequence[CellConfig], *, keep: Collection[str] = ()
) -> pd.DataFrame:
    """Writes ``refit_timings.csv``: when each active run re-fitted its learner and the seconds
    it took (wall clock, so kept apart from the result tables). The earlier rows of the cells
    in ``keep`` (config hashes: the runs a merging command keeps) stay; returns this command's."""
    rows = []
    for config in configs:
        path = out_dir / CELLS / f"{config.hash}.refits.json"
        if config.active_every and path.is_file():
            for i, entry in enumerate(json.loads(path.read_text())):
                rows.append({**config.row(), "refit": i, **entry})
    table = pd.DataFrame(rows)
    earlier = _earlier_side_rows(out_dir / "refit_timings.csv", "config_hash", keep)
    if rows or len(earlier):
        both = pd.concat([earlier, table], ignore_index=True) if len(earlier) else table
        write_bytes(out_dir / "refit_timings.csv", both.to_csv(index=False).encode())
    return table


def _earlier_side_rows(path: Path, column: str, keep: Collection[str]) -> pd.DataFrame:
    """The rows of the side table ``path`` whose ``column`` is in ``keep`` (none to keep, or
    no such table: an empty frame)."""
    if not keep or not path.is_file():
        return pd.DataFrame()
    earlier = pd.read_csv(path, dtype=str)  # written back as it was read
    return earlier[earlier[column].isin(set(keep))] if column in earlier.columns else pd.DataFrame()


def write_skipped_inputs(
    out_dir: Path, tasks: Mapping[str, CleaningTask], *, keep: Collection[str] = ()
) -> pd.DataFrame:
    """Writes ``skipped_inputs.csv``: every input a dataset dropped as unreadable, and why. The
    earlier rows of the datasets in ``keep`` (those a merging command keeps runs of and did not
    load) stay; returns this command's."""
    rows = [
        {"dataset": name, **{k: str(v) for k, v in entry.items()}}
        for name, task in sorted(tasks.items())
        for entry in task.info.get("skipped_inputs", [])
    ]
    table = pd.DataFrame(rows, columns=None if rows else ["dataset", "sample_id", "file", "reason"])
    path = out_dir / "skipped_inputs.csv"
    earlier = _earlier_side_rows(path, "dataset", set(keep) - set(tasks))
    if rows or path.exists():
        both = pd.concat([earlier, table], ignore_index=True) if len(earlier) else table
        write_bytes(path, both.to_csv(index=False).encode())
    return table
