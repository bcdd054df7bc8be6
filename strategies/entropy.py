"""Difficulty alone: the most uncertain predictions come first."""

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.scoring import entropy


class Entropy(Strategy):
    name = "entropy"
    description = "Predictive entropy of the posterior (uncertainty sampling)."

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return entropy(ctx.posteriors)

    def display_name(self) -> str:
        return "Predictive entropy"
