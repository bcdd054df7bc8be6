"""Re-fitting a cleaning project's model: new posteriors recorded as the next model generation,
and when ``refit_every`` calls for one.

Generation 0 holds the posteriors the project was created with; each re-fit (the learner fitted
again on the current labels, or posteriors given) adds the next, and the queue ranks the samples
not yet selected by the latest from the next batch on. With ``refit_every`` B, an ingest re-fits
once B answers have come in since the latest generation was fitted (the active loop of
:mod:`benchmark.clean.queue_rules`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import benchmark.clean.ledger as lg
from benchmark import registry
from benchmark.clean.create import read_posteriors
from benchmark.clean.images import learner_task
from benchmark.clean.reports import ProjectError
from benchmark.clean.state import ProjectLedger, State, insert_model
from benchmark.posteriors.files import check_posteriors_array


def refit_due(refit_every: int | None, state: State) -> bool:
    """Whether ``refit_every`` answers (None: never) have come in since the model of ``state``
    was fitted."""
    return bool(refit_every and state.spent - state.model_answers >= refit_every)


def refit_model(
    project: ProjectLedger, posteriors: Path | str | np.ndarray | None = None, *, progress: bool = False
) -> int:
    """Records the next model generation: the project's learner fitted again on the current
    labels, or ``posteriors`` (a file or an array); returns its number."""
    state = project.read_state(project.conn)
    if posteriors is not None:
        if isinstance(posteriors, np.ndarray):
            values = check_posteriors_array(
                posteriors, len(project.ids), len(project.classes), where="posteriors"
            )
            probs = values.mean(axis=0) if values.ndim == 3 else values
            stochastic = values if values.ndim == 3 else None
            source = "posteriors (api)"
        else:
            probs, stochastic = read_posteriors(Path(posteriors), project.ids, project.classes)
            source = str(posteriors)
    else:
        if project.learner_spec is None:
            raise ProjectError(
                f"{project.folder}: the project has no learner to re-fit (it was created from posteriors); "
                "pass new posteriors with --posteriors"
            )
        learner = registry.create("learner", project.learner_spec)
        task = learner_task(
            project.ids, project.classes, state.initial_counts, project.images, project.image_size
        )
        labels = np.argmax(state.counts, axis=1)
        post = learner.refit(task, labels, seed=project.seed, progress=progress)
        probs, stochastic = post.probs, post.stochastic
        source = f"learner {learner.spec} re-fitted after {state.spent} answers"
    with lg.transaction(project.conn) as conn:
        generation = int(conn.execute("SELECT MAX(generation) + 1 FROM models").fetchone()[0])
        spent = int(conn.execute("SELECT COUNT(*) FROM votes WHERE source = 'answer'").fetchone()[0])
        insert_model(conn, generation, spent, source, probs, stochastic)
    return generation


__all__ = ["refit_due", "refit_model"]
