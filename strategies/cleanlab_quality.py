"""cleanlab's label-quality scores, computed by the cleanlab package itself."""

import numpy as np
from cleanlab.rank import get_label_quality_scores

from benchmark.plugins import Param, ScoringContext, Strategy


class CleanlabQuality(Strategy):
    name = "cleanlab"
    description = "1 - cleanlab.rank.get_label_quality_scores of the current label."
    parameters = {
        "method": Param(
            ["self_confidence", "normalized_margin", "confidence_weighted_entropy"],
            choices=("self_confidence", "normalized_margin", "confidence_weighted_entropy"),
        )
    }

    def score(self, ctx: ScoringContext) -> np.ndarray:
        probs = ctx.posteriors / ctx.posteriors.sum(axis=1, keepdims=True)
        quality = get_label_quality_scores(
            ctx.current_labels, probs, method=self.params["method"], adjust_pred_probs=False
        )
        # cleanlab: high quality = label probably right; here high = relabel sooner.
        return 1.0 - np.asarray(quality, dtype=np.float64)

    def display_name(self) -> str:
        """``"cleanlab normalized margin"``: the method in words."""
        method = str(self.params["method"]).replace("_weighted", "-weighted").replace("self_", "self-")
        return "cleanlab " + method.replace("_", " ")
