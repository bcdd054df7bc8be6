"""Early-learning regularisation (ELR, Liu et al., 2020), one of the paper's learners: smallcnn's
network trained with a regulariser that keeps it close to its own early predictions. Its
posteriors are in-sample by default (``posteriors=insample``: one network predicts the images it
was trained on, with training augmentation on, as the paper's reference code); ``oof``
cross-fits like ``smallcnn``.

Each training sample keeps a target t, an exponential moving average (rate ``elr_beta``) of the
network's detached, normalised predictions of it, starting at zero; the loss is
``CE(p, y) + elr_lambda * mean(log(1 - <p, t>))``. Early in training a network fits the clean
majority of labels; the regulariser pulls later predictions toward those targets rather than
toward memorised noisy labels.

Posteriors and MC dropout samples, ``scale``, ``posteriors``, ``views`` and the fine-tuning
fields are as in :mod:`benchmark.learners.smallcnn` (at paper scale: ResNet-110 and the paper's recipe). An
active run's re-fit fine-tunes the kept network with the ELR loss on the current labels; each
sample's target restarts at zero, as in the first training: targets holding the network's
present posteriors would pull it back to what it predicted before the relabelling, against the
corrected labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmark.learners.smallcnn import SmallCNN, check_scale, check_views

if TYPE_CHECKING:
    import torch

    from benchmark.learners._smallcnn_net import Network


class ELR(SmallCNN):
    """smallcnn's network trained with the early-learning regulariser (see the module doc)."""

    name = "elr"
    description = "CNN with early-learning regularisation (ELR) against noisy labels, in-sample."
    version = "1"

    @dataclass(frozen=True)
    class Config:
        epochs: int = 24
        width: int = 32
        folds: int = 2
        mc_samples: int = 10
        batch_size: int = 64
        lr: float = 0.05
        weight_decay: float = 5e-4
        dropout: float = 0.1
        label_smoothing: float = 0.0
        bf16: bool = True
        elr_beta: float = 0.9
        elr_lambda: float = 3.0
        scale: str = "cpu"
        posteriors: str = "insample"  # the reference's way
        views: int = 1
        finetune_epochs: int = 4
        finetune_lr: float = 0.0025

        def __post_init__(self) -> None:
            check_scale(self.scale)
            check_views(self.views, self.posteriors)
            if not 0.0 <= self.elr_beta < 1.0:
                raise ValueError(f"elr_beta={self.elr_beta!r} must be in [0, 1)")
            if self.elr_lambda < 0.0:
                raise ValueError(f"elr_lambda={self.elr_lambda!r} must be >= 0")

    def train(self, images: torch.Tensor, labels: np.ndarray, seed: int) -> Network:
        """A fresh network trained on ``images`` and ``labels`` with the ELR loss (each sample's
        target starting at zero). Reports per epoch the mean training loss and the accuracy on
        the augmented batches."""
        from benchmark.learners._elr_net import train

        return train(self, images, labels, seed)

    def finetune(self, model: Network, images: torch.Tensor, labels: np.ndarray, seed: int) -> Network:
        """``model`` fine-tuned with the ELR loss on the current ``labels``, every target
        restarted at zero."""
        from benchmark.learners._elr_net import finetune

        return finetune(self, model, images, labels, seed)
