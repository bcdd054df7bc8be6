"""A small CNN trained on the noisy labels, cross-fitted so that every posterior is out-of-sample.

A network that has seen a sample's noisy label tends to memorise it, and then its posterior
agrees with the noise: useless for ranking. So the samples are split into ``folds`` stratified
folds, one model is trained per fold on the *other* folds, and each sample's posterior comes
from the model that never saw it (k-fold cross-fitting, as cleanlab's confident learning does).

Stochastic posteriors (T x N x C) come from MC dropout: dropout sits only in the last,
low-resolution block and before the classifier, so the expensive stem runs once per image and
only the cheap tail is re-run for each of the ``mc_samples`` passes.

The defaults are sized for a 2-core CPU: about 70 s per fit at N=5000 (32x32 images), where a
CIFAR-10H posterior reaches ~62 % accuracy against the true labels. Training uses bf16 autocast
where the hardware supports it (CUDA, or CPUs with AVX512-BF16), every CPU core, and
deterministic algorithms; the same seed gives bitwise identical posteriors on the same machine
(and the same thread count).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.plugins import Learner, Posteriors
from benchmark.task import CleaningTask


class SmallCNN(Learner):
    name = "smallcnn"
    description = "Small ResNet-style CNN on the noisy labels, k-fold cross-fitted, MC dropout."
    version = "1"
    parameters = {
        "epochs": [24],
        "width": [32],
        "folds": [2],
        "mc_samples": [10],
        "batch_size": [64],
        "lr": [0.05],
        "weight_decay": [5e-4],
        "dropout": [0.1],
        "label_smoothing": [0.2],
        "bf16": [True],
    }

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        if task.load_images is None:
            raise ValueError(f"{task.name}: the smallcnn learner needs images; the task has none")
        p = self.params
        start = time.perf_counter()
        images = np.asarray(task.load_images())
        if images.ndim == 3:  # (N, H, W) greyscale
            images = images[..., None]
        if images.ndim != 4 or images.shape[0] != task.n_samples:
            raise ValueError(
                f"{task.name}: expected images of shape ({task.n_samples}, H, W, channels), "
                f"got {images.shape}"
            )
        labels = task.noisy_labels
        fold_of = fold_assignment(labels, int(p["folds"]), seed=seed)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        config = TrainConfig.from_params(p, n_classes=task.n_classes, device=device)

        with _torch_settings(device):
            torch.manual_seed(seed)
            x = _to_tensor(images, device)
            y = torch.as_tensor(labels, device=device)
            bar = tqdm(
                total=config.epochs * int(p["folds"]),
                desc=f"smallcnn {task.name}",
                unit="epoch",
                disable=not progress,
                leave=False,
            )
            train_acc: list[float] = []

            def fit_and_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                fold_seed = _derived_seed(seed, len(train_acc))
                model, history = train_model(x[train_idx], y[train_idx], config, seed=fold_seed, bar=bar)
                train_acc.append(history[-1]["accuracy"])
                return predict(model, x[test_idx], config, seed=fold_seed)

            with bar:
                probs, stochastic = cross_fit(fold_of, fit_and_predict)

        predicted = probs.argmax(axis=1)
        info: dict[str, Any] = {
            # on the augmented batches of the last epoch, averaged over the fold models
            "train_accuracy_noisy": float(np.mean(train_acc)),
            # out-of-fold: each sample predicted by the model that did not see it
            "holdout_accuracy_noisy": float(np.mean(predicted == labels)),
            "accuracy_true": float(np.mean(predicted == task.true_labels)),
            "folds": int(p["folds"]),
            "epochs": config.epochs,
            "seconds": round(time.perf_counter() - start, 2),
            "device": str(device),
            "bf16": config.bf16,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
        }
        return Posteriors(probs=probs, stochastic=stochastic, info=info)


# --------------------------------------------------------------------------- cross-fitting


def fold_assignment(labels: np.ndarray, folds: int, *, seed: int) -> np.ndarray:
    """(N,) int64 fold index in 0..folds-1 of each sample, stratified by ``labels``.

    Samples are shuffled with ``seed`` and dealt out class by class, so every fold holds each
    class in proportion (fold sizes differ by at most one).
    """
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds must be >= 2 for out-of-sample posteriors, got {folds}")
    if labels.shape[0] < folds:
        raise ValueError(f"cannot split {labels.shape[0]} samples into {folds} folds")
    order = np.random.default_rng(seed).permutation(labels.shape[0])
    order = order[np.argsort(labels[order], kind="stable")]
    fold_of = np.empty(labels.shape[0], dtype=np.int64)
    fold_of[order] = np.arange(labels.shape[0]) % folds
    return fold_of


def cross_fit(
    fold_of: np.ndarray,
    fit_and_predict: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample predictions: fold k is predicted by a model fitted on every other fold.

    Args:
        fold_of: (N,) fold index of each sample (see :func:`fold_assignment`).
        fit_and_predict: ``(train_idx, test_idx) -> (probs (n, C), stochastic (T, n, C))``
            fits on ``train_idx`` and predicts ``test_idx``; called once per fold.

    Returns:
        probs (N, C) and stochastic (T, N, C), float32, in sample order.
    """
    probs: np.ndarray | None = None
    stochastic: np.ndarray | None = None
    for k in np.unique(fold_of):
        test_idx = np.flatnonzero(fold_of == k)
        train_idx = np.flatnonzero(fold_of != k)
        p, s = fit_and_predict(train_idx, test_idx)
        if probs is None or stochastic is None:
            probs = np.zeros((fold_of.shape[0], p.shape[1]), dtype=np.float32)
            stochastic = np.zeros((s.shape[0], fold_of.shape[0], p.shape[1]), dtype=np.float32)
        probs[test_idx] = p
        stochastic[:, test_idx] = s
    assert probs is not None and stochastic is not None
    return probs, stochastic


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


# --------------------------------------------------------------------------- training


class TrainConfig:
    def __init__(
        self,
        *,
        n_classes: int,
        device: torch.device,
        epochs: int,
        width: int,
        mc_samples: int,
        batch_size: int,
        lr: float,
        weight_decay: float,
        dropout: float,
        label_smoothing: float,
        bf16: bool,
    ) -> None:
        self.n_classes = n_classes
        self.device = device
        self.epochs = epochs
        self.width = width
        self.mc_samples = mc_samples
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.bf16 = bf16 and _bf16_supported(device)

    @classmethod
    def from_params(cls, p: dict[str, Any], *, n_classes: int, device: torch.device) -> TrainConfig:
        return cls(
            n_classes=n_classes,
            device=device,
            epochs=int(p["epochs"]),
            width=int(p["width"]),
            mc_samples=int(p["mc_samples"]),
            batch_size=int(p["batch_size"]),
            lr=float(p["lr"]),
            weight_decay=float(p["weight_decay"]),
            dropout=float(p["dropout"]),
            label_smoothing=float(p["label_smoothing"]),
            bf16=bool(p["bf16"]),
        )

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def train_model(
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    seed: int,
    bar: Any = None,
) -> tuple[SmallNet, list[dict[str, float]]]:
    """Train a fresh :class:`SmallNet` on normalised images ``x`` (n, ch, H, W) and labels ``y``.

    Augmentation: random crops of the image padded by 4 pixels, and horizontal flips.

    Returns:
        The model, and per epoch the mean training loss and the accuracy against ``y`` on the
        augmented batches.
    """
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model = SmallNet(x.shape[1], config.n_classes, config.width, config.dropout)
    model = model.to(config.device).to(memory_format=torch.channels_last)
    steps_per_epoch = max(1, x.shape[0] // config.batch_size)
    # No weight decay on BatchNorm and bias parameters (the 1-d ones).
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
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
    history: list[dict[str, float]] = []
    model.train()
    for _ in range(config.epochs):
        correct = seen = 0
        total_loss = 0.0
        for idx in _batches(x.shape[0], config.batch_size, gen, drop_last=True):
            xb = _augment(x[idx.to(x.device)], gen)
            yb = y[idx.to(y.device)]
            with config.autocast():
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * yb.shape[0]
            correct += int((logits.argmax(1) == yb).sum())
            seen += yb.shape[0]
        history.append({"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['accuracy']:.3f}")
    return model, history


@torch.no_grad()
def predict(
    model: SmallNet, x: torch.Tensor, config: TrainConfig, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors (n, C) with dropout off, and (mc_samples, n, C) with dropout on.

    BatchNorm uses its running statistics; each posterior is the mean over the image and its
    mirror image. The stem runs once; only the tail and head are re-run per MC sample.
    """
    model.eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    torch.manual_seed(seed)
    probs, samples = [], []
    for idx in _batches(x.shape[0], 500, None):
        xb = x[idx.to(x.device)]
        with config.autocast():
            stems = (model.stem(xb), model.stem(xb.flip(-1)))
        probs.append(_tail_posterior(model, stems, config))
        for m in dropouts:
            m.train()
        samples.append(torch.stack([_tail_posterior(model, stems, config) for _ in range(config.mc_samples)]))
        for m in dropouts:
            m.eval()
    p = torch.cat(probs)
    stochastic = torch.cat(samples, dim=1)
    return p.cpu().numpy().astype(np.float32), stochastic.cpu().numpy().astype(np.float32)


def _tail_posterior(
    model: SmallNet, stems: tuple[torch.Tensor, torch.Tensor], config: TrainConfig
) -> torch.Tensor:
    """(n, C) softmax of the tail and head, averaged over the image and its mirror image."""
    with config.autocast():
        logits = [model.head(model.tail(f)).float() for f in stems]
    return (torch.softmax(logits[0], dim=1) + torch.softmax(logits[1], dim=1)) / 2


def _batches(
    n: int, batch_size: int, gen: torch.Generator | None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
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


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, ch) uint8 -> (N, ch, H, W) float32, normalised per channel, channels_last."""
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _derived_seed(seed: int, fold: int) -> int:
    """An independent 63-bit seed for fold ``fold`` of a fit with ``seed``."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(2, np.uint64)[0] >> 1)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def _torch_settings(device: torch.device) -> Iterator[None]:
    """Every core and deterministic algorithms for the duration of a fit, then restore.

    ``OMP_NUM_THREADS``, when set, wins: on a CPU shared with other busy processes, one thread
    per core makes OpenMP's barriers spin and a fit can run ten times slower.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(_cpu_count())
    # On CUDA some kernels have no deterministic version; warn rather than fail there.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
