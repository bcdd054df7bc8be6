"""The networks and image operations of the ``smallcnn`` family (``smallcnn``, ``coteaching``,
``elr``): :class:`SmallNet` (the CPU scale), :class:`CifarResNet` (the paper scale, ResNet-110),
batching, the two augmentations and the posterior passes with MC dropout.

The training recipes and loops that use them are in :mod:`benchmark.learners._recipe`. Both
modules are imported by the learners' methods once a fit has started, so that the learners are
listed and their cached posteriors are read without PyTorch installed. Functions that take the
learner use it, in a session (see :class:`benchmark.learners._torch.TorchLearner`), for its
configuration, device and autocast.

Every network here is split as ``head(tail(stem(x)))`` with all dropout in ``tail`` and
``head``: MC dropout re-runs only those, the stem runs once per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.learners._torch import TorchLearner

# --------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict(
    learner: TorchLearner,
    model: Network,
    images: torch.Tensor,
    seed: int,
    *,
    chunk: int,
    mc_samples: int,
    view: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Posteriors (n, C) with dropout off, and (mc_samples, n, C) with dropout on (None when
    ``mc_samples`` is 0).

    BatchNorm uses its running statistics. Without ``view`` each posterior is the mean over the
    image and its mirror image; with it, the network sees ``view(images)`` once (one augmented
    view per image, no mirror). The network runs on ``chunk`` images at a time; the stem runs
    once, only the tail and head are re-run per MC sample (dropout masks seeded by ``seed``).
    """
    x = images
    model.eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    torch.manual_seed(seed)
    probs, samples = [], []
    for idx in batches(x.shape[0], chunk, None):
        xb = x[idx.to(x.device)]
        views = (xb, xb.flip(-1)) if view is None else (view(xb),)
        with learner.autocast():
            stems = tuple(model.stem(v) for v in views)
        probs.append(_tail_posterior(learner, model, stems))
        if mc_samples > 0:
            for m in dropouts:
                m.train()
            samples.append(torch.stack([_tail_posterior(learner, model, stems) for _ in range(mc_samples)]))
            for m in dropouts:
                m.eval()
    p = torch.cat(probs).cpu().numpy().astype(np.float32)
    if not samples:
        return p, None
    return p, torch.cat(samples, dim=1).cpu().numpy().astype(np.float32)


def _tail_posterior(learner: TorchLearner, model: Network, stems: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(n, C) softmax of the tail and head, averaged over the views (the image and its mirror)."""
    with learner.autocast():
        logits = [model.head(model.tail(f)).float() for f in stems]
    if len(logits) == 1:
        return torch.softmax(logits[0], dim=1)
    return (torch.softmax(logits[0], dim=1) + torch.softmax(logits[1], dim=1)) / 2


# --------------------------------------------------------------------------- SmallNet


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _ScaledLinear(nn.Linear):
    """A linear layer whose output is multiplied by ``scale``.

    Max-pooled features are large at initialisation; shrinking the logits (as Myrtle's ResNet
    does) avoids a first epoch of huge losses and so gets more out of a short schedule.
    """

    def __init__(self, in_features: int, out_features: int, *, scale: float) -> None:
        super().__init__(in_features, out_features)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


class SmallNet(nn.Module):
    """A ResNet-9-like network (Myrtle's DAWNBench design), narrowed and pooled early for CPUs.

    (B, ch, H, W) -> ``stem`` -> (B, 4w, H/8, W/8) -> ``tail`` -> (B, 4w) -> ``head`` -> (B, C)
    logits. Dropout sits at the start of the tail and before the head, so MC dropout needs
    only the cheap tail to be re-run (the stem does about 85 % of the work).
    """

    def __init__(self, in_channels: int, n_classes: int, width: int, dropout: float) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            _conv_bn(in_channels, w),
            nn.MaxPool2d(2),
            _conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            _Residual(2 * w),
            _conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
        )
        self.tail = nn.Sequential(
            nn.Dropout(dropout),
            _Residual(4 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.head = _ScaledLinear(4 * w, n_classes, scale=0.125)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(self.stem(x)))


# --------------------------------------------------------------------------- CIFAR ResNet


class _Normalise(nn.Module):
    """(x - mean) / std per channel, with the dataset's statistics as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _GlobalMean(nn.Module):
    """(B, ch, H, W) -> (B, ch) global average pooling, as a mean (its backward is deterministic
    on CUDA, unlike adaptive pooling's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (1x1 conv-BN where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (basic blocks): depth 6n+2, three stages of n blocks with
    ``width``, 2x and 4x channels (ResNet-110: depth 110, width 16), global average pooling.

    It takes images in [0, 1] and normalises them itself with the dataset's per-channel
    ``mean`` and ``std``. ``dropout`` (before the linear layer, for MC dropout) is the only
    addition to the original design.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        depth: int,
        width: int,
        dropout: float,
        mean: list[float],
        std: list[float],
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 (8, 20, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        layers: list[nn.Module] = [
            _Normalise(mean, std),
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        c_in = width
        for stage in range(3):
            c_out = width * 2**stage
            for block in range(n):
                layers.append(_BasicBlock(c_in, c_out, 2 if stage > 0 and block == 0 else 1))
                c_in = c_out
        self.stem = nn.Sequential(*layers)
        self.tail = nn.Sequential(_GlobalMean(), nn.Dropout(dropout))
        self.head = nn.Linear(c_in, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(self.stem(x)))


#: A network of the family: ``head(tail(stem(x)))``.
Network = SmallNet | CifarResNet

# --------------------------------------------------------------------------- data


def normalise(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, ch) uint8 -> (N, ch, H, W) float32 on ``device``, normalised per channel over all
    images, channels_last."""
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def unit_images(images: np.ndarray, device: torch.device) -> tuple[torch.Tensor, list[float], list[float]]:
    """(N, H, W, ch) uint8 -> (N, ch, H, W) float32 in [0, 1] on ``device``, channels_last, and
    the per-channel mean and standard deviation over all images."""
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()
    return x.contiguous(memory_format=torch.channels_last), mean, std


def batches(
    n: int, batch_size: int, gen: torch.Generator | None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """CPU index tensors of the batches of ``n`` samples: shuffled by ``gen`` (in order when
    None); ``drop_last`` drops a last partial batch (unless it is the only one)."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crops of the zero-padded images (shifts of up to ``pad`` pixels) and random flips."""
    n, _, h, w = x.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    padded = F.pad(x, (pad, pad, pad, pad))
    out = torch.empty_like(x)
    # Group by shift: at most (2*pad+1)^2 slicing ops per batch instead of one per image.
    key = shifts[0] * (2 * pad + 1) + shifts[1]
    for k in torch.unique(key).tolist():
        rows = torch.nonzero(key == k).squeeze(1).to(x.device)
        dy, dx = divmod(k, 2 * pad + 1)
        out[rows] = padded[rows, :, dy : dy + h, dx : dx + w]
    flips = flips.to(x.device)
    return torch.where(flips[:, None, None, None], out.flip(-1), out).contiguous(
        memory_format=torch.channels_last
    )


def paper_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The paper's CIFAR augmentation, batched, on images in [0, 1]: colour jitter 0.5
    (brightness, contrast, saturation, in that order), a random affine map (rotation up to 15
    degrees, translation up to 5 %, shear up to 5 degrees), a random resized crop (area 90-100 %,
    aspect 3/4-4/3, clipped to the image) and a horizontal flip with probability 1/2.

    The geometric steps are composed into one affine map per image and applied with one
    bilinear ``grid_sample`` (black outside the image). Every random number comes from ``gen``
    (on the CPU), so a seed gives the same views on every device.
    """
    n, channels, h, w = x.shape
    u = torch.rand(10, n, generator=gen, dtype=torch.float64)
    bright, contrast, saturation = 0.5 + u[0], 0.5 + u[1], 0.5 + u[2]
    out = _jitter(x.float(), *(f.to(x.device, torch.float32) for f in (bright, contrast, saturation)))
    # Output pixel -> input pixel, in pixel units about the centre: flip, crop, inverse affine.
    angle = torch.deg2rad((2 * u[3] - 1) * 15.0)
    shear = torch.deg2rad((2 * u[4] - 1) * 5.0)
    tx, ty = (2 * u[5] - 1) * 0.05 * w, (2 * u[6] - 1) * 0.05 * h
    area = 0.9 + 0.1 * u[7]
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[8])
    sx, sy = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
    v = torch.rand(3, n, generator=gen, dtype=torch.float64)
    cx, cy = (v[0] - 0.5) * (1 - sx) * w, (v[1] - 0.5) * (1 - sy) * h
    flip = torch.where(v[2] < 0.5, -1.0, 1.0).to(torch.float64)
    one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    flip_m = _homogeneous(flip, zero, zero, zero, one, zero)
    crop_m = _homogeneous(sx, zero, cx, zero, sy, cy)
    untranslate = _homogeneous(one, zero, -tx, zero, one, -ty)
    unrotate = _homogeneous(
        torch.cos(angle), torch.sin(angle), zero, -torch.sin(angle), torch.cos(angle), zero
    )
    unshear = _homogeneous(one, -torch.tan(shear), zero, zero, one, zero)
    to_unit = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], dtype=torch.float64))
    to_pixel = torch.diag(torch.tensor([w / 2.0, h / 2.0, 1.0], dtype=torch.float64))
    theta = to_unit @ unshear @ unrotate @ untranslate @ crop_m @ flip_m @ to_pixel
    grid = F.affine_grid(theta[:, :2].to(x.device, torch.float32), [n, channels, h, w], align_corners=False)
    out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def _homogeneous(*entries: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) affine maps in homogeneous coordinates from the six (n,) entries of their first
    two rows, row by row."""
    a, b, c, d, e, f = entries
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack(row, 1) for row in ((a, b, c), (d, e, f), (zero, zero, one))], 1)


def _jitter(
    x: torch.Tensor, bright: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
) -> torch.Tensor:
    """Brightness, contrast and saturation factors (n,) applied as torchvision's ColorJitter does."""

    def blend(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        f = f.view(-1, 1, 1, 1)
        return (f * a + (1 - f) * b).clamp(0.0, 1.0)

    def grey(a: torch.Tensor) -> torch.Tensor:
        if a.shape[1] != 3:
            return a.mean(dim=1, keepdim=True)
        return (0.2989 * a[:, 0] + 0.587 * a[:, 1] + 0.114 * a[:, 2]).unsqueeze(1)

    x = blend(x, torch.zeros_like(x), bright)
    x = blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True), contrast)
    return blend(x, grey(x), saturation)
