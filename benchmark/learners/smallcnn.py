"""A small CNN trained on the noisy labels, cross-fitted so that every posterior is out-of-sample.

Cross-fitting (see :mod:`benchmark.crossfit`): the samples are split into ``folds`` stratified
folds, one model is trained per fold on the other folds, and each sample's posterior comes from
the model that never saw its noisy label. The images are normalised per channel once, over the
whole dataset, before the folds.

Stochastic posteriors (T x N x C) come from MC dropout: dropout sits only in the last,
low-resolution block and before the classifier, so the expensive stem runs once per image and
only the cheap tail is re-run for each of the ``mc_samples`` passes.

The defaults are sized for a 2-core CPU: about 70 s per fit at N=5000 (32x32 images), where a
CIFAR-10H posterior reaches ~62 % accuracy against the true labels. Training uses bf16 autocast
where the hardware supports it (CUDA, or CPUs with AVX512-BF16), every CPU core, and
deterministic algorithms; the same seed gives bitwise identical posteriors on the same machine
(and the same thread count).

The network and its training loop are in ``_smallcnn_net.py``, imported when a fit starts: the
learner is listed and its cached posteriors are read without PyTorch, which only a fit needs
(``pip install 'alcbench[learners]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmark.learners._torch import TorchLearner
from benchmark.task import CleaningTask

if TYPE_CHECKING:
    import torch

    from benchmark.learners._smallcnn_net import SmallNet

#: ``predict`` runs the network on this many images at a time.
PREDICT_CHUNK = 500


class SmallCNN(TorchLearner):
    name = "smallcnn"
    description = "Small ResNet-style CNN on the noisy labels, k-fold cross-fitted, MC dropout."
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
        label_smoothing: float = 0.2
        bf16: bool = True

    def prepare(self, images: np.ndarray, task: CleaningTask) -> torch.Tensor:
        """(N, ch, H, W) float32 on the device, normalised per channel over every image."""
        from benchmark.learners._smallcnn_net import normalise

        return normalise(super().prepare(images, task), self.device)

    def train(self, images: torch.Tensor, labels: np.ndarray, seed: int) -> SmallNet:
        """A fresh :class:`~benchmark.learners._smallcnn_net.SmallNet` trained on normalised
        ``images`` (n, ch, H, W) and ``labels``.

        Augmentation: random crops of the image padded by 4 pixels, and horizontal flips. Reports
        per epoch the mean training loss and the accuracy on the augmented batches.
        """
        from benchmark.learners._smallcnn_net import train

        return train(self, images, labels, seed)

    def predict(self, model: SmallNet, images: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Posteriors (n, C) with dropout off, and (mc_samples, n, C) with dropout on.

        BatchNorm uses its running statistics; each posterior is the mean over the image and its
        mirror image. The stem runs once; only the tail and head are re-run per MC sample.
        """
        from benchmark.learners._smallcnn_net import predict

        return predict(self, model, images, seed, chunk=PREDICT_CHUNK)
