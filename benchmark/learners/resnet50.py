"""The paper's chest X-ray learner: a torchvision ResNet-50 on greyscale radiographs, cross-fitted.

Bernhardt et al. (2022) trained a ResNet-50, from scratch or from a self-supervised encoder
trained on NIH images, on 224x224 crops of greyscale radiographs repeated to three channels,
with Adam and class-balanced sampling. This learner does the same, cross-fitted by
:class:`benchmark.crossfit.CrossFitLearner` (``folds`` models, each sample predicted by the
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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import WeightedRandomSampler

from benchmark.learners._torch import Encoder, TorchLearner, load_encoder, torchvision_resnet50
from benchmark.task import CleaningTask

#: Random resized crop: fraction of the image area kept, and aspect ratio range.
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
#: Largest rotation (degrees) and brightness/contrast change (relative) used for augmentation.
MAX_ROTATION = 10.0
MAX_JITTER = 0.2
FEATURES = 2048


class ResNet50(TorchLearner):
    name = "resnet50"
    description = "torchvision ResNet-50 on greyscale X-rays (the paper's CXR model), cross-fitted."
    version = "1"

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
        init = self.config.init
        self.encoder = load_encoder(Path(init)) if init is not None else None
        try:
            with super().session():
                yield
        finally:
            self.encoder = self.norm = None

    def prepare(self, images: np.ndarray, task: CleaningTask) -> torch.Tensor:
        """(N, ch, image_size, image_size) uint8 on the device; records the channel statistics."""
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
        """A fresh :class:`XRayResNet50` trained on ``images`` (n, ch, S, S) uint8 on the device.

        Reports per epoch the mean training loss and the accuracy against ``labels`` on the
        augmented, class-balanced batches.
        """
        config, x, norm = self.config, images, self._norm()
        y = torch.as_tensor(labels, device=self.device)
        torch.manual_seed(seed)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        model = XRayResNet50(self.n_classes, config.dropout)
        if self.encoder is not None:
            model.backbone.load_state_dict(self.encoder.state, strict=False)
        model = model.to(self.device).to(memory_format=torch.channels_last)
        steps = max(1, x.shape[0] // config.batch_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
        sampler = balanced_sampler(labels, num_samples=steps * config.batch_size, generator=gen)
        model.train()
        for _ in range(config.epochs):
            drawn = torch.as_tensor(list(sampler))
            # Summed on the device and read once per epoch: a read per step would stall a GPU.
            total_loss = torch.zeros((), device=x.device)
            correct = torch.zeros((), dtype=torch.int64, device=x.device)
            for batch in drawn.view(steps, config.batch_size):
                idx = batch.to(x.device)
                xb = augment(x[idx], config.crop, gen, norm)
                yb = y[idx]
                with self.autocast():
                    logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total_loss += loss.detach()
                correct += (logits.argmax(1) == yb).sum()
            self.epoch_done(loss=float(total_loss) / steps, accuracy=int(correct) / drawn.numel())
        return model

    @torch.no_grad()
    def predict(
        self, model: XRayResNet50, images: torch.Tensor, seed: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Posteriors (n, C) of the centre crops of ``images``, and (mc_samples, n, C) MC dropout
        ones (None when ``mc_samples`` is 0).

        BatchNorm uses its running statistics. The backbone runs once per image; each MC sample
        re-runs only the dropout and the final linear layer.
        """
        config, norm = self.config, self._norm()
        model.eval()
        torch.manual_seed(seed)
        probs, samples = [], []
        for chunk in images.split(2 * config.batch_size):
            xb = centre_crop(chunk, config.crop, norm)
            with self.autocast():
                features = model.features(xb)
            features = features.float()
            probs.append(torch.softmax(model.backbone.fc(features), dim=1))
            if config.mc_samples:
                model.dropout.train()
                samples.append(
                    torch.stack(
                        [torch.softmax(model.head(features), dim=1) for _ in range(config.mc_samples)]
                    )
                )
                model.dropout.eval()
        p = torch.cat(probs).cpu().numpy().astype(np.float32)
        if not config.mc_samples:
            return p, None
        return p, torch.cat(samples, dim=1).cpu().numpy().astype(np.float32)

    def _norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm is None:
            raise RuntimeError("resnet50: prepare() sets the normalisation; call it first")
        return self.norm


# --------------------------------------------------------------------------- images


def as_uint8_nchw(images: np.ndarray, task: CleaningTask) -> torch.Tensor:
    """(N, H, W), (N, H, W, 1) or (N, H, W, 3) uint8 -> (N, ch, H, W) uint8 tensor on the CPU."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] != task.n_samples or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{task.name}: expected images of shape ({task.n_samples}, H, W) or "
            f"({task.n_samples}, H, W, 1 or 3), got {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{task.name}: expected uint8 images, got {images.dtype}")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def resize_images(images: torch.Tensor, size: int, chunk: int = 256) -> torch.Tensor:
    """(N, ch, H, W) uint8 -> (N, ch, size, size) uint8, antialiased bilinear (no-op when equal)."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].float()
        resized = F.interpolate(
            block, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of (N, ch, H, W) uint8 images, in [0, 1] units.

    Exact, from a histogram of the 256 grey levels, without a float copy of the images.
    Returns two (1, ch, 1, 1) float32 tensors.
    """
    counts = torch.zeros(images.shape[1], 256, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk]
        for c in range(images.shape[1]):
            counts[c] += torch.bincount(block[:, c].reshape(-1).long(), minlength=256).double()
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(dim=1)
    mean = (counts * levels).sum(dim=1) / total
    var = (counts * (levels - mean[:, None]) ** 2).sum(dim=1) / total
    std = var.sqrt().clamp_min(1e-3)
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


def _normalise(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Float [0, 1] (B, ch, h, w) -> normalised (B, 3, h, w), channels_last (grey is repeated)."""
    x = (x - norm[0]) / norm[1]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


def augment(
    images: torch.Tensor, crop: int, gen: torch.Generator, norm: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Training view of (B, ch, S, S) uint8 images: (B, 3, crop, crop) float, normalised.

    A random resized crop (area ``CROP_SCALE``, aspect ``CROP_RATIO``) and a rotation of up to
    ``MAX_ROTATION`` degrees, as one bilinear affine resampling (outside the image is black),
    then brightness and contrast factors in 1 +- ``MAX_JITTER``. Random numbers come from the
    CPU generator ``gen``, so a batch is the same on every device.
    """
    b = images.shape[0]
    u = torch.rand(b, 7, generator=gen, dtype=torch.float64)
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[:, 0]
    log_ratio = math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * u[:, 1]
    # Half-widths of the crop in normalised coordinates ([-1, 1] spans the image).
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx = (1 - w) * (2 * u[:, 2] - 1)
    ty = (1 - h) * (2 * u[:, 3] - 1)
    angle = torch.deg2rad(MAX_ROTATION * (2 * u[:, 4] - 1))
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [torch.stack([w * cos, -h * sin, tx], dim=1), torch.stack([w * sin, h * cos, ty], dim=1)], dim=1
    )
    x = images.float().div_(255.0)
    grid = F.affine_grid(theta.to(x), [b, x.shape[1], crop, crop], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness = (1 + MAX_JITTER * (2 * u[:, 5] - 1)).to(x).view(-1, 1, 1, 1)
    contrast = (1 + MAX_JITTER * (2 * u[:, 6] - 1)).to(x).view(-1, 1, 1, 1)
    x = x * brightness
    grey = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - grey) * contrast + grey).clamp_(0.0, 1.0)
    return _normalise(x, norm)


def centre_crop(images: torch.Tensor, crop: int, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Evaluation view of (B, ch, S, S) uint8 images: the centre (B, 3, crop, crop), normalised."""
    top = (images.shape[-2] - crop) // 2
    left = (images.shape[-1] - crop) // 2
    x = images[..., top : top + crop, left : left + crop].float().div_(255.0)
    return _normalise(x, norm)


# --------------------------------------------------------------------------- sampling


def balanced_sampler(
    labels: np.ndarray, *, num_samples: int | None = None, generator: torch.Generator
) -> WeightedRandomSampler:
    """Draws positions 0..n-1 of ``labels`` with replacement, each class equally often on average.

    Args:
        labels: (n,) int class of each training sample.
        num_samples: draws per pass (default n).
        generator: a seeded generator; the same seed draws the same positions.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    weights = (1.0 / counts[labels]).tolist()
    return WeightedRandomSampler(
        weights, num_samples=num_samples or labels.shape[0], replacement=True, generator=generator
    )


# --------------------------------------------------------------------------- the network


class XRayResNet50(nn.Module):
    """torchvision's ResNet-50, with an optional dropout before its final linear layer ``fc``.

    ``features`` (B, 3, h, w) -> (B, 2048) runs the backbone once; ``head`` (dropout + ``fc``) is
    all that MC dropout re-runs. ``backbone`` is a plain torchvision ResNet-50, so encoder state
    dicts load into it unchanged.
    """

    def __init__(self, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.backbone = torchvision_resnet50(n_classes)
        self.dropout = nn.Dropout(dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        return torch.flatten(b.avgpool(x), 1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.fc(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
