"""A cleaning project: the relabelling queue over a team's own data, and its ledger.

The queue follows the simulator's rules (DESIGN.md), with expert answers in place of simulated
draws, so that a project answered by a simulated expert ends exactly where ``alcbench run``
does:

- Label state: each sample's votes per class, the initial labels included; its label is the
  class with the most votes (the first class on ties).
- Order: samples are handed out in the strategy's order (its scores of the current label state
  and the latest posteriors; ties broken by the project's seed, as the simulator does). Each
  sample is selected once.
- Stopping rule: a selected sample is settled once it has at least one answer and a strict
  majority. Until then it comes back at the head of the next batch, as the simulator keeps
  annotating a selected sample until it is settled.
- Budget: a new sample is selected while the answers received are at most the budget, so the
  last one may finish past it. Answers still owed are counted as they will arrive: one for each
  open question, and up to two more for each sample not yet settled; where that could take the
  spending past the budget, ``next`` waits for the open samples to settle before it selects
  more (near the end of the budget batches shrink to single samples). So the project selects
  exactly the samples the simulator selects, unless the samples open at one time need more than
  three answers each on average.
- Active loop (``refit_every``): after every B new answers the learner is fitted again on the
  current labels and the samples not yet selected are re-ranked.

Scores are computed afresh for every batch, from the label state and the latest posteriors. For
a row-local strategy (the default contract) that is the simulator's ranking exactly; a strategy
whose scores depend on other samples' labels is re-scored once per batch here, where the
simulator re-scores it after every selection.

Every operation is one transaction on the ledger (:mod:`benchmark.clean.ledger`): an ingest
that fails or is killed half-way leaves nothing of its file behind.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import benchmark.clean.ledger as lg
from benchmark import registry
from benchmark.clean.inputs import (
    InputError,
    Vote,
    file_digest,
    problems_error,
    read_answers,
    read_labels,
    write_rows,
)
from benchmark.clean.labelstudio import write_label_config
from benchmark.expert import has_strict_majority
from benchmark.plugins import ScoringContext, Strategy
from benchmark.posteriors import PosteriorsError, check_posteriors_array, load_posteriors_file
from benchmark.task import CleaningTask, normalised_entropy
from benchmark.trajectory import checked_scores, ranking

#: Extra answers presumed for each sample not yet settled, when ``next`` decides whether the
#: budget still covers one more sample (see the module's docstring).
EXTRA_ANSWERS_PER_OPEN_SAMPLE = 2
#: Image files ``--images`` looks for, by suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
#: Test hook: seconds to sleep after each answer an ingest writes (inside its transaction), and
#: a line on stderr per answer, so a test can kill an ingest between rows.
PAUSE_ENV = "ALCBENCH_INGEST_PAUSE"


class ProjectError(ValueError):
    """A request the project cannot carry out (bad arguments, nothing to refit with, ...)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Question:
    """One row of a batch: a sample to annotate, with what the queue knows of it."""

    request: int
    batch: int
    sample_id: str
    kind: str  # "new": selected now; "more": selected before, not settled yet
    current_label: str
    votes: dict[str, int]
    top: list[tuple[str, float]]  # the model's top classes with their probabilities
    score: float | None
    correctness: float  # the model's probability of the current label
    difficulty: float  # normalised entropy of the model's posterior, in [0, 1]
    image: str | None = None


@dataclass(frozen=True)
class Batch:
    number: int | None  # None when nothing was handed out
    questions: list[Question]
    why_empty: str = ""
    generation: int = 0  # the model generation whose posteriors the questions show


@dataclass(frozen=True)
class IngestReport:
    file: str
    added: int
    duplicates: int
    settled: int  # samples settled by this file
    refitted: bool = False
    corrected: int = 0  # answers ingested before whose label this file changes


@dataclass(frozen=True)
class Status:
    samples: int
    classes: list[str]
    strategy: str
    budget: int | None
    spent: int
    selected: int
    settled: int
    unsettled: int  # selected, answered, no strict majority yet
    open_questions: int
    labels_changed: int
    #: samples not settled whose label is not the model's top class
    estimated_mislabelled_left: int
    model_generation: int
    batches: int
    over_budget: int = 0  # answers received past the budget (at most the last sample's)

    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.spent, 0)


@dataclass
class _State:
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


class Project:
    """A cleaning project in a folder; every method is one transaction on its ledger.

    Open one with ``Project(folder)``; create one with :meth:`Project.init`.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self._conn = lg.open_ledger(self.folder)
        meta = lg.all_meta(self._conn)
        self.ids: list[str] = [r[0] for r in self._conn.execute("SELECT id FROM samples ORDER BY idx")]
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
            r[0] for r in self._conn.execute("SELECT image FROM samples ORDER BY idx")
        ]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ init

    @classmethod
    def init(
        cls,
        folder: Path | str,
        *,
        labels: Path | str,
        posteriors: Path | str | None = None,
        learner: str | None = None,
        images: Path | str | None = None,
        classes: Sequence[str] | None = None,
        strategy: str = "eq2[hinge=0.3]",
        budget: int | None = None,
        seed: int = 0,
        refit_every: int | None = None,
        image_size: int = 32,
        progress: bool = True,
    ) -> Project:
        """Creates the project in ``folder`` (which must not hold one already).

        Args:
            labels: CSV ``id,label`` (or ``id,label,annotator`` for several labels per sample);
                the samples' order is the order of first appearance, the posteriors' row order.
            posteriors: ``.npy`` (N, C) or (T, N, C) in the samples' order, or a CSV with an
                ``id`` column and one column per class; or None, with ``learner`` and ``images``.
            learner: a registered learner's spec, fitted (cross-fitted where it does so) on the
                images and the initial labels; needed for ``refit_every``.
            images: folder of ``<id>.<png|jpg|...>`` files, one per sample.
            classes: the class order (default: sorted class names of the labels; required when
                the posteriors have classes that no label uses).
            strategy: a registered strategy's spec (the leaderboard's winner, say).
            budget: expert answers to spend (default: no limit).
            seed: breaks ties between equal scores, as a benchmark run's seed does.
            refit_every: re-fit the learner after every this many new answers.
        """
        folder = Path(folder)
        if (folder / lg.LEDGER).exists():
            raise ProjectError(
                f"{folder}: already a cleaning project ({lg.LEDGER} exists); choose another folder"
            )
        if posteriors is None and learner is None:
            raise ProjectError("give --posteriors FILE, or --learner NAME with --images FOLDER")
        if posteriors is not None and learner is not None:
            raise ProjectError("give either --posteriors or --learner, not both")
        if learner is not None and images is None:
            raise ProjectError(f"learner {learner} needs the images: add --images FOLDER")
        if refit_every is not None and (learner is None or refit_every < 1):
            raise ProjectError(
                "--refit-every needs --learner (the model re-fitted on the current labels)"
                if learner is None
                else f"--refit-every must be a positive number of answers, got {refit_every}"
            )
        if budget is not None and budget < 0:
            raise ProjectError(f"--budget must be >= 0, got {budget}")
        strat = _strategy(strategy)
        learner_obj = registry.create("learner", learner) if learner is not None else None

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
        image_paths: list[str | None] = [None] * len(ids)
        if images is not None:
            image_paths = [str(p) for p in _find_images(Path(images), ids)]

        if posteriors is not None:
            probs, stochastic = _read_posteriors(Path(posteriors), ids, names)
            source = str(posteriors)
        else:
            assert learner_obj is not None
            initial = np.zeros((len(ids), len(names)), dtype=np.int64)
            where = {sid: i for i, sid in enumerate(ids)}
            for v in votes:
                initial[where[v.sample_id], names.index(v.label)] += 1
            task = _task(ids, names, initial, image_paths, image_size)
            post = learner_obj.fit_predict(task, seed=seed, progress=progress)
            probs, stochastic = post.probs, post.stochastic
            source = f"learner {learner_obj.spec}"

        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{lg.LEDGER}.{os.getpid()}.tmp"
        for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            stale.unlink(missing_ok=True)
        conn = lg.create(tmp)
        try:
            with lg.transaction(conn):
                lg.set_meta(
                    conn,
                    classes=names,
                    strategy=strat.spec,
                    seed=int(seed),
                    budget=None if budget is None else int(budget),
                    learner=None if learner_obj is None else learner_obj.spec,
                    refit_every=refit_every,
                    image_size=int(image_size),
                    labels_file=str(labels),
                    created=_now(),
                )
                conn.executemany(
                    "INSERT INTO samples (idx, id, image) VALUES (?, ?, ?)",
                    [(i, sid, image_paths[i]) for i, sid in enumerate(ids)],
                )
                index = {sid: i for i, sid in enumerate(ids)}
                conn.executemany(
                    "INSERT INTO votes (idx, label, annotator, source) VALUES (?, ?, ?, 'initial')",
                    [(index[v.sample_id], names.index(v.label), v.annotator) for v in votes],
                )
                _insert_model(conn, 0, 0, source, probs, stochastic)
            conn.close()
            os.replace(tmp, folder / lg.LEDGER)
        finally:
            for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                stale.unlink(missing_ok=True)
        write_label_config(folder, names)
        return cls(folder)

    # ------------------------------------------------------------------ state

    def _state(self, conn: sqlite3.Connection) -> _State:
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
        return _State(
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

    def scores(self, state: _State | None = None) -> np.ndarray:
        """(N,) the strategy's score of every sample in the current label state."""
        if state is None:
            state = self._state(self._conn)
        strategy = _strategy(self.strategy_spec)
        ctx = ScoringContext(
            label_counts=state.counts,
            posteriors=state.probs.astype(np.float64),
            stochastic=None if state.stochastic is None else state.stochastic.astype(np.float64),
            seed=self.seed,
        )
        return checked_scores(strategy, ctx)

    # ------------------------------------------------------------------ next

    def next(self, n: int = 50) -> Batch:
        """The next ``n`` samples to annotate (fewer near the end of the budget); recorded as a
        batch of open questions, so that the next call hands out others."""
        if n < 1:
            raise ProjectError(f"--n must be at least 1, got {n}")
        with lg.transaction(self._conn) as conn:
            state = self._state(conn)
            settled = state.settled
            # unsettled samples continue their episode first, in selection order
            waiting = state.selected & ~settled & (state.open_requests == 0)
            more = np.flatnonzero(waiting)
            more = more[np.argsort(state.position[more], kind="stable")][:n]
            open_samples = int((state.selected & ~settled).sum())
            owed = int(state.open_requests.sum()) + more.size
            new: list[int] = []
            scores = self.scores(state)
            if more.size < n:
                order = ranking(scores, self.seed)
                order = order[~state.selected[order]]
                for i in order[: n - more.size]:
                    if self.budget is not None:
                        committed = state.spent + owed + EXTRA_ANSWERS_PER_OPEN_SAMPLE * open_samples
                        if committed > self.budget:
                            break
                    new.append(int(i))
                    owed += 1
                    open_samples += 1
            if not more.size and not new:
                return Batch(None, [], self._why_empty(state))
            batch = int(conn.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM batches").fetchone()[0])
            conn.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?)",
                (batch, _now(), state.generation, more.size + len(new)),
            )
            next_position = int(state.position.max(initial=-1)) + 1
            conn.executemany(
                "INSERT INTO selections VALUES (?, ?)",
                [(i, next_position + k) for k, i in enumerate(new)],
            )
            questions = []
            for kind, samples in (("more", more.tolist()), ("new", new)):
                for i in samples:
                    cur = conn.execute(
                        "INSERT INTO requests (batch, idx, kind, score) VALUES (?, ?, ?, ?)",
                        (batch, i, kind, float(scores[i])),
                    )
                    questions.append(self._question(int(cur.lastrowid or 0), batch, i, kind, state, scores))
        return Batch(batch, questions, generation=state.generation)

    def batch(self, number: int) -> Batch:
        """The questions of batch ``number`` that are still open (to write its file again)."""
        exists = self._conn.execute("SELECT 1 FROM batches WHERE batch = ?", (number,)).fetchone()
        if exists is None:
            last = self._conn.execute("SELECT COALESCE(MAX(batch), 0) FROM batches").fetchone()[0]
            raise ProjectError(f"{self.folder}: no batch {number} (batches 1..{last} were handed out)")
        state = self._state(self._conn)
        scores = self.scores(state)
        rows = self._conn.execute(
            "SELECT request, idx, kind FROM requests WHERE batch = ? AND state = 'open' ORDER BY request",
            (number,),
        ).fetchall()
        questions = [self._question(r, number, i, kind, state, scores) for r, i, kind in rows]
        why = "" if questions else f"batch {number} has no open questions left"
        return Batch(number, questions, why, state.generation)

    def _question(
        self, request: int, batch: int, i: int, kind: str, state: _State, scores: np.ndarray
    ) -> Question:
        p = state.probs[i].astype(np.float64)
        current = int(np.argmax(state.counts[i]))
        top = np.argsort(-p, kind="stable")[:3]
        return Question(
            request=request,
            batch=batch,
            sample_id=self.ids[i],
            kind=kind,
            current_label=self.classes[current],
            votes={self.classes[k]: int(v) for k, v in enumerate(state.counts[i]) if v},
            top=[(self.classes[k], float(p[k])) for k in top],
            score=float(scores[i]),
            correctness=float(p[current]),
            difficulty=float(normalised_entropy(p[None])[0]) if len(self.classes) > 1 else 0.0,
            image=self.images[i],
        )

    def _why_empty(self, state: _State) -> str:
        open_questions = int(state.open_requests.sum())
        if open_questions:
            return (
                f"nothing new to hand out: {open_questions} question(s) of earlier batches are still open; "
                "ingest their answers (or `alcbench clean release`) first"
            )
        # no open question and no sample waiting for another answer (it would have been handed
        # out): only the budget or the end of the samples stops the queue
        if self.budget is not None and state.spent > self.budget:
            return f"the budget is spent: {state.spent} answers of {self.budget}"
        return f"every sample has been reviewed and settled ({len(self.ids)} samples)"

    def release(self, batch: int | None = None) -> int:
        """Closes the open questions (of one batch, or all): their samples that have no answer
        go back to the queue as if never handed out. Returns how many were closed."""
        with lg.transaction(self._conn) as conn:
            where, args = (
                ("state = 'open'", ()) if batch is None else ("state = 'open' AND batch = ?", (batch,))
            )
            rows = conn.execute(f"SELECT request, idx FROM requests WHERE {where}", args).fetchall()
            for request, idx in rows:
                conn.execute("UPDATE requests SET state = 'released' WHERE request = ?", (request,))
                answered = conn.execute(
                    "SELECT COUNT(*) FROM votes WHERE idx = ? AND source = 'answer'", (idx,)
                ).fetchone()[0]
                if not answered:
                    conn.execute("DELETE FROM selections WHERE idx = ?", (idx,))
            return len(rows)

    # ------------------------------------------------------------------ ingest

    def ingest(self, path: Path | str, *, refit: bool = True, progress: bool = False) -> IngestReport:
        """Adds the answers of a CSV or Label Studio export, all of them or (on any error) none.

        Answers already in the ledger (the same file ingested again, or an export that repeats
        earlier answers) are recognised and not added twice; one that comes back with another
        label (an annotation edited in Label Studio, a batch row changed) replaces its label.
        """
        path = Path(path)
        votes = read_answers(path)
        return self.add_answers(
            votes, file=str(path), digest=file_digest(path), refit=refit, progress=progress
        )

    def add_answers(
        self,
        votes: Sequence[Vote],
        *,
        file: str = "(api)",
        digest: str = "",
        refit: bool = True,
        progress: bool = False,
    ) -> IngestReport:
        """The answers ``votes``, validated and added in one transaction (see :meth:`ingest`)."""
        problems = []
        for v in votes:
            where = v.where or f"answer for {v.sample_id!r}"
            if v.sample_id not in self.index:
                problems.append(f"{where}: unknown id {v.sample_id!r}")
            elif v.label not in self.class_index:
                problems.append(f"{where}: unknown class {v.label!r} (classes: {', '.join(self.classes)})")
        if problems:
            raise problems_error(Path(file), problems)
        pause = float(os.environ.get(PAUSE_ENV) or 0)
        with lg.transaction(self._conn) as conn:
            before = self._state(conn)
            requests = {
                r: (idx, state) for r, idx, state in conn.execute("SELECT request, idx, state FROM requests")
            }
            bad = []
            for v in votes:
                if v.request is not None:
                    found = requests.get(v.request)
                    if found is None:
                        bad.append(f"{v.where}: request {v.request} was never handed out by this project")
                    elif found[0] != self.index[v.sample_id]:
                        bad.append(
                            f"{v.where}: request {v.request} asked about "
                            f"{self.ids[found[0]]!r}, not {v.sample_id!r}"
                        )
            if bad:
                raise problems_error(Path(file), bad)
            ingest_id = int(
                conn.execute(
                    "INSERT INTO ingests (file, sha256, created, added, duplicates) VALUES (?, ?, ?, 0, 0)",
                    (file, digest, _now()),
                ).lastrowid
                or 0
            )
            next_position = int(before.position.max(initial=-1)) + 1
            added = duplicates = corrected = 0
            for v in votes:
                i, label = self.index[v.sample_id], self.class_index[v.label]
                known = conn.execute("SELECT vote, label FROM votes WHERE key = ?", (v.key,)).fetchone()
                if known is not None:
                    if known[1] == label:
                        duplicates += 1
                    else:  # the same answer with another label: the annotator corrected it
                        conn.execute(
                            "UPDATE votes SET label = ?, time = ?, ingest = ? WHERE vote = ?",
                            (label, v.time, ingest_id, known[0]),
                        )
                        corrected += 1
                    continue
                conn.execute(
                    "INSERT INTO votes (idx, label, annotator, time, source, request, key, ingest) "
                    "VALUES (?, ?, ?, ?, 'answer', ?, ?, ?)",
                    (i, label, v.annotator, v.time, v.request, v.key or None, ingest_id),
                )
                added += 1
                if v.request is not None:
                    conn.execute(
                        "UPDATE requests SET state = 'answered' WHERE request = ? AND state = 'open'",
                        (v.request,),
                    )
                else:  # the oldest open question about the sample, if any
                    conn.execute(
                        "UPDATE requests SET state = 'answered' WHERE request = (SELECT MIN(request) FROM "
                        "requests WHERE idx = ? AND state = 'open')",
                        (i,),
                    )
                # an answer nobody asked for still counts, and selects its sample
                cur = conn.execute("INSERT OR IGNORE INTO selections VALUES (?, ?)", (i, next_position))
                next_position += cur.rowcount
                if pause:
                    print(f"ingest: answer {added} written", flush=True)
                    time.sleep(pause)
            conn.execute(
                "UPDATE ingests SET added = ?, duplicates = ? WHERE ingest = ?",
                (added, duplicates, ingest_id),
            )
            after = self._state(conn)
        settled = int((after.settled & ~before.settled).sum())
        refitted = False
        if refit and self.refit_every and after.spent - after.model_answers >= self.refit_every:
            self.refit(progress=progress)
            refitted = True
        return IngestReport(file, added, duplicates, settled, refitted, corrected)

    # ------------------------------------------------------------------ refit

    def refit(self, posteriors: Path | str | np.ndarray | None = None, *, progress: bool = False) -> int:
        """New posteriors: the project's learner fitted again on the current labels, or the
        given ones (a file as ``init`` reads, or an array). Returns the new model generation;
        samples not yet selected are ranked by it from the next batch on."""
        state = self._state(self._conn)
        if posteriors is not None:
            if isinstance(posteriors, np.ndarray):
                values = check_posteriors_array(
                    posteriors, len(self.ids), len(self.classes), where="posteriors"
                )
                probs = values.mean(axis=0) if values.ndim == 3 else values
                stochastic = values if values.ndim == 3 else None
                source = "posteriors (api)"
            else:
                probs, stochastic = _read_posteriors(Path(posteriors), self.ids, self.classes)
                source = str(posteriors)
        else:
            if self.learner_spec is None:
                raise ProjectError(
                    f"{self.folder}: the project has no learner to re-fit (it was created from posteriors); "
                    "pass new posteriors with --posteriors"
                )
            learner = registry.create("learner", self.learner_spec)
            task = _task(self.ids, self.classes, state.initial_counts, self.images, self.image_size)
            labels = np.argmax(state.counts, axis=1)
            post = learner.refit(task, labels, seed=self.seed, progress=progress)
            probs, stochastic = post.probs, post.stochastic
            source = f"learner {learner.spec} re-fitted after {state.spent} answers"
        with lg.transaction(self._conn) as conn:
            generation = int(conn.execute("SELECT MAX(generation) + 1 FROM models").fetchone()[0])
            spent = int(conn.execute("SELECT COUNT(*) FROM votes WHERE source = 'answer'").fetchone()[0])
            _insert_model(conn, generation, spent, source, probs, stochastic)
        return generation

    # ------------------------------------------------------------------ status, export

    def status(self) -> Status:
        state = self._state(self._conn)
        settled = state.settled
        current = np.argmax(state.counts, axis=1)
        # the samples the experts have not settled whose label is not the model's top class:
        # an estimate as good as the model (the posteriors of the latest fit)
        mislabelled_left = int(((np.argmax(state.probs, axis=1) != current) & ~settled).sum())
        n_batches = int(self._conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
        unsettled = int((state.selected & ~settled & (state.answers > 0)).sum())
        return Status(
            samples=len(self.ids),
            classes=self.classes,
            strategy=self.strategy_spec,
            budget=self.budget,
            spent=state.spent,
            selected=int(state.selected.sum()),
            settled=int(settled.sum()),
            unsettled=unsettled,
            open_questions=int(state.open_requests.sum()),
            labels_changed=int((current != state.initial).sum()),
            estimated_mislabelled_left=mislabelled_left,
            model_generation=state.generation,
            batches=n_batches,
            over_budget=0 if self.budget is None else max(state.spent - self.budget, 0),
        )

    def history(self) -> dict[str, np.ndarray]:
        """The project's progress, answer by answer in the order they were ingested: after
        each, the ``spent`` answers, the labels ``changed`` from the initial ones, and the
        samples ``settled`` (each answer with its latest label)."""
        state = self._state(self._conn)
        counts = state.initial_counts.copy()
        initial = state.initial
        answers = np.zeros(len(self.ids), dtype=np.int64)
        changed, settled = 0, 0
        out: dict[str, list[int]] = {"spent": [], "changed": [], "settled": []}
        rows = self._conn.execute("SELECT idx, label FROM votes WHERE source = 'answer' ORDER BY vote")
        for n, (idx, label) in enumerate(rows, start=1):
            was_changed = np.argmax(counts[idx]) != initial[idx]
            was_settled = answers[idx] > 0 and has_strict_majority(counts[idx : idx + 1])[0]
            counts[idx, label] += 1
            answers[idx] += 1
            changed += int(np.argmax(counts[idx]) != initial[idx]) - int(was_changed)
            settled += int(has_strict_majority(counts[idx : idx + 1])[0]) - int(was_settled)
            out["spent"].append(n)
            out["changed"].append(changed)
            out["settled"].append(settled)
        return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}

    def episodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(selected samples in selection order, answers each received, final label counts):
        what a simulator's trajectory is built from."""
        state = self._state(self._conn)
        selected = np.flatnonzero(state.selected)
        selected = selected[np.argsort(state.position[selected], kind="stable")]
        return selected, state.answers[selected], state.counts

    def table(self) -> list[dict[str, Any]]:
        """One row per sample: final label, votes per class, agreement, whether it changed, and
        who annotated it (what :meth:`export` writes)."""
        state = self._state(self._conn)
        annotators: dict[int, list[str]] = {}
        for idx, who in self._conn.execute(
            "SELECT idx, annotator FROM votes WHERE source = 'answer' ORDER BY vote"
        ):
            names = annotators.setdefault(idx, [])
            if who not in names:
                names.append(who)
        settled = state.settled
        rows = []
        for i, sid in enumerate(self.ids):
            counts = state.counts[i]
            label = int(np.argmax(counts))
            row: dict[str, Any] = {
                "id": sid,
                "label": self.classes[label],
                "initial_label": self.classes[int(state.initial[i])],
                "changed": bool(label != state.initial[i]),
                "reviewed": bool(state.answers[i] > 0),
                "settled": bool(settled[i]),
                "answers": int(state.answers[i]),
                "agreement": round(float(counts[label] / counts.sum()), 4),
                "annotators": ";".join(annotators.get(i, [])),
            }
            row.update({f"votes_{c}": int(counts[k]) for k, c in enumerate(self.classes)})
            rows.append(row)
        return rows

    def export(self, path: Path | str) -> int:
        """Writes :meth:`table` as a CSV (atomically); returns the number of rows."""
        rows = self.table()
        write_rows(Path(path), rows)
        return len(rows)


# ---------------------------------------------------------------------- helpers


def _strategy(spec: str) -> Strategy:
    strategy: Strategy = registry.create("strategy", spec)
    if "truth" in strategy.requires or strategy.reselect:
        raise ProjectError(
            f"strategy {strategy.spec} needs the true label distribution, which a cleaning project "
            "does not have; choose one that ranks by the model (e.g. eq2[hinge=0.3], loss)"
        )
    return strategy


def _insert_model(
    conn: sqlite3.Connection,
    generation: int,
    answers: int,
    source: str,
    probs: np.ndarray,
    stochastic: np.ndarray | None,
) -> None:
    conn.execute(
        "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            generation,
            answers,
            _now(),
            source,
            lg.array_blob(probs),
            None if stochastic is None else lg.array_blob(stochastic),
            0 if stochastic is None else int(stochastic.shape[0]),
        ),
    )


def _read_posteriors(
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


def _find_images(folder: Path, ids: Sequence[str]) -> list[Path]:
    """The image file of each sample: ``<folder>/<id>.<suffix>``."""
    if not folder.is_dir():
        raise ProjectError(f"{folder}: images folder does not exist")
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(p.stem, p)
    missing = [i for i in ids if i not in by_stem]
    if missing:
        raise ProjectError(
            f"{folder}: no image for {len(missing)} sample(s) (first: {missing[0]!r}; expected a file "
            f"named <id> with one of {', '.join(IMAGE_SUFFIXES)})"
        )
    return [by_stem[i] for i in ids]


def load_images(paths: Sequence[str | None], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 from the image files, each resized to ``size``. DICOM files
    (radiographs) are read as greyscale by :func:`benchmark.radiographs.read_radiograph`, as the
    chest X-ray datasets read them, and repeated over the three channels."""
    from PIL import Image, UnidentifiedImageError

    from benchmark.radiographs import DICOM_SUFFIXES, ImageReadError, read_radiograph

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for k, p in enumerate(paths):
        if p is None:
            raise ProjectError("the project has no images (it was created from posteriors)")
        if Path(p).suffix.lower() in DICOM_SUFFIXES:
            try:
                out[k] = read_radiograph(p, size)[:, :, None]
            except ImageReadError as exc:
                raise ProjectError(str(exc)) from exc
            continue
        try:
            with Image.open(p) as image:
                rgb = image.convert("RGB")
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
                out[k] = np.asarray(rgb)
        except (OSError, UnidentifiedImageError) as exc:
            raise ProjectError(f"{p}: cannot be read as an image ({exc})") from exc
    return out


def _task(
    ids: Sequence[str],
    classes: Sequence[str],
    initial_counts: np.ndarray,
    images: Sequence[str | None],
    size: int,
) -> CleaningTask:
    """The project as a :class:`CleaningTask` for a learner: the initial labels' vote shares
    (``initial_counts``, (N, C)) as its label distribution, their majority as its labels, the
    image files as its inputs."""
    counts = initial_counts.astype(np.float64)
    cache: dict[str, np.ndarray] = {}

    def load() -> np.ndarray:
        if "x" not in cache:
            cache["x"] = load_images(images, size)
        return cache["x"]

    return CleaningTask(
        name=f"clean[n={len(ids)}]",
        true_dist=counts / counts.sum(axis=1, keepdims=True),
        noisy_labels=np.argmax(counts, axis=1),
        class_names=tuple(classes),
        budget_multiplier=0.0,
        load_images=load,
        sample_ids=np.asarray(ids),
        info={"image_source": "clean:" + _digest_paths(images), "image_source_default": ""},
    )


def _digest_paths(paths: Sequence[str | None]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p}\n".encode())
    return h.hexdigest()[:16]


__all__ = ["Batch", "IngestReport", "Project", "ProjectError", "Question", "Status", "load_images"]
