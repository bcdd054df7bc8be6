"""Co-teaching (Han et al., 2018), one of the paper's learners: two networks trained side by side,
each on the samples the other finds easiest. Its posteriors are in-sample by default
(``posteriors=insample``: the pair predicts the images it was trained on, with training
augmentation on, as the paper's reference code); ``oof`` cross-fits like ``smallcnn``.

Per batch each network computes the per-sample cross-entropy; each is updated only on the
``1 - r`` fraction of the batch with the smallest loss under the *other* network, so that
samples whose noisy label neither can fit are left out. ``r`` is 0 for the first
``warmup_epochs`` (paper scale: 25), then the forget rate: ``forget_rate``, or by default the
task's noise rate (the fraction of noisy labels that differ from the true ones, clipped to
[0, 0.5]), as the paper's reference code sets it. The forget rate used is in the fit's info.

Posteriors: the mean of the two networks' softmax outputs; the stochastic posteriors (2, N, C)
are the two networks' own. An active run's re-fit fine-tunes both networks on the current
labels, still exchanging small-loss samples at the forget rate. ``scale``, ``posteriors``,
``views`` (each network's in-sample posterior averaged over that many training views) and the
fine-tuning fields are those of :mod:`benchmark.learners.smallcnn`; the two networks and
their recipe are smallcnn's (at paper scale, two ResNet-110s). Each network is initialised from
its own seed derived from the fold's seed.

The defaults (smallcnn's CPU recipe, 24 epochs, 4 of them warm-up) keep a fit at N=5000 (32x32
images, 2 folds) at about 120 s on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.learners.smallcnn import PREDICT_CHUNK, SmallCNN, check_scale, check_views
from benchmark.task import CleaningTask

if TYPE_CHECKING:
    import torch

    from benchmark.learners._coteaching_net import Pair

#: The largest forget rate the default (the task's noise rate) is clipped to.
MAX_DEFAULT_FORGET_RATE = 0.5


class CoTeaching(SmallCNN):
    """Two networks, each trained on its peer's small-loss samples (see the module doc)."""

    name = "coteaching"
    description = "Co-teaching: two CNNs each trained on the other's small-loss samples, in-sample."
    version = "1"

    @dataclass(frozen=True)
    class Config:
        epochs: int = 24
        width: int = 32
        folds: int = 2
        batch_size: int = 64
        lr: float = 0.05
        weight_decay: float = 5e-4
        dropout: float = 0.1
        label_smoothing: float = 0.2
        bf16: bool = True
        forget_rate: float | None = None
        warmup_epochs: int = 4
        scale: str = "cpu"
        posteriors: str = "insample"  # the reference's way
        views: int = 1
        finetune_epochs: int = 4
        finetune_lr: float = 0.0025

        def __post_init__(self) -> None:
            check_scale(self.scale)
            check_views(self.views, self.posteriors)
            if self.forget_rate is not None and not 0.0 <= self.forget_rate < 1.0:
                raise ValueError(f"forget_rate={self.forget_rate!r} must be in [0, 1)")
            if self.warmup_epochs < 0:
                raise ValueError(f"warmup_epochs={self.warmup_epochs!r} must be >= 0")

    #: The forget rate of the fit under way (set by :meth:`prepare`).
    forget_rate: float

    def prepare(self, images: np.ndarray, task: CleaningTask) -> torch.Tensor:
        """As smallcnn's, and fixes the forget rate (the Config's, or the task's noise rate)."""
        data = super().prepare(images, task)
        rate = self.config.forget_rate
        if rate is None:
            noise = float(np.mean(np.asarray(task.noisy_labels) != task.true_labels))
            rate = min(max(noise, 0.0), MAX_DEFAULT_FORGET_RATE)
        self.forget_rate = float(rate)
        return data

    def train(self, images: torch.Tensor, labels: np.ndarray, seed: int) -> Pair:
        """Two fresh networks co-trained on ``images`` and ``labels``; one :meth:`epoch_done`
        per epoch of the pair."""
        from benchmark.learners._coteaching_net import train_pair

        return train_pair(self, images, labels, seed, self.forget_rate)

    def finetune(self, model: Pair, images: torch.Tensor, labels: np.ndarray, seed: int) -> Pair:
        """Both networks co-trained on for the fine-tuning epochs at the constant fine-tuning
        learning rate, on the current ``labels``, at the fit's forget rate (no warm-up)."""
        from benchmark.learners._coteaching_net import finetune_pair

        return finetune_pair(self, model, images, labels, seed, self.forget_rate)

    def predict(self, model: Pair, images: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The mean of the two networks' posteriors (n, C), each the mean over the image and
        its mirror with dropout off, and the two posteriors as stochastic samples (2, n, C)."""
        from benchmark.learners._coteaching_net import predict_pair

        return predict_pair(self, model, images, seed, chunk=PREDICT_CHUNK, insample=False)

    def predict_insample(self, model: Pair, images: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`predict`, but both networks see one seeded random training-augmented view
        of each image (no mirror average)."""
        from benchmark.learners._coteaching_net import predict_pair

        return predict_pair(self, model, images, seed, chunk=PREDICT_CHUNK, insample=True)

    def fit_info(self) -> dict[str, Any]:
        return {
            **super().fit_info(),
            "forget_rate": getattr(self, "forget_rate", None),
            "warmup_epochs": self.recipe().warmup_epochs,
        }
