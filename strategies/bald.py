"""Model disagreement: samples on which stochastic posteriors disagree most come first."""

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.scoring import bald


class BALD(Strategy):
    name = "bald"
    description = "BALD mutual information over stochastic posteriors (T x N x C)."
    requires = frozenset({"stochastic"})

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return bald(ctx.stochastic)

    def display_name(self) -> str:
        return "BALD"
