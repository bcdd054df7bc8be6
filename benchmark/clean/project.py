"""A cleaning project: the relabelling queue over a team's own data, and its ledger.

:class:`Project` is the public API. The queue follows the simulator's rules, with expert answers
in place of simulated draws (:mod:`benchmark.clean.queue_rules` states them); the state it reads from
the ledger is :mod:`benchmark.clean.state`, a new project's inputs :mod:`benchmark.clean.create`
and :mod:`benchmark.clean.images`, ingesting answers :mod:`benchmark.clean.ingest`, and re-fits
(``refit_every``, model generations) :mod:`benchmark.clean.refit`.

Every operation is one transaction on the ledger (:mod:`benchmark.clean.ledger`): an ingest
that fails or is killed half-way leaves nothing of its file behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import benchmark.clean.ledger as lg
from benchmark import registry
from benchmark.clean.create import initial_counts, read_initial_labels, read_posteriors, write_ledger
from benchmark.clean.images import find_images, learner_task
from benchmark.clean.ingest import add_answers
from benchmark.clean.inputs import Vote, file_digest, read_answers, write_rows
from benchmark.clean.labelstudio import write_label_config
from benchmark.clean.queue_rules import (
    cleaning_strategy,
    next_batch,
    open_batch,
    release_questions,
    strategy_scores,
)
from benchmark.clean.refit import refit_model
from benchmark.clean.reports import Batch, IngestReport, ProjectError, Question, Status
from benchmark.clean.state import ProjectLedger, State, now
from benchmark.simulation.expert import has_strict_majority


class Project(ProjectLedger):
    """A cleaning project in a folder; every method is one transaction on its ledger.

    Open one with ``Project(folder)``; create one with :meth:`Project.init`.
    """

    def close(self) -> None:
        self.conn.close()

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
        strat = cleaning_strategy(strategy)
        learner_obj = registry.create("learner", learner) if learner is not None else None

        votes, ids, names = read_initial_labels(labels, classes)
        image_paths: list[str | None] = [None] * len(ids)
        if images is not None:
            image_paths = [str(p) for p in find_images(Path(images), ids)]

        if posteriors is not None:
            probs, stochastic = read_posteriors(Path(posteriors), ids, names)
            source = str(posteriors)
        else:
            assert learner_obj is not None
            initial = initial_counts(votes, ids, names)
            task = learner_task(ids, names, initial, image_paths, image_size)
            post = learner_obj.fit_predict(task, seed=seed, progress=progress)
            probs, stochastic = post.probs, post.stochastic
            source = f"learner {learner_obj.spec}"

        meta = {
            "classes": names,
            "strategy": strat.spec,
            "seed": int(seed),
            "budget": None if budget is None else int(budget),
            "learner": None if learner_obj is None else learner_obj.spec,
            "refit_every": refit_every,
            "image_size": int(image_size),
            "labels_file": str(labels),
            "created": now(),
        }
        write_ledger(folder, meta, ids, image_paths, votes, names, source, probs, stochastic)
        write_label_config(folder, names)
        return cls(folder)

    # ------------------------------------------------------------------ queue

    def scores(self, state: State | None = None) -> np.ndarray:
        """(N,) the strategy's score of every sample in the current label state."""
        return strategy_scores(self, state)

    def next(self, n: int = 50) -> Batch:
        """The next ``n`` samples to annotate (fewer near the end of the budget); recorded as a
        batch of open questions, so that the next call hands out others."""
        return next_batch(self, n)

    def batch(self, number: int) -> Batch:
        """The questions of batch ``number`` that are still open (to write its file again)."""
        return open_batch(self, number)

    def release(self, batch: int | None = None) -> int:
        """Closes the open questions (of one batch, or all): their samples that have no answer
        go back to the queue as if never handed out. Returns how many were closed."""
        return release_questions(self, batch)

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
        return add_answers(self, votes, file, digest, refit, progress)

    # ------------------------------------------------------------------ refit

    def refit(self, posteriors: Path | str | np.ndarray | None = None, *, progress: bool = False) -> int:
        """New posteriors: the project's learner fitted again on the current labels, or the
        given ones (a file as ``init`` reads, or an array). Returns the new model generation;
        samples not yet selected are ranked by it from the next batch on."""
        return refit_model(self, posteriors, progress=progress)

    # ------------------------------------------------------------------ status, export

    def status(self) -> Status:
        state = self.read_state(self.conn)
        settled = state.settled
        current = np.argmax(state.counts, axis=1)
        # the samples the experts have not settled whose label is not the model's top class:
        # an estimate as good as the model (the posteriors of the latest fit)
        mislabelled_left = int(((np.argmax(state.probs, axis=1) != current) & ~settled).sum())
        n_batches = int(self.conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
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
        state = self.read_state(self.conn)
        counts = state.initial_counts.copy()
        initial = state.initial
        answers = np.zeros(len(self.ids), dtype=np.int64)
        changed, settled = 0, 0
        out: dict[str, list[int]] = {"spent": [], "changed": [], "settled": []}
        rows = self.conn.execute("SELECT idx, label FROM votes WHERE source = 'answer' ORDER BY vote")
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
        state = self.read_state(self.conn)
        selected = np.flatnonzero(state.selected)
        selected = selected[np.argsort(state.position[selected], kind="stable")]
        return selected, state.answers[selected], state.counts

    def table(self) -> list[dict[str, Any]]:
        """One row per sample: final label, votes per class, agreement, whether it changed, and
        who annotated it (what :meth:`export` writes)."""
        state = self.read_state(self.conn)
        annotators: dict[int, list[str]] = {}
        for idx, who in self.conn.execute(
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


__all__ = ["Batch", "IngestReport", "Project", "ProjectError", "Question", "Status"]
