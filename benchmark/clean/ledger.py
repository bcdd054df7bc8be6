"""The annotation ledger of a cleaning project: one SQLite file, every change a transaction.

The ledger holds everything a project knows: its samples and classes, the initial labels, every
expert answer with where it came from, the model posteriors of each (re-)fit, and every batch
the queue handed out. It is opened in WAL mode, so readers (``status``, ``export``) never wait
for a writer, and writers take the write lock at the start of their transaction
(``BEGIN IMMEDIATE``), so two processes that ``ingest`` or ``next`` at once are serialised
instead of interleaved. A process killed inside a transaction leaves nothing of it behind.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: The ledger's file name inside a project folder.
LEDGER = "ledger.sqlite"
#: Bumped when the tables change in a way older code cannot read.
SCHEMA_VERSION = 1
#: How long a writer waits for another process's transaction before giving up (seconds).
BUSY_TIMEOUT_S = 120.0

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, image TEXT);
-- source: 'initial' (labels.csv) or 'answer' (an expert's answer, ingested)
-- key: what makes an answer the same answer when a file is ingested again (NULL for initial)
CREATE TABLE votes (
    vote INTEGER PRIMARY KEY,
    idx INTEGER NOT NULL REFERENCES samples(idx),
    label INTEGER NOT NULL,
    annotator TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    request INTEGER REFERENCES requests(request),
    key TEXT UNIQUE,
    ingest INTEGER REFERENCES ingests(ingest)
);
CREATE INDEX votes_idx ON votes(idx);
-- posteriors of each fit: generation 0 is the initial one, later ones are re-fits
CREATE TABLE models (
    generation INTEGER PRIMARY KEY,
    answers INTEGER NOT NULL,
    created TEXT NOT NULL,
    source TEXT NOT NULL,
    probs BLOB NOT NULL,
    stochastic BLOB,
    stochastic_draws INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE batches (
    batch INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    generation INTEGER NOT NULL,
    size INTEGER NOT NULL
);
-- one row per sample handed out; open until an answer for it is ingested (or it is released)
CREATE TABLE requests (
    request INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL REFERENCES batches(batch),
    idx INTEGER NOT NULL REFERENCES samples(idx),
    kind TEXT NOT NULL,
    score REAL,
    state TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX requests_idx ON requests(idx);
-- the order in which samples were first selected (the simulator's selection order)
CREATE TABLE selections (idx INTEGER PRIMARY KEY REFERENCES samples(idx), position INTEGER NOT NULL UNIQUE);
CREATE TABLE ingests (
    ingest INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL,
    added INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    corrected INTEGER NOT NULL DEFAULT 0
);
"""


class LedgerError(ValueError):
    """A project folder that holds no ledger, or one this version cannot read."""


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection in WAL mode; transactions are opened with :func:`transaction`."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create(path: Path) -> sqlite3.Connection:
    """A new ledger at ``path`` with empty tables (the caller fills them in one transaction)."""
    conn = connect(path)
    conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
    with transaction(conn):
        set_meta(conn, schema_version=SCHEMA_VERSION)
    return conn


def open_ledger(folder: Path) -> sqlite3.Connection:
    """The ledger of the project in ``folder``; a clear error when there is none."""
    path = Path(folder) / LEDGER
    if not path.is_file():
        raise LedgerError(
            f"{folder}: not a cleaning project (no {LEDGER}); "
            f"create one with `alcbench clean init {folder} ...`"
        )
    conn = connect(path)
    try:
        version = int(get_meta(conn, "schema_version"))
    except (sqlite3.DatabaseError, KeyError) as exc:
        conn.close()
        raise LedgerError(f"{path}: cannot be read as a cleaning ledger ({exc})") from exc
    if version != SCHEMA_VERSION:
        conn.close()
        raise LedgerError(f"{path}: ledger schema {version}; this version of alcbench reads {SCHEMA_VERSION}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any error (KeyboardInterrupt too).

    IMMEDIATE takes the write lock at once, so the reads inside the block see the state the
    block's writes apply to: two writers never work from the same stale state.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def set_meta(conn: sqlite3.Connection, **values: Any) -> None:
    for key, value in values.items():
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))


def get_meta(conn: sqlite3.Connection, key: str) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise KeyError(f"ledger has no {key!r}")
    return json.loads(row[0])


def all_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def array_blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def blob_array(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).reshape(shape).copy()
