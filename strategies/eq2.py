"""The paper's selector (Bernhardt et al. 2022, Eq. 2): likely wrong, yet not ambiguous."""

import numpy as np

from benchmark.plugins import Param, ScoringContext, Strategy
from benchmark.simulation.scoring import correctness_minus_difficulty


class Eq2(Strategy):
    name = "eq2"
    description = "Label correctness minus difficulty, CE(q, p) - H(p) (paper Eq. 2)."
    # hinge=None is Eq. 2 as printed; hinge=0.3 is the reference code's CE - max(H - 0.3, 0).
    parameters = {"hinge": Param([None, 0.3], type=float, low=0, high=1)}

    def score(self, ctx: ScoringContext) -> np.ndarray:
        return correctness_minus_difficulty(ctx.label_dist, ctx.posteriors, hinge=self.params["hinge"])

    def display_name(self) -> str:
        """``"Eq. 2 (hinge 0.3)"``; ``"Eq. 2 (no hinge)"`` as printed in the paper."""
        hinge = self.params["hinge"]
        return "Eq. 2 (no hinge)" if hinge is None else f"Eq. 2 (hinge {float(hinge):g})"
