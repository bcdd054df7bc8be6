"""Label correctness alone: samples whose label the model finds unlikely come first."""

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.scoring import cross_entropy


class Loss(Strategy):
    name = "loss"
    description = "Cross-entropy of the current label distribution under the posterior."

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return cross_entropy(ctx.label_dist, ctx.posteriors)

    def display_name(self) -> str:
        return "Cross-entropy loss"
