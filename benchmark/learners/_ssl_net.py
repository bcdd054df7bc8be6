"""The torch code of the ``ssl`` learner (:mod:`benchmark.learners.ssl`): its encoders, BYOL
pretraining (resumable from checkpoints) and feature extraction.

BYOL (Grill et al., 2020): an online network (encoder, projector, predictor) learns to predict
a target network's projection of another augmented view of the same image; the target is an
exponential moving average of the online encoder and projector, its rate tau rising from
``tau`` to 1 on a cosine. There are no negative pairs, so small batches work. The loss of a
pair of views is 2 - 2 cos(prediction, target projection), symmetrised (range 0..4).

Imported by the learner's methods only when an encoder must be pretrained: features cached on
disk are read, and heads trained on them, without PyTorch.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.atomic import atomic_path
from benchmark.learners._smallcnn_net import SmallNet

if TYPE_CHECKING:
    from benchmark.learners._ssl_encoder import PretrainSettings
    from benchmark.learners.ssl import SelfSupervised

#: A checkpoint of the pretraining state is written when this many seconds have passed since
#: the last one (at the end of an epoch), so an interruption loses at most about this much.
CHECKPOINT_SECONDS = 120.0
#: The learning rate decays on a cosine to this fraction of its peak (as the reference).
MIN_LR_FRACTION = 0.1
#: Features are computed this many images at a time.
ENCODE_CHUNK = 500
#: Luma weights (ITU-R 601), for contrast, saturation and greyscale.
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class Pretrained:
    """What :func:`pretrain` returns."""

    encoder: nn.Module
    #: per-channel mean and std of the images in [0, 1], which the encoder's inputs are normalised with
    mean: torch.Tensor
    std: torch.Tensor
    #: mean BYOL loss of each epoch
    losses: list[float]
    #: the epoch it resumed from (0: a fresh start)
    resumed_from: int


# --------------------------------------------------------------------------- networks


class _Greyscale3(nn.Module):
    """Repeats a single-channel image to the three channels a torchvision ResNet expects."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def build_encoder(settings: PretrainSettings, in_channels: int) -> nn.Module:
    """The encoder: (B, ch, H, W) normalised images -> (B, D) features.

    cpu: the ``smallcnn`` network's stem and tail without its head (D = 4 x width); paper: a
    torchvision ResNet-50 with a 3x3 stride-1 first convolution and no max-pooling, for 32x32
    images (D = 2048).
    """
    if settings.scale == "cpu":
        net = SmallNet(in_channels, 1, settings.width, dropout=0.0)
        return nn.Sequential(net.stem, net.tail)
    from torchvision.models import resnet50

    resnet = resnet50(weights=None)
    resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    resnet.maxpool = nn.Identity()
    resnet.fc = nn.Identity()
    return nn.Sequential(_Greyscale3(), resnet) if in_channels == 1 else resnet


def _mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim_out)
    )


class Byol(nn.Module):
    """The online encoder, projector and predictor, and the target encoder and projector."""

    def __init__(self, encoder: nn.Module, feature_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = _mlp(feature_dim, hidden, out)
        self.predictor = _mlp(out, hidden, out)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self.target_parameters():
            p.requires_grad_(False)

    def online_parameters(self) -> list[torch.Tensor]:
        return [*self.encoder.parameters(), *self.projector.parameters(), *self.predictor.parameters()]

    def target_parameters(self) -> list[torch.Tensor]:
        return [*self.target_encoder.parameters(), *self.target_projector.parameters()]

    def loss(self, learner: SelfSupervised, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Mean symmetrised BYOL loss of two batches of views of the same images (float32)."""
        both = torch.cat([view1, view2])
        with learner.autocast():
            online = self.predictor(self.projector(self.encoder(both)))
            with torch.no_grad():
                target = self.target_projector(self.target_encoder(both))
        p1, p2 = F.normalize(online.float(), dim=1).chunk(2)
        t1, t2 = F.normalize(target.float(), dim=1).chunk(2)
        return 2.0 - (p1 * t2).sum(dim=1).mean() - (p2 * t1).sum(dim=1).mean()

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """target <- tau x target + (1 - tau) x online; BatchNorm statistics are copied."""
        online: list[torch.Tensor] = [*self.encoder.parameters(), *self.projector.parameters()]
        target = self.target_parameters()
        torch._foreach_mul_(target, tau)
        torch._foreach_add_(target, online, alpha=1.0 - tau)
        pairs = zip(
            [*self.target_encoder.buffers(), *self.target_projector.buffers()],
            [*self.encoder.buffers(), *self.projector.buffers()],
            strict=True,
        )
        for t, o in pairs:
            t.copy_(o)


# --------------------------------------------------------------------------- augmentation


def _grey(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def augment(x: torch.Tensor, gen: torch.Generator, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A random view of each image of ``x`` (B, ch, H, W) in [0, 1], normalised, channels_last.

    SimCLR/BYOL's CIFAR augmentations, batched: a random resized crop (area 20-100 %, aspect
    3/4-4/3) with a random horizontal flip as one affine resampling; on colour images, with
    probability 0.8 a colour jitter (brightness, contrast and saturation factors in 0.6-1.4,
    hue rotation of up to 0.1 turn), and with probability 0.2 greyscale. Every random draw
    comes from ``gen`` (on the CPU).
    """
    n, c, h, w = x.shape
    area = torch.empty(n).uniform_(0.2, 1.0, generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    crop_w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    crop_h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    centre = torch.rand(2, n, generator=gen) * 2 - 1
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = crop_w * flip
    theta[:, 0, 2] = centre[0] * (1 - crop_w)
    theta[:, 1, 1] = crop_h
    theta[:, 1, 2] = centre[1] * (1 - crop_h)
    grid = F.affine_grid(theta.to(x.device), [n, c, h, w], align_corners=False)
    out = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    if c == 3:
        jitter = torch.rand(n, generator=gen) < 0.8
        factors = torch.where(jitter, torch.empty(3, n).uniform_(0.6, 1.4, generator=gen), 1.0)
        hue = torch.where(jitter, torch.empty(n).uniform_(-0.1, 0.1, generator=gen), 0.0)
        greyscale = torch.rand(n, generator=gen) < 0.2
        b, k, s = (f.to(x.device).view(n, 1, 1, 1) for f in factors)
        out = (out * b).clamp_(0, 1)
        m = _grey(out).mean(dim=(2, 3), keepdim=True)
        out = ((out - m) * k + m).clamp_(0, 1)
        g = _grey(out)
        out = ((out - g) * s + g).clamp_(0, 1)
        out = _rotate_hue(out, hue.to(x.device)).clamp_(0, 1)
        out = torch.where(greyscale.to(x.device).view(n, 1, 1, 1), _grey(out).expand_as(out), out)
    return ((out - mean) / std).contiguous(memory_format=torch.channels_last)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotates each image's hue by ``turns`` (n,) of a full turn, in YIQ space."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device
    )
    angle = turns * 2 * math.pi
    rot = torch.zeros(turns.shape[0], 3, 3, device=x.device)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1] = rot[:, 2, 2] = angle.cos()
    rot[:, 1, 2] = -angle.sin()
    rot[:, 2, 1] = angle.sin()
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix.to(x.dtype), x)


# --------------------------------------------------------------------------- pretraining


def images_01(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, ch) uint8 -> (N, ch, H, W) float32 in [0, 1] on ``device``."""
    return torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def pretrain(
    learner: SelfSupervised,
    images: np.ndarray,
    settings: PretrainSettings,
    *,
    key: str,
    partial: Path,
    progress: bool,
) -> Pretrained:
    """BYOL on ``images`` (N, H, W, ch) uint8, in the learner's session (device, autocast).

    Seeded by ``settings.seed`` alone. Adam (weight decay on weights, not on BatchNorm and
    biases), the learning rate warmed up linearly then decayed on a cosine, per step. The whole
    state (networks, optimiser, epoch, random generator) is checkpointed atomically to
    ``partial`` every :data:`CHECKPOINT_SECONDS` and resumed from there, which gives the same
    encoder as an uninterrupted run. After each epoch ``learner.pretrain_epoch_done`` is called.
    """
    device = learner.device
    x = images_01(images, device)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    torch.manual_seed(settings.seed)
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    encoder = build_encoder(settings, x.shape[1])
    model = Byol(encoder, settings.feature_dim, settings.projector_hidden, settings.projector_dim)
    model = model.to(device).to(memory_format=torch.channels_last)
    online = model.online_parameters()
    optimiser = torch.optim.Adam(
        [
            {"params": [p for p in online if p.ndim > 1], "weight_decay": settings.weight_decay},
            {"params": [p for p in online if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=settings.lr,
    )
    batch = min(settings.batch_size, x.shape[0])
    steps = max(1, x.shape[0] // batch)
    total = settings.epochs * steps
    warmup = min(settings.warmup_epochs * steps, total // 10)
    losses = _resume(partial, key, model, optimiser, gen, device) or []
    resumed_from = len(losses)
    model.train()
    last_checkpoint = time.monotonic()
    bar = tqdm(
        total=settings.epochs, initial=len(losses), desc="ssl pretraining", unit="epoch", disable=not progress
    )
    with bar:
        for epoch in range(len(losses), settings.epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            total_loss = torch.zeros((), device=device)
            for i in range(steps):
                step = epoch * steps + i
                for group in optimiser.param_groups:
                    group["lr"] = settings.lr * _lr_factor(step, warmup, total)
                idx = order[i * batch : (i + 1) * batch].to(device)
                view1 = augment(x[idx], gen, mean, std)
                view2 = augment(x[idx], gen, mean, std)
                loss = model.loss(learner, view1, view2)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                model.update_target(
                    1.0 - (1.0 - settings.tau) * (math.cos(math.pi * (step + 1) / total) + 1) / 2
                )
                total_loss += loss.detach()  # summed on the device: no sync per step
            losses.append(float(total_loss) / steps)
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS and epoch + 1 < settings.epochs:
                _checkpoint(partial, key, model, optimiser, gen, losses)
                last_checkpoint = time.monotonic()
            learner.pretrain_epoch_done(epoch, losses[-1])
    return Pretrained(model.encoder, mean, std, losses, resumed_from=resumed_from)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine down to :data:`MIN_LR_FRACTION`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * (1 + math.cos(math.pi * progress)) / 2


def _checkpoint(
    path: Path,
    key: str,
    model: Byol,
    optimiser: torch.optim.Optimizer,
    gen: torch.Generator,
    losses: list[float],
) -> None:
    state = {
        "key": key,
        "losses": list(losses),
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "generator": gen.get_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(
    path: Path,
    key: str,
    model: Byol,
    optimiser: torch.optim.Optimizer,
    gen: torch.Generator,
    device: torch.device,
) -> list[float] | None:
    """Loads the checkpoint at ``path`` into the pretraining state; its per-epoch losses, or None
    (no checkpoint, or one that cannot be used: warned about and ignored)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("key") != key:
            raise ValueError(f"it belongs to encoder {state.get('key')}, not {key}")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        gen.set_state(state["generator"].cpu())
        return [float(v) for v in state["losses"]]
    except Exception as exc:  # a bad checkpoint costs a fresh start, never a wrong encoder
        warnings.warn(
            f"{path}: cannot resume pretraining from this checkpoint ({type(exc).__name__}: {exc}); "
            "starting afresh",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


# --------------------------------------------------------------------------- features


@torch.no_grad()
def encode(learner: SelfSupervised, result: Pretrained, images: np.ndarray) -> np.ndarray:
    """(N, D) float32 features of ``images`` (N, H, W, ch) uint8: the encoder in eval mode, the
    mean over each image and its mirror image."""
    encoder = result.encoder.eval()
    out = []
    for start in range(0, images.shape[0], ENCODE_CHUNK):
        x = images_01(images[start : start + ENCODE_CHUNK], learner.device)
        x = ((x - result.mean) / result.std).contiguous(memory_format=torch.channels_last)
        with learner.autocast():
            f = (encoder(x).float() + encoder(x.flip(-1)).float()) / 2
        out.append(f.cpu())
    return torch.cat(out).numpy().astype(np.float32)


def stored_encoder(
    learner: SelfSupervised,
    settings: PretrainSettings,
    in_channels: int,
    weights: dict[str, np.ndarray],
    mean: np.ndarray,
    std: np.ndarray,
) -> Pretrained:
    """The encoder of ``settings`` with the stored ``weights`` (see :func:`state_arrays`) and
    channel statistics, on the learner's device, ready for :func:`encode`."""
    encoder = build_encoder(settings, in_channels)
    state = {name: torch.as_tensor(np.asarray(w)) for name, w in weights.items()}
    current = encoder.state_dict()
    encoder.load_state_dict({k: v.to(current[k].dtype) for k, v in state.items()})
    encoder = encoder.to(learner.device).to(memory_format=torch.channels_last)
    shape = (1, -1, 1, 1)
    return Pretrained(
        encoder=encoder,
        mean=torch.as_tensor(mean, device=learner.device).reshape(shape),
        std=torch.as_tensor(std, device=learner.device).reshape(shape),
        losses=[],
        resumed_from=0,
    )


def state_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's state dict as float16 NumPy arrays (integer buffers kept as they are)."""
    arrays = {}
    for name, value in module.state_dict().items():
        v = value.detach().cpu()
        arrays[name] = v.numpy() if not v.is_floating_point() else v.to(torch.float16).numpy()
    return arrays
