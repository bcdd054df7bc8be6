"""A CNN trained on the noisy labels (the paper's "vanilla" model), cross-fitted so that every
posterior is out-of-sample.

Cross-fitting (see :mod:`benchmark.posteriors.crossfit`): the samples are split into ``folds`` stratified
folds, one model is trained per fold on the other folds, and each sample's posterior comes from
the model that never saw its noisy label. ``posteriors=insample`` trains one model on every
sample instead and predicts each training image through one random training-augmented view,
as the paper's reference code does; ``views=K`` averages K such views instead (test-time
augmentation of the in-sample posterior: one view is a noisy draw, K views estimate the
model's mean prediction under the training augmentation).

``scale`` picks the training recipe (:mod:`benchmark.learners._recipe`):

- ``cpu`` (default): a small ResNet-9-like network with this Config's ``epochs``, ``width``,
  ``lr`` ..., a one-cycle schedule, crop and flip augmentation. The defaults are sized for a
  2-core CPU: about 70 s per fit at N=5000 (32x32 images), where a CIFAR-10H posterior reaches
  ~62 % accuracy against the true labels.
- ``paper``: the paper's ResNet-110 recipe (160 epochs of SGD, its augmentation), for a GPU.
  The Config's CPU knobs (``epochs``, ``width``, ``lr``, ``batch_size``, ``weight_decay``,
  ``dropout``, ``label_smoothing``, ``finetune_epochs``, ``finetune_lr``) are then ignored.

Stochastic posteriors (T x N x C) come from MC dropout: dropout sits only in the network's
cheap tail, so the stem runs once per image and only the tail is re-run for each of the
``mc_samples`` passes. In an active run each re-fit fine-tunes the kept models on the current
labels for ``finetune_epochs`` at the constant ``finetune_lr`` (paper: 20 epochs at 0.0025).

Training uses bf16 autocast where the hardware supports it (CUDA, or CPUs with AVX512-BF16),
every CPU core, and deterministic algorithms; the same seed gives bitwise identical posteriors
on the same machine (and the same thread count).

The torch code is in ``_recipe.py`` and ``_smallcnn_net.py``, imported when a fit starts: the
learner is listed and its cached posteriors are read without PyTorch, which only a fit needs
(``pip install 'alcbench[learners]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.learners._torch import TorchLearner
from benchmark.task import CleaningTask

if TYPE_CHECKING:
    import torch

    from benchmark.learners._recipe import Recipe

#: ``predict`` runs the network on this many images at a time.
PREDICT_CHUNK = 500
#: The training scales: the CPU recipe of the Config's knobs, or the paper's recipe.
SCALES = ("cpu", "paper")


def check_views(views: int, posteriors: str) -> None:
    """ValueError unless ``views`` >= 1, and 1 where ``posteriors`` is not ``insample``."""
    if views < 1:
        raise ValueError(f"views={views!r} must be >= 1")
    if views > 1 and posteriors != "insample":
        raise ValueError(
            f"views={views} averages training views of in-sample posteriors: it needs posteriors=insample"
        )


def check_scale(scale: str) -> None:
    """ValueError unless ``scale`` is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} must be one of {', '.join(SCALES)}")


class SmallCNN(TorchLearner):
    """The family's plain learner; ``coteaching`` and ``elr`` change its training."""

    name = "smallcnn"
    description = "Small ResNet-style CNN on the noisy labels, k-fold cross-fitted, MC dropout."
    version = "1"
    key_neutral = {"views": 1}

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
        scale: str = "cpu"
        posteriors: str = "oof"
        views: int = 1
        finetune_epochs: int = 4
        finetune_lr: float = 0.0025

        def __post_init__(self) -> None:
            check_scale(self.scale)
            check_views(self.views, self.posteriors)

    def recipe(self) -> Recipe:
        """The training recipe of this configuration's ``scale``."""
        from benchmark.learners._recipe import recipe_for

        return recipe_for(self.config)

    def prepare(self, images: np.ndarray, task: CleaningTask) -> torch.Tensor:
        """(N, ch, H, W) float32 on the device: normalised per channel over every image (cpu
        scale), or in [0, 1] with the per-channel statistics kept for the network (paper)."""
        from benchmark.learners._recipe import prepare_images

        return prepare_images(self, super().prepare(images, task))

    def train(self, images: torch.Tensor, labels: np.ndarray, seed: int) -> Any:
        """A fresh network trained on ``images`` (from :meth:`prepare`) and ``labels``, with the
        recipe's augmentation. Reports per epoch the mean training loss and the accuracy on the
        augmented batches."""
        from benchmark.learners._recipe import train_network

        return train_network(self, images, labels, seed)

    def finetune(self, model: Any, images: torch.Tensor, labels: np.ndarray, seed: int) -> Any:
        """``model`` trained on for the recipe's fine-tuning epochs at its constant fine-tuning
        learning rate, on ``images`` and their current ``labels``."""
        from benchmark.learners._recipe import finetune_network

        return finetune_network(self, model, images, labels, seed)

    def predict(self, model: Any, images: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Posteriors (n, C) with dropout off, and (mc_samples, n, C) with dropout on.

        BatchNorm uses its running statistics; each posterior is the mean over the image and its
        mirror image. The stem runs once; only the tail and head are re-run per MC sample.
        """
        return self._posteriors_of(model, images, seed, insample=False)

    def predict_insample(
        self, model: Any, images: torch.Tensor, seed: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`predict`, on the training images, but each image is replaced by one seeded
        random training-augmented view (no mirror average), for the posterior and the MC
        samples alike; with ``views`` > 1 the posterior is the mean over that many views (the
        MC samples stay on the first)."""
        return self._posteriors_of(model, images, seed, insample=True)

    def _posteriors_of(
        self, model: Any, images: torch.Tensor, seed: int, *, insample: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        from benchmark.learners._recipe import posteriors

        return posteriors(
            self,
            model,
            images,
            seed,
            chunk=PREDICT_CHUNK,
            mc_samples=self.config.mc_samples,
            insample=insample,
            views=self.config.views,
        )

    def progress_steps(self) -> int:
        return self.recipe().epochs

    def finetune_steps(self) -> int:
        return self.recipe().finetune_epochs

    def fit_info(self) -> dict[str, Any]:
        recipe = self.recipe()
        return {
            **super().fit_info(),
            "scale": self.config.scale,
            "network": recipe.network if recipe.network == "smallnet" else f"resnet{recipe.depth}",
            "epochs": recipe.epochs,
        }
