"""Random re-annotation order: the baseline every strategy is measured against."""

import numpy as np

from benchmark.plugins import ScoringContext, Strategy


class Random(Strategy):
    name = "random"
    description = "Uniformly random order (the paper's baseline)."
    requires = frozenset()

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return np.random.default_rng([ctx.seed, 0x5A]).random(ctx.n_samples)

    def display_name(self) -> str:
        return "Random"
