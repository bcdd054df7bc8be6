"""What a cleaning project's ledger holds: the facts fixed when the project was created
(:class:`ProjectLedger`), the label state, selections, open questions and latest posteriors read
into arrays (:class:`State`), and the model generations written to it (:func:`insert_model`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import benchmark.clean.ledger as lg
from benchmark.simulation.expert import has_strict_majority


def now() -> str:
    """The current time (UTC, to the second), as the ledger records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class State:
    """What the ledger holds, as arrays (read inside a transaction)."""

    counts: np.ndarray  # (N, C) votes
    initial_counts: np.ndarray  # (N, C) the initial votes (labels.csv)
    answers: np.ndarray  # (N,) answers per sample
    position: np.ndarray  # (N,) selection position, -1 when not selected
    open_requests: np.ndarray  # (N,) open questions per sample
    spent: int
    probs: np.ndarray
    stochastic: np.ndarray | None
    generation: int
    model_answers: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def initial(self) -> np.ndarray:
        """(N,) the initial label: the majority of the initial votes."""
        return np.argmax(self.initial_counts, axis=1)

    @property
    def settled(self) -> np.ndarray:
        return (self.answers > 0) & has_strict_majority(self.counts)

    @property
    def selected(self) -> np.ndarray:
        return self.position >= 0


class ProjectLedger:
    """A project's ledger, open (``conn``), with what was fixed when the project was created:
    its samples (``ids``, ``images``), ``classes``, strategy, seed, budget and learner."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.conn = lg.open_ledger(self.folder)
        meta = lg.all_meta(self.conn)
        self.ids: list[str] = [r[0] for r in self.conn.execute("SELECT id FROM samples ORDER BY idx")]
        self.index = {sid: i for i, sid in enumerate(self.ids)}
        self.classes: list[str] = list(meta["classes"])
        self.class_index = {c: k for k, c in enumerate(self.classes)}
        self.strategy_spec: str = meta["strategy"]
        self.seed: int = int(meta["seed"])
        self.budget: int | None = meta.get("budget")
        self.learner_spec: str | None = meta.get("learner")
        self.refit_every: int | None = meta.get("refit_every")
        self.image_size: int = int(meta.get("image_size") or 32)
        self.images: list[str | None] = [
            r[0] for r in self.conn.execute("SELECT image FROM samples ORDER BY idx")
        ]

    def read_state(self, conn: sqlite3.Connection) -> State:
        """The label state, selections, open questions and latest posteriors, read through
        ``conn`` (inside the caller's transaction, where it has one)."""
        n, c = len(self.ids), len(self.classes)
        counts = np.zeros((n, c), dtype=np.int64)
        initial_counts = np.zeros((n, c), dtype=np.int64)
        answers = np.zeros(n, dtype=np.int64)
        for idx, label, source in conn.execute("SELECT idx, label, source FROM votes"):
            counts[idx, label] += 1
            if source == "initial":
                initial_counts[idx, label] += 1
            else:
                answers[idx] += 1
        position = np.full(n, -1, dtype=np.int64)
        for idx, pos in conn.execute("SELECT idx, position FROM selections"):
            position[idx] = pos
        open_requests = np.zeros(n, dtype=np.int64)
        for idx, k in conn.execute("SELECT idx, COUNT(*) FROM requests WHERE state = 'open' GROUP BY idx"):
            open_requests[idx] = k
        generation, model_answers, blob, sblob, draws = conn.execute(
            "SELECT generation, answers, probs, stochastic, stochastic_draws FROM models "
            "ORDER BY generation DESC LIMIT 1"
        ).fetchone()
        probs = lg.blob_array(blob, (n, c))
        stochastic = lg.blob_array(sblob, (draws, n, c)) if sblob is not None else None
        return State(
            counts=counts,
            initial_counts=initial_counts,
            answers=answers,
            position=position,
            open_requests=open_requests,
            spent=int(answers.sum()),
            probs=probs,
            stochastic=stochastic,
            generation=int(generation),
            model_answers=int(model_answers),
        )


def insert_model(
    conn: sqlite3.Connection,
    generation: int,
    answers: int,
    source: str,
    probs: np.ndarray,
    stochastic: np.ndarray | None,
) -> None:
    """Records model generation ``generation``: its posteriors, fitted after ``answers`` answers
    (``source`` says by what)."""
    conn.execute(
        "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            generation,
            answers,
            now(),
            source,
            lg.array_blob(probs),
            None if stochastic is None else lg.array_blob(stochastic),
            0 if stochastic is None else int(stochastic.shape[0]),
        ),
    )


__all__ = ["ProjectLedger", "State", "insert_model", "now"]
