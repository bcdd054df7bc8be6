"""The torch code of the ``smallcnn`` learner (:mod:`benchmark.learners.smallcnn`): its network,
training loop, prediction and image handling.

Imported by the learner's methods once a fit has started, so that the learner is listed and
its cached posteriors are read without PyTorch installed. Each function takes the learner, in
a session (see :class:`benchmark.learners._torch.TorchLearner`), for its configuration,
device, autocast and progress reports.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.learners._torch import TorchLearner

# --------------------------------------------------------------------------- training


def train(learner: TorchLearner, images: torch.Tensor, labels: np.ndarray, seed: int) -> SmallNet:
    """A fresh :class:`SmallNet` trained on normalised ``images`` (n, ch, H, W) and ``labels``.

    Augmentation: random crops of the image padded by 4 pixels, and horizontal flips. Reports
    per epoch the mean training loss and the accuracy on the augmented batches.
    """
    config = learner.config
    x = images
    y = torch.as_tensor(labels, device=learner.device)
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model = SmallNet(x.shape[1], learner.n_classes, config.width, config.dropout)
    model = model.to(learner.device).to(memory_format=torch.channels_last)
    steps_per_epoch = max(1, x.shape[0] // config.batch_size)
    # No weight decay on BatchNorm and bias parameters (the 1-d ones).
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=0.9,
        nesterov=True,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.25,
        anneal_strategy="linear",
        div_factor=10.0,
        final_div_factor=100.0,
    )
    model.train()
    for _ in range(config.epochs):
        correct = seen = 0
        total_loss = 0.0
        for idx in _batches(x.shape[0], config.batch_size, gen, drop_last=True):
            xb = augment(x[idx.to(x.device)], gen)
            yb = y[idx.to(y.device)]
            with learner.autocast():
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * yb.shape[0]
            correct += int((logits.argmax(1) == yb).sum())
            seen += yb.shape[0]
        learner.epoch_done(loss=total_loss / max(seen, 1), accuracy=correct / max(seen, 1))
    return model


@torch.no_grad()
def predict(
    learner: TorchLearner, model: SmallNet, images: torch.Tensor, seed: int, *, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors (n, C) with dropout off, and (mc_samples, n, C) with dropout on.

    BatchNorm uses its running statistics; each posterior is the mean over the image and its
    mirror image. The network runs on ``chunk`` images at a time; the stem runs once, only the
    tail and head are re-run per MC sample.
    """
    x = images
    model.eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    torch.manual_seed(seed)
    probs, samples = [], []
    for idx in _batches(x.shape[0], chunk, None):
        xb = x[idx.to(x.device)]
        with learner.autocast():
            stems = (model.stem(xb), model.stem(xb.flip(-1)))
        probs.append(_tail_posterior(learner, model, stems))
        for m in dropouts:
            m.train()
        samples.append(
            torch.stack([_tail_posterior(learner, model, stems) for _ in range(learner.config.mc_samples)])
        )
        for m in dropouts:
            m.eval()
    p = torch.cat(probs)
    stochastic = torch.cat(samples, dim=1)
    return p.cpu().numpy().astype(np.float32), stochastic.cpu().numpy().astype(np.float32)


def _tail_posterior(
    learner: TorchLearner, model: SmallNet, stems: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """(n, C) softmax of the tail and head, averaged over the image and its mirror image."""
    with learner.autocast():
        logits = [model.head(model.tail(f)).float() for f in stems]
    return (torch.softmax(logits[0], dim=1) + torch.softmax(logits[1], dim=1)) / 2


# --------------------------------------------------------------------------- the network


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


# --------------------------------------------------------------------------- data


def normalise(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, ch) uint8 -> (N, ch, H, W) float32 on ``device``, normalised per channel over all
    images, channels_last."""
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def _batches(
    n: int, batch_size: int, gen: torch.Generator | None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
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
