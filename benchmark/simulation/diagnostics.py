"""Where a strategy's first picks fall: mislabelled, ambiguous or clear samples.

A strategy that ranks no better than Random can fail in two ways: its scores carry no
information, or they point at the wrong samples. The usual wrong samples are *ambiguous* ones
(normalised entropy of the true label distribution > 0.3) whose noisy label is right: a model
is uncertain about them, so uncertainty-driven scores (entropy, BALD's mutual information)
pick them, but relabelling them corrects nothing.

:func:`first_picks` ranks every sample by the strategy's scores at the run's start (one noisy
label each, the learner's posteriors), takes the top k, k the number of mislabelled samples
(the picks a perfect ranking would spend on mislabelled samples only), and reports the share
of them that is mislabelled, ambiguous and correctly labelled, or clear and correctly
labelled. Every run row carries these shares (``picks_*``), and the leaderboard averages them.
"""

from __future__ import annotations

import numpy as np

from benchmark.simulation.trajectory import ranking
from benchmark.task import CleaningTask

#: The run-row columns, in the order the report shows them.
PICK_COLUMNS = ("picks_mislabelled", "picks_ambiguous_correct", "picks_clear_correct")


def first_picks(task: CleaningTask, scores: np.ndarray, seed: int) -> dict[str, float]:
    """Shares of the top-k samples by ``scores`` (ties broken as the run breaks them; k the
    number of mislabelled samples) that are mislabelled, ambiguous and correctly labelled, and
    clear and correctly labelled; NaN each when no sample is mislabelled."""
    wrong = task.noisy_labels != task.true_labels
    k = int(wrong.sum())
    if k == 0:
        return dict.fromkeys(PICK_COLUMNS, float("nan"))
    top = ranking(np.asarray(scores, dtype=np.float64), seed)[:k]
    ambiguous = task.ambiguous[top]
    return dict(
        zip(
            PICK_COLUMNS,
            (
                float(np.mean(wrong[top])),
                float(np.mean(~wrong[top] & ambiguous)),
                float(np.mean(~wrong[top] & ~ambiguous)),
            ),
            strict=True,
        )
    )
