"""The true label distribution as posteriors: what a perfect model of the annotators knows."""

from __future__ import annotations

import numpy as np

from benchmark.plugins import Learner, Posteriors
from benchmark.task import CleaningTask


class TruthLearner(Learner):
    name = "truth"
    description = "The expert's true label distribution itself (an upper bound for any learner)."
    needs_images = False
    cache = False  # a copy of the task's own table: nothing to gain from a file

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        return Posteriors(probs=task.true_dist.astype(np.float32), info={"kind": "truth"})

    def display_name(self) -> str:
        return "true label distribution (upper bound)"
