"""The oracle: knows the expert's true distribution (an upper bound, not a usable method)."""

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.scoring import oracle_score


class Oracle(Strategy):
    name = "oracle"
    description = "Knows the true label distribution; (1 - p[label]) / expected draws (INV rule)."
    requires = frozenset({"truth"})
    reselect = True
    majority_only = True

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return oracle_score(ctx.true_dist, ctx.label_counts)

    def display_name(self) -> str:
        return "Oracle"
