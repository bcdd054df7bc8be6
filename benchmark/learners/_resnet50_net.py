"""The torch code of the ``resnet50`` learner (:mod:`benchmark.learners.resnet50`): the network,
its training loop and prediction, image handling, class-balanced sampling, and reading an
``init`` encoder.

Imported by the learner's methods once a fit has started, so that the learner is listed and
its cached posteriors are read without PyTorch installed. The training and prediction functions
take the learner, in a session (see :class:`benchmark.learners._torch.TorchLearner`), for its
configuration, device, autocast and progress reports.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import WeightedRandomSampler
from torchvision.models import ResNet

from benchmark.dataroot import DataNotFoundError
from benchmark.learners._torch import TorchLearner
from benchmark.task import CleaningTask

#: Random resized crop: fraction of the image area kept, and aspect ratio range.
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
#: Largest rotation (degrees) and brightness/contrast change (relative) used for augmentation.
MAX_ROTATION = 10.0
MAX_JITTER = 0.2
FEATURES = 2048

# --------------------------------------------------------------------------- training


def train(
    learner: TorchLearner,
    images: torch.Tensor,
    labels: np.ndarray,
    seed: int,
    *,
    norm: tuple[torch.Tensor, torch.Tensor],
    encoder: Encoder | None,
) -> XRayResNet50:
    """A fresh :class:`XRayResNet50` (its backbone from ``encoder`` when given) trained on
    ``images`` (n, ch, S, S) uint8 on the device, normalised with ``norm``.

    Reports per epoch the mean training loss and the accuracy against ``labels`` on the
    augmented, class-balanced batches.
    """
    config, x = learner.config, images
    y = torch.as_tensor(labels, device=learner.device)
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model = XRayResNet50(learner.n_classes, config.dropout)
    if encoder is not None:
        model.backbone.load_state_dict(encoder.state, strict=False)
    model = model.to(learner.device).to(memory_format=torch.channels_last)
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
            with learner.autocast():
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.detach()
            correct += (logits.argmax(1) == yb).sum()
        learner.epoch_done(loss=float(total_loss) / steps, accuracy=int(correct) / drawn.numel())
    return model


@torch.no_grad()
def predict(
    learner: TorchLearner,
    model: XRayResNet50,
    images: torch.Tensor,
    seed: int,
    *,
    norm: tuple[torch.Tensor, torch.Tensor],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Posteriors (n, C) of the centre crops of ``images``, and (mc_samples, n, C) MC dropout
    ones (None when ``mc_samples`` is 0).

    BatchNorm uses its running statistics. The backbone runs once per image; each MC sample
    re-runs only the dropout and the final linear layer.
    """
    config = learner.config
    model.eval()
    torch.manual_seed(seed)
    probs, samples = [], []
    for chunk in images.split(2 * config.batch_size):
        xb = centre_crop(chunk, config.crop, norm)
        with learner.autocast():
            features = model.features(xb)
        features = features.float()
        probs.append(torch.softmax(model.backbone.fc(features), dim=1))
        if config.mc_samples:
            model.dropout.train()
            samples.append(
                torch.stack([torch.softmax(model.head(features), dim=1) for _ in range(config.mc_samples)])
            )
            model.dropout.eval()
    p = torch.cat(probs).cpu().numpy().astype(np.float32)
    if not config.mc_samples:
        return p, None
    return p, torch.cat(samples, dim=1).cpu().numpy().astype(np.float32)


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


# --------------------------------------------------------------------------- encoders


def torchvision_resnet50(n_classes: int) -> ResNet:
    """A freshly initialised torchvision ResNet-50 with ``n_classes`` outputs (no weights read)."""
    return torchvision.models.resnet50(weights=None, num_classes=n_classes)


@dataclass(frozen=True)
class Encoder:
    """Backbone tensors read from an ``init`` file, keyed as in torchvision's ResNet-50."""

    path: Path
    state: dict[str, torch.Tensor]
    sha256: str


def load_encoder(path: Path) -> Encoder:
    """Read and check the state dict of a torchvision ResNet-50 encoder (e.g. SimCLR or BYOL).

    Its tensors may carry a prefix (``encoder.``, ``module.``, ...), which is found and
    stripped; extra tensors (projection heads) and the final ``fc`` layer are dropped, but every
    backbone tensor must be present with the right shape: a half-loaded encoder is an error.

    Raises:
        DataNotFoundError: the file does not exist.
        ValueError: the file is not a state dict, or lacks backbone tensors, or has tensors of
            the wrong shape; the message names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"resnet50 init file {path} not found. It should hold the state dict of a torchvision "
            "ResNet-50 encoder, saved with torch.save(model.state_dict(), path); no weights are "
            "downloaded. Use init=None to train from scratch."
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"resnet50 init file {path} cannot be read as a torch state dict: {e}") from e
    state = _find_state_dict(loaded)
    if state is None:
        raise ValueError(
            f"resnet50 init file {path} holds no state dict (a mapping of names to tensors, "
            "possibly under 'state_dict' or 'model')"
        )
    reference = {k: v for k, v in torchvision_resnet50(1000).state_dict().items() if not k.startswith("fc.")}
    prefix = max(
        _prefixes(state), key=lambda p: sum(k[len(p) :] in reference for k in state if k.startswith(p))
    )
    backbone = {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and k[len(prefix) :] in reference
    }
    if not backbone:
        shown = ", ".join(list(state)[:5])
        raise ValueError(
            f"resnet50 init file {path} holds no torchvision ResNet-50 tensors (its first keys: {shown})"
        )
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(reference[k].shape)}"
        for k, v in backbone.items()
        if v.shape != reference[k].shape
    ]
    if wrong:
        raise ValueError(
            f"resnet50 init file {path} does not fit a ResNet-50 (prefix {prefix!r}): "
            f"{len(wrong)} tensors have the wrong shape, e.g. {'; '.join(wrong[:3])}"
        )
    missing = [k for k in reference if k not in backbone and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"resnet50 init file {path} lacks {len(missing)} of the ResNet-50 backbone tensors "
            f"(prefix {prefix!r}), e.g. {', '.join(missing[:3])}; refusing a half-initialised encoder"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Encoder(
        path=path,
        state={k: v.float() if v.is_floating_point() else v for k, v in backbone.items()},
        sha256=digest,
    )


def _find_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        for key in ("state_dict", "model", "model_state_dict", "encoder", "network"):
            found = _find_state_dict(obj.get(key))
            if found:
                return found
    return None


def _prefixes(state: dict[str, torch.Tensor]) -> set[str]:
    """Candidate key prefixes: whatever precedes a key ending in ``conv1.weight``, and none."""
    suffix = "conv1.weight"
    return {""} | {k[: -len(suffix)] for k in state if k.endswith(suffix)}
