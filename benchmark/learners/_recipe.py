"""The two training scales of the ``smallcnn`` family (``smallcnn``, ``coteaching``, ``elr``) and
the training loop they share.

A :class:`Recipe` says how a network is trained: which network, how long, with which optimiser
schedule and augmentation, and how an active run fine-tunes it. A learner's ``scale`` picks one:

- ``cpu``: :func:`cpu_recipe` of the learner's Config: :class:`SmallNet` (a ResNet-9-like
  network of the Config's ``width``), SGD with Nesterov momentum under a one-cycle schedule
  peaking at ``lr``, random crops (4 pixels of zero padding) and horizontal flips, on images
  normalised per channel over the dataset. Sized for a few CPU cores.
- ``paper``: :data:`PAPER`, the recipe of the paper's reference code for its CIFAR models:
  ResNet-110 (CIFAR-style, basic blocks, 16 base channels), SGD with Nesterov momentum 0.9, lr
  0.1, weight decay 1e-4 on every parameter, batch 256, 160 epochs, lr x0.1 at epochs 80 and
  120; colour jitter 0.5, random affine (15 degrees, 5 % translation, shear 5), random
  resized crop (area 0.9-1) and horizontal flips (see
  :func:`~benchmark.learners._smallcnn_net.paper_augment`); 25 warm-up epochs for
  co-teaching; fine-tuning 20 epochs at lr 0.0025. The Config's CPU knobs (``epochs``,
  ``width``, ``lr``, ``batch_size``, ``weight_decay``, ``dropout``, ``label_smoothing``,
  ``warmup_epochs``, ``finetune_epochs``, ``finetune_lr``) are then ignored. The network
  normalises its [0, 1] input itself and has a dropout of 0.1 before its linear layer, used
  only for MC dropout samples. Meant for a GPU; it runs unchanged on the CPU, slowly.

Both drop an epoch's last partial batch. Everything runs on the learner's device under its bf16
autocast; random numbers come from CPU generators and the global torch seed, so the same seed
gives the same posteriors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.learners._smallcnn_net import (
    CifarResNet,
    Network,
    SmallNet,
    batches,
    crop_flip,
    normalise,
    paper_augment,
    predict,
    unit_images,
)
from benchmark.learners._torch import TorchLearner
from benchmark.posteriors.crossfit import derived_seed

#: ``loss(logits (B, C) float32, labels (B,), idx (B,))`` of a batch; ``idx`` are the batch's
#: rows in the training images, on the device.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Recipe:
    """How a network of the family is trained and fine-tuned."""

    #: "smallnet" (normalised images) or "resnet" (a CIFAR ResNet on [0, 1] images).
    network: str
    #: SmallNet's width, or the ResNet's base channels.
    width: int
    #: The ResNet's depth, 6n+2 (110 for ResNet-110); unused by SmallNet.
    depth: int
    #: Dropout rate(s) of the network (MC dropout).
    dropout: float
    epochs: int
    batch_size: int
    #: The peak ("onecycle") or initial ("multistep") learning rate of SGD.
    lr: float
    #: "onecycle" (linear warm-up over 25 % of the steps, then down) or "multistep".
    schedule: str
    #: Epochs after which "multistep" multiplies the learning rate by ``gamma``.
    milestones: tuple[int, ...]
    weight_decay: float
    #: Whether weight decay applies to BatchNorm and bias parameters too.
    decay_norm_and_bias: bool
    #: "crop_flip" or "paper" (which needs the ResNet's [0, 1] images).
    augment: str
    label_smoothing: float
    #: Co-teaching: epochs at the start with no sample dropped.
    warmup_epochs: int
    finetune_epochs: int
    finetune_lr: float
    gamma: float = 0.1
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.network not in ("smallnet", "resnet"):
            raise ValueError(f"network={self.network!r} must be smallnet or resnet")
        if self.augment not in ("crop_flip", "paper"):
            raise ValueError(f"augment={self.augment!r} must be crop_flip or paper")
        if self.augment == "paper" and self.network != "resnet":
            raise ValueError("the paper augmentation works on the ResNet's [0, 1] images")
        if self.schedule not in ("onecycle", "multistep"):
            raise ValueError(f"schedule={self.schedule!r} must be onecycle or multistep")


#: The paper's recipe (its reference code's CIFAR-10H models).
PAPER = Recipe(
    network="resnet",
    width=16,
    depth=110,
    dropout=0.1,
    epochs=160,
    batch_size=256,
    lr=0.1,
    schedule="multistep",
    milestones=(80, 120),
    weight_decay=1e-4,
    decay_norm_and_bias=True,
    augment="paper",
    label_smoothing=0.0,
    warmup_epochs=25,
    finetune_epochs=20,
    finetune_lr=0.0025,
)


def cpu_recipe(config: Any) -> Recipe:
    """The CPU recipe of a learner's Config: SmallNet and the Config's knobs."""
    return Recipe(
        network="smallnet",
        width=config.width,
        depth=0,
        dropout=config.dropout,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        schedule="onecycle",
        milestones=(),
        weight_decay=config.weight_decay,
        decay_norm_and_bias=False,
        augment="crop_flip",
        label_smoothing=config.label_smoothing,
        warmup_epochs=getattr(config, "warmup_epochs", 0),
        finetune_epochs=config.finetune_epochs,
        finetune_lr=config.finetune_lr,
    )


def recipe_for(config: Any) -> Recipe:
    """The recipe of a Config's ``scale``: :data:`PAPER` or :func:`cpu_recipe`."""
    return PAPER if config.scale == "paper" else cpu_recipe(config)


# --------------------------------------------------------------------------- building blocks


def make_network(
    recipe: Recipe, in_channels: int, n_classes: int, stats: tuple[list[float], list[float]] | None = None
) -> Network:
    """A fresh network of ``recipe`` (initialised from the global torch seed), on the CPU.
    ``stats`` (per-channel mean and std of the images) is needed by the ResNet."""
    if recipe.network == "smallnet":
        return SmallNet(in_channels, n_classes, recipe.width, recipe.dropout)
    if stats is None:
        raise ValueError("the ResNet needs the images' per-channel mean and std")
    mean, std = stats
    return CifarResNet(
        in_channels,
        n_classes,
        depth=recipe.depth,
        width=recipe.width,
        dropout=recipe.dropout,
        mean=mean,
        std=std,
    )


def make_optimizer_and_schedule(
    recipe: Recipe, model: nn.Module, steps_per_epoch: int, *, finetune: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum and its learning-rate schedule, stepped once per batch.

    ``finetune``: a constant ``recipe.finetune_lr``, for ``recipe.finetune_epochs``.
    """
    decay = [q for q in model.parameters() if q.ndim > 1]
    others = [q for q in model.parameters() if q.ndim <= 1]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": others, "weight_decay": recipe.weight_decay if recipe.decay_norm_and_bias else 0.0},
        ],
        lr=recipe.finetune_lr if finetune else recipe.lr,
        momentum=recipe.momentum,
        nesterov=True,
    )
    schedule: torch.optim.lr_scheduler.LRScheduler
    if finetune:
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    elif recipe.schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=recipe.lr,
            total_steps=recipe.epochs * steps_per_epoch,
            pct_start=0.25,
            anneal_strategy="linear",
            div_factor=10.0,
            final_div_factor=100.0,
        )
    else:
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[m * steps_per_epoch for m in recipe.milestones], gamma=recipe.gamma
        )
    return optimizer, schedule


def augment(recipe: Recipe, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random training view of each image of the batch ``x``, drawn from ``gen``."""
    return paper_augment(x, gen) if recipe.augment == "paper" else crop_flip(x, gen)


def steps_per_epoch(n: int, recipe: Recipe) -> int:
    """Batches per epoch of ``n`` training samples (a last partial batch is dropped)."""
    return max(1, n // recipe.batch_size)


# --------------------------------------------------------------------------- learner glue


def prepare_images(learner: TorchLearner, images: np.ndarray) -> torch.Tensor:
    """(N, ch, H, W) float32 on the device, channels_last: normalised per channel for SmallNet;
    in [0, 1] for the ResNet, whose per-channel statistics go to ``learner.image_stats``."""
    if recipe_for(learner.config).network == "smallnet":
        return normalise(images, learner.device)
    x, mean, std = unit_images(images, learner.device)
    learner.image_stats = (mean, std)  # type: ignore[attr-defined]
    return x


def new_network(learner: TorchLearner, recipe: Recipe, in_channels: int) -> Network:
    """:func:`make_network` for the learner's task, on its device, channels_last."""
    model = make_network(recipe, in_channels, learner.n_classes, getattr(learner, "image_stats", None))
    return model.to(learner.device).to(memory_format=torch.channels_last)


def cross_entropy(recipe: Recipe) -> LossFn:
    """The plain training loss: cross-entropy with the recipe's label smoothing."""

    def loss(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)

    return loss


def train_network(
    learner: TorchLearner,
    images: torch.Tensor,
    labels: np.ndarray,
    seed: int,
    loss: Callable[[Recipe, int], LossFn] | None = None,
) -> Network:
    """A fresh network of the learner's recipe trained on ``images`` and ``labels``.

    ``loss(recipe, n)`` makes the loss function (default :func:`cross_entropy`). Reports per
    epoch the mean training loss and the accuracy on the augmented batches.
    """
    recipe = recipe_for(learner.config)
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model = new_network(learner, recipe, images.shape[1])
    optimizer, schedule = make_optimizer_and_schedule(recipe, model, steps_per_epoch(images.shape[0], recipe))
    loss_fn = cross_entropy(recipe) if loss is None else loss(recipe, images.shape[0])
    run_epochs(learner, recipe, model, images, labels, gen, optimizer, schedule, recipe.epochs, loss_fn)
    return model


def finetune_network(
    learner: TorchLearner,
    model: Network,
    images: torch.Tensor,
    labels: np.ndarray,
    seed: int,
    loss_fn: LossFn | None = None,
) -> Network:
    """``model`` trained on further for ``finetune_epochs`` at the constant ``finetune_lr`` (a
    fresh optimiser), with the same augmentation and loss (default :func:`cross_entropy`)."""
    recipe = recipe_for(learner.config)
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    optimizer, schedule = make_optimizer_and_schedule(
        recipe, model, steps_per_epoch(images.shape[0], recipe), finetune=True
    )
    loss_fn = cross_entropy(recipe) if loss_fn is None else loss_fn
    run_epochs(
        learner, recipe, model, images, labels, gen, optimizer, schedule, recipe.finetune_epochs, loss_fn
    )
    return model


def run_epochs(
    learner: TorchLearner,
    recipe: Recipe,
    model: Network,
    images: torch.Tensor,
    labels: np.ndarray,
    gen: torch.Generator,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    loss_fn: LossFn,
) -> None:
    """``epochs`` epochs of minibatch SGD on augmented batches; ``learner.epoch_done`` after each."""
    x = images
    y = torch.as_tensor(labels, device=learner.device)
    model.train()
    for _ in range(epochs):
        # Summed on the device, read once per epoch: no synchronisation per batch on a GPU.
        total_loss = torch.zeros((), dtype=torch.float64, device=learner.device)
        correct = torch.zeros((), dtype=torch.int64, device=learner.device)
        seen = 0
        for idx in batches(x.shape[0], recipe.batch_size, gen, drop_last=True):
            rows = idx.to(x.device)
            xb = augment(recipe, x[rows], gen)
            yb = y[rows]
            with learner.autocast():
                logits = model(xb)
            loss = loss_fn(logits.float(), yb, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.detach().double() * yb.shape[0]
            correct += (logits.argmax(1) == yb).sum()
            seen += yb.shape[0]
        learner.epoch_done(loss=float(total_loss) / max(seen, 1), accuracy=int(correct) / max(seen, 1))


def posteriors(
    learner: TorchLearner,
    model: Network,
    images: torch.Tensor,
    seed: int,
    *,
    chunk: int,
    mc_samples: int,
    insample: bool,
    views: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Posteriors of ``images`` (see :func:`benchmark.learners._smallcnn_net.predict`), ``chunk``
    images at a time: out of sample, the mean over each image and its mirror; in sample
    (``insample``), one random training view of each image, drawn from a generator seeded by
    ``seed`` (view k from ``derived_seed(seed, 1 + k)``).

    With ``views`` > 1 (in sample only) the posterior is the mean over that many independent
    training views of each image; the first is the one-view posterior, and the MC dropout
    samples stay on that first view (``views`` >= 1 is the learner Config's own check).
    """
    if not insample:
        return predict(learner, model, images, seed, chunk=chunk, mc_samples=mc_samples, view=None)
    probs, samples = predict(
        learner, model, images, seed, chunk=chunk, mc_samples=mc_samples, view=training_view(learner, seed)
    )
    if views == 1:
        return probs, samples
    total = probs.astype(np.float64)
    for k in range(1, views):
        more, _ = predict(
            learner, model, images, seed, chunk=chunk, mc_samples=0, view=training_view(learner, seed, k)
        )
        total += more
    mean = total / views
    return (mean / mean.sum(axis=1, keepdims=True)).astype(np.float32), samples


def training_view(learner: TorchLearner, seed: int, k: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function giving random training-augmented view ``k`` of each image of a batch; two
    made with the same seed and ``k`` give the same views of the same batches."""
    recipe = recipe_for(learner.config)
    gen = torch.Generator(device="cpu").manual_seed(derived_seed(seed, 1 + k))
    return lambda xb: augment(recipe, xb, gen)
