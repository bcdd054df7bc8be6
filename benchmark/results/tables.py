"""The results schema and its I/O: cell files, the long-format tables and provenance (the
side tables, re-fit timings and skipped inputs, are :mod:`benchmark.results.side_tables`).

Layout of a results folder (DESIGN.md, "Results"):

- ``cells/<config hash>.json``: one run row per cell, written as the cell finishes;
  ``cells/<config hash>.curve.parquet``: its curve points; ``cells/<hash>.refits.json``: the
  wall-clock cost of an active run's re-fits;
- ``runs.parquet`` / ``runs.csv``: one row per run (:data:`RUN_COLUMNS` first);
  ``curves.parquet``: one row per curve point (:data:`CURVE_COLUMNS`). Both are rebuilt from
  the cell files, and every report is built from them alone;
- ``refit_timings.csv`` and ``skipped_inputs.csv`` when there is something to list.

Every file is replaced atomically, so an interrupted run never leaves a half-written one.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import tempfile
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import benchmark
from benchmark.atomic import atomic_path, file_lock, write_bytes
from benchmark.config import CellConfig
from benchmark.params import spec_order
from benchmark.task import CleaningTask

CELLS = "cells"
#: A group of comparable runs, and one strategy's runs within it.
GROUP = ["dataset", "learner"]
CELL = [*GROUP, "strategy"]
#: How the runs table is sorted.
RUN_ORDER = ["dataset", "learner", "strategy", "seed"]
#: Columns every runs table has (others follow them).
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
#: Columns of the curves table: one point per selection (step 0 = before any), accuracy in %,
#: mislabelled samples left, and the sample selected at that step (-1 at step 0).
CURVE_COLUMNS = (
    "config_hash",
    "step",
    "annotations",
    "accuracy",
    "mislabelled_clear",
    "mislabelled_ambiguous",
    "sample",
)


# --------------------------------------------------------------------------------------------
# Provenance


def provenance() -> dict[str, str]:
    """Code and package versions recorded with every run (no timestamps: tables stay identical
    across reruns of the same code). ``commit`` ends in ``-dirty`` when code differs from it,
    untracked code files (a new plugin, say) included; ``plugin_path`` lists the extra plugin
    folders, whose files no commit of this project describes."""
    return {**_code_versions(), "plugin_path": os.environ.get("ALCBENCH_PLUGIN_PATH", "")}


@lru_cache(maxsize=1)
def _code_versions() -> dict[str, str]:
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    # Only code counts as a local change: results/ is what runs write.
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    untracked = _git("status", "--porcelain", "--untracked-files=all", "--", "*.py", ":(exclude)results")
    if changed or untracked:
        commit += "-dirty"
    return {
        "alcbench_version": benchmark.__version__,
        "commit": commit,
        "numpy_version": np.__version__,
        "torch_version": _installed_version("torch"),
        "cleanlab_version": _installed_version("cleanlab"),
    }


def commit_date() -> str:
    """The date (YYYY-MM-DD) of the checked-out commit, or "unknown"."""
    return _git("log", "-1", "--format=%cs") or "unknown"


def _installed_version(distribution: str) -> str:
    """The installed version of a package, read from its metadata without importing it ("" when
    it is not installed: torch is an optional extra)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _git(*args: str) -> str:
    """The output of a git command in the project folder, or "" when git cannot tell."""
    project = Path(benchmark.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


# --------------------------------------------------------------------------------------------
# Cell files


def task_columns(task: CleaningTask) -> dict[str, Any]:
    """The run-row columns that describe a cell's task."""
    return {
        "n_samples": task.n_samples,
        "n_classes": task.n_classes,
        "noise_rate": task.noise_rate,
        "budget": task.budget,
        "initially_mislabelled": task.initially_mislabelled,
        # inputs the adapter dropped as unreadable (an explicit dataset option); listed in
        # skipped_inputs.csv
        "skipped_inputs": len(task.info.get("skipped_inputs", [])),
    }


def write_cell(
    out_dir: Path,
    config: CellConfig,
    row: Mapping[str, Any],
    curve: pd.DataFrame | None = None,
    refits: Sequence[Mapping[str, float]] = (),
    snapshots: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Stores a finished cell: its re-fit timings, label snapshots and curve first, then its run
    row, each atomically, so a row on disk always has the files it points to.

    ``snapshots``: the labels part-way through the budget (``fractions``, ``budgets``,
    ``labels`` (F, N)), see :mod:`benchmark.simulation.snapshots`; read back by :func:`cell_snapshots`."""
    cells = out_dir / CELLS
    cells.mkdir(parents=True, exist_ok=True)
    if refits:
        write_bytes(cells / f"{config.hash}.refits.json", json.dumps(list(refits)).encode())
    if snapshots is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **dict(snapshots))  # type: ignore[arg-type]
        write_bytes(cells / f"{config.hash}.labels.npz", buffer.getvalue())
    if curve is not None:
        with atomic_path(cells / f"{config.hash}.curve.parquet") as tmp:
            curve.to_parquet(tmp, index=False)
    write_bytes(
        cells / f"{config.hash}.json", json.dumps(row, sort_keys=True, default=_json_default).encode()
    )


def cell_snapshots(out_dir: Path, config_hash: str) -> dict[str, np.ndarray] | None:
    """The label snapshots a finished cell stored (see :func:`write_cell`), or None if it has none."""
    path = out_dir / CELLS / f"{config_hash}.labels.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return {name: np.asarray(z[name]) for name in ("fractions", "budgets", "labels")}
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the cell's label snapshots ({exc})") from exc


def finished_row(out_dir: Path, config: CellConfig) -> dict[str, Any] | None:
    """The stored row of a cell that already finished (ok or skipped), else None.

    The files are checked before they are trusted: a row that cannot be read, belongs to
    another configuration, or (when ok) lacks a readable curve of its own is not finished,
    and the cell runs again.
    """
    path = out_dir / CELLS / f"{config.hash}.json"
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(row, dict) or row.get("config_hash") != config.hash:
        return None
    if row.get("status") == "ok" and not _curve_is_whole(
        out_dir / CELLS / f"{config.hash}.curve.parquet", config
    ):
        return None
    return row if row.get("status") in ("ok", "skipped") else None


def _curve_is_whole(path: Path, config: CellConfig) -> bool:
    """Whether ``path`` is a readable curve of ``config``'s cell: steps 0..n-1 in order."""
    try:
        curve = pd.read_parquet(path)
    except Exception:  # missing, truncated or not parquet at all
        return False
    if not len(curve) or not set(CURVE_COLUMNS) <= set(curve.columns):
        return False
    steps = curve["step"].to_numpy()
    return bool((curve["config_hash"] == config.hash).all() and np.array_equal(steps, np.arange(len(curve))))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class TableUpdate:
    """What :func:`write_tables` wrote, and what it did with the rows already there.

    Attributes:
        runs, curves: the tables as written.
        kept: rows of earlier runs kept beside this run's.
        replaced: earlier rows replaced by a row of this run for the same dataset, learner,
            strategy and seed, but another configuration (changed posteriors, target, ...).
        dropped: earlier rows left out because this run is a whole suite (``merge=False``).
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    kept: int
    replaced: pd.DataFrame
    dropped: pd.DataFrame


def write_tables(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    *,
    merge: bool = False,
    reused: Collection[str] = (),
    leave: Collection[str] = (),
) -> TableUpdate:
    """Writes runs.parquet, runs.csv and curves.parquet for ``rows`` (curves from the cells,
    those of the rows in ``reused``, config hashes of rows kept from the tables already there,
    from those tables). The earlier rows in ``leave`` (config hashes) leave even when merging:
    they are reported as dropped.

    With ``merge``, the rows already in the tables are kept, so that several ``alcbench run``
    calls can fill one folder, except those this run replaces: the same cell, or the same
    (dataset, learner, strategy, seed) run in another configuration, so a table never holds
    two results for one run. Without ``merge`` (a whole suite) the tables hold this run's rows
    only and the earlier ones are reported as dropped. Each table is replaced atomically; call
    this under :func:`locked` when other commands may write into the same folder.
    """
    runs = pd.DataFrame(list(rows))
    reused = set(reused)
    curve_frames = [
        pd.read_parquet(out_dir / CELLS / f"{h}.curve.parquet")
        for h, status in zip(runs["config_hash"], runs["status"], strict=True)
        if status == "ok" and h not in reused
    ]
    empty = pd.DataFrame(columns=list(RUN_COLUMNS))
    kept, replaced, dropped = 0, empty, empty
    if _has_tables(out_dir):
        # the earlier curves are read only when runs of theirs stay in the tables
        if merge or reused:
            old_runs, old_curves = load_tables(out_dir)
            curve_frames.insert(0, old_curves[old_curves["config_hash"].isin(reused)])
        else:
            old_runs, old_curves = pd.read_parquet(out_dir / "runs.parquet"), None
        replaced, others = _earlier(old_runs, runs)
        if merge:
            assert old_curves is not None
            leaving = others["config_hash"].isin(set(leave))
            others, dropped = others[~leaving], others[leaving]
            kept = len(others)
            curve_frames.insert(0, old_curves[old_curves["config_hash"].isin(others["config_hash"])])
            runs = pd.concat([others, runs], ignore_index=True)
        else:
            dropped = others
    for column in RUN_COLUMNS:  # a table of only failed cells still has every column
        if column not in runs.columns:
            runs[column] = np.nan
    # the identity (benchmark.run.identity) of each cell whose inputs were here, else ""
    runs["cell_id"] = runs["cell_id"].fillna("") if "cell_id" in runs.columns else ""
    front = ["config_hash", "cell_id", *RUN_ORDER, "status", "error"]
    runs = runs[front + [c for c in runs.columns if c not in front]]
    runs = sort_runs(runs)
    frames = [f for f in curve_frames if len(f)]
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CURVE_COLUMNS))
    order = {h: i for i, h in enumerate(runs["config_hash"])}
    curves = curves.sort_values(
        ["config_hash", "step"], key=lambda c: c.map(order) if c.name == "config_hash" else c, kind="stable"
    ).reset_index(drop=True)
    _write_parquet(runs, out_dir / "runs.parquet")
    write_bytes(out_dir / "runs.csv", runs.to_csv(index=False).encode())
    _write_parquet(curves, out_dir / "curves.parquet")
    return TableUpdate(runs, curves, kept, replaced, dropped)


def _has_tables(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds the run and curve tables of earlier runs."""
    return (out_dir / "runs.parquet").is_file() and (out_dir / "curves.parquet").is_file()


def _earlier(old_runs: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(replaced, others) of the earlier rows: those ``runs`` replace (the same dataset,
    learner, strategy and seed in another configuration) and those neither the same cell nor
    the same run."""
    same_cell = old_runs["config_hash"].isin(runs["config_hash"])
    same_run = _run_keys(old_runs).isin(set(_run_keys(runs)))
    return old_runs[same_run & ~same_cell], old_runs[~same_cell & ~same_run]


def rows_left_out(out_dir: Path, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The earlier rows of ``out_dir``'s tables that :func:`write_tables` without ``merge``
    leaves out when it writes ``rows`` (none when there are no tables yet)."""
    if not _has_tables(out_dir):
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    return _earlier(pd.read_parquet(out_dir / "runs.parquet"), pd.DataFrame(list(rows)))[1]


def sort_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows by dataset, learner, strategy (parameters compared as numbers: T=2 before T=10)
    and seed."""

    def key(column: pd.Series) -> pd.Series:
        if column.name == "seed":
            return column
        return column.map(spec_order(column.astype(str))).where(column.notna(), -1)

    return runs.sort_values(RUN_ORDER, key=key, kind="stable").reset_index(drop=True)


def _run_keys(runs: pd.DataFrame) -> pd.Series:
    """One text per row naming its run: dataset, learner, strategy and seed."""
    return runs[RUN_ORDER].astype(str).agg("\x1f".join, axis=1)


@contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``out_dir`` (``.alcbench.lock``) for the duration of the
    block, so that commands writing into one results folder merge their tables one at a time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir / ".alcbench.lock"):
        yield


def check_writable(out_dir: Path) -> None:
    """Raises a one-line error unless ``out_dir`` is (or can be made) a writable folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file, not a folder; give a folder for the results")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise PermissionError(f"--out {out_dir} is not a writable folder ({exc.strerror or exc})") from None


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


def load_runs(out_dir: Path) -> pd.DataFrame | None:
    """The run table of ``out_dir`` with its rows' identities (``cell_id``, "" for rows written
    before identities were recorded), or None with a warning naming the file when it cannot be
    read (every cell then runs again and the table is written anew)."""
    path = Path(out_dir) / "runs.parquet"
    try:
        runs = pd.read_parquet(path)
        if "config_hash" not in runs.columns:
            raise ValueError("it has no config_hash column")
    except Exception as exc:  # noqa: BLE001 - any unreadable table means: nothing to keep
        warnings.warn(f"{path}: cannot read the earlier results ({exc}); every cell runs again", stacklevel=2)
        return None
    runs["cell_id"] = runs["cell_id"].fillna("") if "cell_id" in runs.columns else ""
    return runs


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


# --------------------------------------------------------------------------------------------
# Side tables
