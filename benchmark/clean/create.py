"""The inputs of a new cleaning project (``alcbench clean init``): the initial labels and their
classes, the initial posteriors from a file, and the ledger that records them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import benchmark.clean.ledger as lg
from benchmark.clean.inputs import InputError, Vote, read_labels
from benchmark.clean.reports import ProjectError
from benchmark.clean.state import insert_model
from benchmark.posteriors.files import PosteriorsError, check_posteriors_array, load_posteriors_file


def read_initial_labels(
    labels: Path | str, classes: Sequence[str] | None
) -> tuple[list[Vote], list[str], list[str]]:
    """(the votes of ``labels``, the sample ids in their order of first appearance, the class
    names: ``classes``, or the labels' names sorted), every vote checked to name a class."""
    votes, _ = read_labels(Path(labels))
    ids = list(dict.fromkeys(v.sample_id for v in votes))
    names = sorted({v.label for v in votes}) if classes is None else list(classes)
    if len(set(names)) != len(names):
        raise ProjectError(f"--classes names a class twice: {', '.join(names)}")
    known = set(names)
    bad = [v for v in votes if v.label not in known]
    if bad:
        first = bad[0]
        raise InputError(
            f"{labels}: {first.where}: unknown class {first.label!r} "
            f"(classes: {', '.join(names)}); {len(bad)} label(s) name no class"
        )
    return votes, ids, names


def initial_counts(votes: Sequence[Vote], ids: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(N, C) the initial votes per sample and class."""
    initial = np.zeros((len(ids), len(names)), dtype=np.int64)
    where = {sid: i for i, sid in enumerate(ids)}
    for v in votes:
        initial[where[v.sample_id], names.index(v.label)] += 1
    return initial


def write_ledger(
    folder: Path,
    meta: dict[str, Any],
    ids: Sequence[str],
    image_paths: Sequence[str | None],
    votes: Sequence[Vote],
    names: Sequence[str],
    source: str,
    probs: np.ndarray,
    stochastic: np.ndarray | None,
) -> None:
    """Creates the project's ledger in ``folder``: ``meta``, the samples (``ids``, with their
    ``image_paths``), their initial ``votes`` for the classes ``names``, and model generation 0
    (``probs`` and ``stochastic`` from ``source``); written under a temporary name and moved into
    place, so that a failed ``init`` leaves no ledger."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{lg.LEDGER}.{os.getpid()}.tmp"
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    conn = lg.create(tmp)
    try:
        with lg.transaction(conn):
            lg.set_meta(conn, **meta)
            conn.executemany(
                "INSERT INTO samples (idx, id, image) VALUES (?, ?, ?)",
                [(i, sid, image_paths[i]) for i, sid in enumerate(ids)],
            )
            index = {sid: i for i, sid in enumerate(ids)}
            conn.executemany(
                "INSERT INTO votes (idx, label, annotator, source) VALUES (?, ?, ?, 'initial')",
                [(index[v.sample_id], names.index(v.label), v.annotator) for v in votes],
            )
            insert_model(conn, 0, 0, source, probs, stochastic)
        conn.close()
        os.replace(tmp, folder / lg.LEDGER)
    finally:
        for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            stale.unlink(missing_ok=True)


def read_posteriors(
    path: Path, ids: Sequence[str], classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(probs (N, C) float32, stochastic or None) from a ``.npy`` in the samples' order or a
    CSV with an ``id`` column and a column per class (any row order)."""
    if path.suffix.lower() == ".csv":
        return _read_posteriors_csv(path, ids, classes), None
    try:
        post = load_posteriors_file(path, len(ids), len(classes))
    except PosteriorsError as exc:
        raise PosteriorsError(
            f"{exc} (rows: the {len(ids)} samples of the labels file, in its order; "
            f"columns: the classes {', '.join(classes)})"
        ) from None
    return post.probs, post.stochastic


def _read_posteriors_csv(path: Path, ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"id": str})
    except Exception as exc:
        raise PosteriorsError(f"{path}: cannot be read as a CSV ({exc})") from exc
    missing_cols = [c for c in ["id", *classes] if c not in table.columns]
    if missing_cols:
        raise PosteriorsError(
            f"{path}: lacks column(s) {', '.join(missing_cols)}; expected id and one column per class "
            f"({', '.join(classes)})"
        )
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise PosteriorsError(f"{path}: duplicate id {dup.iloc[0]!r}")
    known = set(ids)
    extra = [i for i in table["id"] if i not in known]
    if extra:
        raise PosteriorsError(f"{path}: {len(extra)} id(s) are not in the labels file (first: {extra[0]!r})")
    missing = [i for i in ids if i not in set(table["id"])]
    if missing:
        raise PosteriorsError(
            f"{path}: no posteriors for {len(missing)} sample(s) of the labels file (first: {missing[0]!r})"
        )
    values = table.set_index("id").loc[list(ids), list(classes)].to_numpy(dtype=np.float64)
    return check_posteriors_array(values, len(ids), len(classes), where=str(path), ndim=(2,)).astype(
        np.float32
    )


__all__ = ["initial_counts", "read_initial_labels", "read_posteriors", "write_ledger"]
