"""The paper's chest X-ray learner: a torchvision ResNet-50 on greyscale radiographs, cross-fitted.

Bernhardt et al. (2022) trained a ResNet-50, from scratch or from a self-supervised encoder
trained on NIH images, on 224x224 crops of greyscale radiographs repeated to three channels,
with Adam and class-balanced sampling. This learner does the same, cross-fitted by
:class:`benchmark.posteriors.crossfit.CrossFitLearner` (``folds`` models, each sample predicted by the
model that never saw its noisy label) so that the posteriors are out-of-sample.

Pipeline, on the training device (the uint8 images live there once):

- images are resized once to ``image_size`` squared (done by the adapter when it already read
  them at that size), and the per-channel mean and standard deviation are taken over all of
  them;
- training: a random resized crop to ``crop`` (area 80-100 %, aspect 3/4-4/3), a rotation of up
  to 10 degrees and brightness/contrast jitter of up to 20 %, as one affine resampling. No
  flips: a chest X-ray is not left/right symmetric (the heart is on the left);
- evaluation: the centre ``crop``;
- intensities are scaled to [0, 1], normalised with the dataset's mean and standard deviation
  and repeated to three channels.

Batches are drawn with replacement by a :class:`~torch.utils.data.WeightedRandomSampler` that
weights each sample by 1 / (its class's count), so every class is seen equally often; an epoch
is as many draws as there are training samples. Adam with a cosine-decayed learning rate.

``mc_samples`` > 0 adds stochastic posteriors by MC dropout: a dropout layer of rate
``dropout`` sits before the final linear layer (it is trained with it, so ``dropout`` must be
> 0), the backbone runs once per image and only the dropout and linear layer are re-run.

``init`` names a local file holding the state dict of a torchvision ResNet-50 encoder (e.g. a
SimCLR/BYOL encoder trained on NIH images); nothing is ever downloaded. Its tensors may carry a
prefix (``encoder.``, ``module.``, ...), which is found and stripped; extra tensors (projection
heads) are ignored and the final ``fc`` layer always starts afresh, but every backbone tensor
must be present with the right shape, so a half-loaded encoder is an error, never silent. The
file is read when the fit starts, before the images are loaded.

On a GPU a full fit is minutes per fold (channels_last, bf16 autocast); on a CPU it runs on
every core and works, but at full size only for a handful of images. Seeded and deterministic:
the same seed gives bitwise identical posteriors on the same machine and thread count (on CUDA,
PyTorch's deterministic mode is asked for, with warnings where a kernel has no such version).

The torch code (network, training loop, image handling, encoder files) is in
``_resnet50_net.py``, imported when a fit starts: the learner is listed and its cached
posteriors are read without PyTorch and torchvision, which only a fit needs
(``pip install 'alcbench[learners]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.learners._torch import TorchLearner
from benchmark.task import CleaningTask

if TYPE_CHECKING:
    import torch

    from benchmark.learners._resnet50_net import Encoder, XRayResNet50


class ResNet50(TorchLearner):
    name = "resnet50"
    description = "torchvision ResNet-50 on greyscale X-rays (the paper's CXR model), cross-fitted."
    version = "1"
    needs_torchvision = True

    @dataclass(frozen=True)
    class Config:
        epochs: int = 20
        image_size: int = 256
        crop: int = 224
        batch_size: int = 32
        lr: float = 1e-4
        weight_decay: float = 1e-4
        folds: int = 2
        mc_samples: int = 0
        dropout: float = 0.0
        init: str | None = None
        bf16: bool = True

        def __post_init__(self) -> None:
            problems = []
            if self.epochs < 1:
                problems.append(f"epochs={self.epochs} must be >= 1")
            if not 1 <= self.crop <= self.image_size:
                problems.append(f"crop={self.crop} must lie in 1..image_size={self.image_size}")
            if self.batch_size < 2:
                problems.append(f"batch_size={self.batch_size} must be >= 2 (BatchNorm needs two samples)")
            if not 0.0 <= self.dropout < 1.0:
                problems.append(f"dropout={self.dropout} must lie in [0, 1)")
            if self.mc_samples < 0:
                problems.append(f"mc_samples={self.mc_samples} must be >= 0")
            if self.mc_samples > 0 and self.dropout == 0.0:
                problems.append(
                    f"mc_samples={self.mc_samples} samples the dropout before the last layer, so it "
                    f"needs dropout > 0, e.g. resnet50[mc_samples={self.mc_samples},dropout=0.2]"
                )
            if problems:
                raise ValueError("; ".join(problems))

    #: Set during a fit: the ``init`` encoder (if any) and the dataset's (mean, std) on the device.
    encoder: Encoder | None = None
    norm: tuple[torch.Tensor, torch.Tensor] | None = None

    @contextmanager
    def session(self) -> Iterator[None]:
        self.require_torch()
        from benchmark.learners._resnet50_net import load_encoder

        init = self.config.init
        self.encoder = load_encoder(Path(init)) if init is not None else None
        try:
            with super().session():
                yield
        finally:
            self.encoder = self.norm = None

    def prepare(self, images: np.ndarray, task: CleaningTask) -> torch.Tensor:
        """(N, ch, image_size, image_size) uint8 on the device; records the channel statistics."""
        from benchmark.learners._resnet50_net import as_uint8_nchw, channel_stats, resize_images

        resized = resize_images(as_uint8_nchw(super().prepare(images, task), task), self.config.image_size)
        mean, std = channel_stats(resized)
        self.norm = (mean.to(self.device), std.to(self.device))
        return resized.to(self.device)

    def fit_info(self) -> dict[str, Any]:
        config = self.config
        return {
            "image_size": config.image_size,
            "crop": config.crop,
            **super().fit_info(),
            "init": config.init,
            "init_sha256": self.encoder.sha256 if self.encoder is not None else None,
        }

    def train(self, images: torch.Tensor, labels: np.ndarray, seed: int) -> XRayResNet50:
        """A fresh :class:`~benchmark.learners._resnet50_net.XRayResNet50` trained on ``images``
        (n, ch, S, S) uint8 on the device.

        Reports per epoch the mean training loss and the accuracy against ``labels`` on the
        augmented, class-balanced batches.
        """
        from benchmark.learners._resnet50_net import train

        return train(self, images, labels, seed, norm=self._norm(), encoder=self.encoder)

    def predict(
        self, model: XRayResNet50, images: torch.Tensor, seed: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Posteriors (n, C) of the centre crops of ``images``, and (mc_samples, n, C) MC dropout
        ones (None when ``mc_samples`` is 0).

        BatchNorm uses its running statistics. The backbone runs once per image; each MC sample
        re-runs only the dropout and the final linear layer.
        """
        from benchmark.learners._resnet50_net import predict

        return predict(self, model, images, seed, norm=self._norm())

    def _norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm is None:
            raise RuntimeError("resnet50: prepare() sets the normalisation; call it first")
        return self.norm
