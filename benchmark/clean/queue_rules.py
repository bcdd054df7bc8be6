"""The relabelling queue of a cleaning project: what ``next`` hands out, in what order, and when
it stops.

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
  current labels and the samples not yet selected are re-ranked (:mod:`benchmark.clean.refit`).

Scores are computed afresh for every batch, from the label state and the latest posteriors. For
a row-local strategy (the default contract) that is the simulator's ranking exactly; a strategy
whose scores depend on other samples' labels is re-scored once per batch here, where the
simulator re-scores it after every selection.
"""

from __future__ import annotations

import numpy as np

import benchmark.clean.ledger as lg
from benchmark import registry
from benchmark.clean.reports import Batch, ProjectError, Question
from benchmark.clean.state import ProjectLedger, State, now
from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.trajectory import checked_scores, ranking
from benchmark.task import normalised_entropy

#: Extra answers presumed for each sample not yet settled, when ``next`` decides whether the
#: budget still covers one more sample (see the module's docstring).
EXTRA_ANSWERS_PER_OPEN_SAMPLE = 2


def cleaning_strategy(spec: str) -> Strategy:
    """The registered strategy ``spec``, if a cleaning project can rank by it (it needs no true
    label distribution)."""
    strategy: Strategy = registry.create("strategy", spec)
    if "truth" in strategy.requires or strategy.reselect:
        raise ProjectError(
            f"strategy {strategy.spec} needs the true label distribution, which a cleaning project "
            "does not have; choose one that ranks by the model (e.g. eq2[hinge=0.3], loss)"
        )
    return strategy


def strategy_scores(project: ProjectLedger, state: State | None = None) -> np.ndarray:
    """(N,) the project's strategy's scores of ``state`` (default: the ledger's now)."""
    if state is None:
        state = project.read_state(project.conn)
    strategy = cleaning_strategy(project.strategy_spec)
    ctx = ScoringContext(
        label_counts=state.counts,
        posteriors=state.probs.astype(np.float64),
        stochastic=None if state.stochastic is None else state.stochastic.astype(np.float64),
        seed=project.seed,
    )
    return checked_scores(strategy, ctx)


def next_batch(project: ProjectLedger, n: int) -> Batch:
    """Selects up to ``n`` samples by the rules above and records them as a new batch of open
    questions (one transaction)."""
    if n < 1:
        raise ProjectError(f"--n must be at least 1, got {n}")
    with lg.transaction(project.conn) as conn:
        state = project.read_state(conn)
        settled = state.settled
        # unsettled samples continue their episode first, in selection order
        waiting = state.selected & ~settled & (state.open_requests == 0)
        more = np.flatnonzero(waiting)
        more = more[np.argsort(state.position[more], kind="stable")][:n]
        open_samples = int((state.selected & ~settled).sum())
        owed = int(state.open_requests.sum()) + more.size
        new: list[int] = []
        scores = strategy_scores(project, state)
        if more.size < n:
            order = ranking(scores, project.seed)
            order = order[~state.selected[order]]
            for i in order[: n - more.size]:
                if project.budget is not None:
                    committed = state.spent + owed + EXTRA_ANSWERS_PER_OPEN_SAMPLE * open_samples
                    if committed > project.budget:
                        break
                new.append(int(i))
                owed += 1
                open_samples += 1
        if not more.size and not new:
            return Batch(None, [], _why_empty(project, state))
        batch = int(conn.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM batches").fetchone()[0])
        conn.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?)",
            (batch, now(), state.generation, more.size + len(new)),
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
                questions.append(_question(project, int(cur.lastrowid or 0), batch, i, kind, state, scores))
    return Batch(batch, questions, generation=state.generation)


def open_batch(project: ProjectLedger, number: int) -> Batch:
    """Batch ``number`` again, with only its questions that are still open."""
    exists = project.conn.execute("SELECT 1 FROM batches WHERE batch = ?", (number,)).fetchone()
    if exists is None:
        last = project.conn.execute("SELECT COALESCE(MAX(batch), 0) FROM batches").fetchone()[0]
        raise ProjectError(f"{project.folder}: no batch {number} (batches 1..{last} were handed out)")
    state = project.read_state(project.conn)
    scores = strategy_scores(project, state)
    rows = project.conn.execute(
        "SELECT request, idx, kind FROM requests WHERE batch = ? AND state = 'open' ORDER BY request",
        (number,),
    ).fetchall()
    questions = [_question(project, r, number, i, kind, state, scores) for r, i, kind in rows]
    why = "" if questions else f"batch {number} has no open questions left"
    return Batch(number, questions, why, state.generation)


def _question(
    project: ProjectLedger, request: int, batch: int, i: int, kind: str, state: State, scores: np.ndarray
) -> Question:
    p = state.probs[i].astype(np.float64)
    current = int(np.argmax(state.counts[i]))
    top = np.argsort(-p, kind="stable")[:3]
    return Question(
        request=request,
        batch=batch,
        sample_id=project.ids[i],
        kind=kind,
        current_label=project.classes[current],
        votes={project.classes[k]: int(v) for k, v in enumerate(state.counts[i]) if v},
        top=[(project.classes[k], float(p[k])) for k in top],
        score=float(scores[i]),
        correctness=float(p[current]),
        difficulty=float(normalised_entropy(p[None])[0]) if len(project.classes) > 1 else 0.0,
        image=project.images[i],
    )


def _why_empty(project: ProjectLedger, state: State) -> str:
    open_questions = int(state.open_requests.sum())
    if open_questions:
        return (
            f"nothing new to hand out: {open_questions} question(s) of earlier batches are still open; "
            "ingest their answers (or `alcbench clean release`) first"
        )
    # no open question and no sample waiting for another answer (it would have been handed
    # out): only the budget or the end of the samples stops the queue
    if project.budget is not None and state.spent > project.budget:
        return f"the budget is spent: {state.spent} answers of {project.budget}"
    return f"every sample has been reviewed and settled ({len(project.ids)} samples)"


def release_questions(project: ProjectLedger, batch: int | None) -> int:
    """Closes the open questions of batch ``batch`` (None: of every batch) and puts their
    samples without an answer back in the queue (one transaction); returns how many."""
    with lg.transaction(project.conn) as conn:
        where, args = ("state = 'open'", ()) if batch is None else ("state = 'open' AND batch = ?", (batch,))
        rows = conn.execute(f"SELECT request, idx FROM requests WHERE {where}", args).fetchall()
        for request, idx in rows:
            conn.execute("UPDATE requests SET state = 'released' WHERE request = ?", (request,))
            answered = conn.execute(
                "SELECT COUNT(*) FROM votes WHERE idx = ? AND source = 'answer'", (idx,)
            ).fetchone()[0]
            if not answered:
                conn.execute("DELETE FROM selections WHERE idx = ?", (idx,))
        return len(rows)


__all__ = [
    "EXTRA_ANSWERS_PER_OPEN_SAMPLE",
    "cleaning_strategy",
    "next_batch",
    "open_batch",
    "release_questions",
    "strategy_scores",
]
