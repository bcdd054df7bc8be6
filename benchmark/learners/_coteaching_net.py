"""The torch code of the ``coteaching`` learner (:mod:`benchmark.learners.coteaching`): the
small-loss exchange and the training loop of the pair of networks.

Co-teaching (Han et al., 2018): two networks see the same augmented batches; each computes the
per-sample cross-entropy, and each is updated only on the ``1 - r`` fraction of the batch with
the smallest loss under the *other* network, so that each filters the likely noisy labels for
its peer. ``r`` is 0 during the warm-up epochs, then the forget rate. The networks and their
training recipe are those of ``smallcnn`` (:mod:`benchmark.learners._recipe`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.learners._recipe import (
    Recipe,
    augment,
    make_optimizer_and_schedule,
    new_network,
    posteriors,
    recipe_for,
    steps_per_epoch,
)
from benchmark.learners._smallcnn_net import Network, batches
from benchmark.learners._torch import TorchLearner
from benchmark.posteriors.crossfit import derived_seed

Pair = tuple[Network, Network]
Step = tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]


def small_loss_exchange(
    loss_a: torch.Tensor, loss_b: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows network a learns from, rows network b learns from): the ``keep`` rows of the batch
    with the smallest loss under the *other* network, smallest first.

    ``loss_a``, ``loss_b``: (B,) per-sample losses under networks a and b. Ties go to the
    earlier row (a stable sort).
    """
    for_a = torch.argsort(loss_b, stable=True)[:keep]
    for_b = torch.argsort(loss_a, stable=True)[:keep]
    return for_a, for_b


def kept(batch: int, rate: float) -> int:
    """Rows of a batch of ``batch`` kept at forget rate ``rate``: int((1 - rate) * batch), at least 1."""
    return max(1, int((1.0 - rate) * batch))


def forget_rate_at(epoch: int, warmup_epochs: int, rate: float) -> float:
    """The forget rate of ``epoch`` (from 0): 0 during the warm-up, then ``rate``."""
    return 0.0 if epoch < warmup_epochs else rate


def train_pair(
    learner: TorchLearner, images: torch.Tensor, labels: np.ndarray, seed: int, rate: float
) -> Pair:
    """Two fresh networks of the learner's recipe co-trained on ``images`` and ``labels``.

    Network k is initialised from ``derived_seed(seed, k)``; batches, augmentation and dropout
    come from ``seed``. The forget rate is 0 for the recipe's warm-up epochs, then ``rate``.
    """
    recipe = recipe_for(learner.config)
    nets = []
    for k in range(2):
        torch.manual_seed(derived_seed(seed, k))
        nets.append(new_network(learner, recipe, images.shape[1]))
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    steps = [
        make_optimizer_and_schedule(recipe, net, steps_per_epoch(images.shape[0], recipe)) for net in nets
    ]
    pair = (nets[0], nets[1])
    for epoch in range(recipe.epochs):
        _epoch(
            learner,
            recipe,
            pair,
            steps,
            images,
            labels,
            gen,
            forget_rate_at(epoch, recipe.warmup_epochs, rate),
        )
    return pair


def finetune_pair(
    learner: TorchLearner, pair: Pair, images: torch.Tensor, labels: np.ndarray, seed: int, rate: float
) -> Pair:
    """``pair`` co-trained on for the recipe's fine-tuning epochs at its constant fine-tuning
    learning rate (fresh optimisers), exchanging small-loss samples at ``rate`` throughout."""
    recipe = recipe_for(learner.config)
    torch.manual_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_steps = steps_per_epoch(images.shape[0], recipe)
    steps = [make_optimizer_and_schedule(recipe, net, n_steps, finetune=True) for net in pair]
    for _ in range(recipe.finetune_epochs):
        _epoch(learner, recipe, pair, steps, images, labels, gen, rate)
    return pair


def _epoch(
    learner: TorchLearner,
    recipe: Recipe,
    pair: Pair,
    steps: list[Step],
    images: torch.Tensor,
    labels: np.ndarray,
    gen: torch.Generator,
    rate: float,
) -> None:
    """One epoch of the pair at forget rate ``rate``; ``learner.epoch_done`` with the mean of the
    two networks' losses (on their kept rows) and accuracies (on whole batches)."""
    x = images
    y = torch.as_tensor(labels, device=learner.device)
    for net in pair:
        net.train()
    total_loss = torch.zeros((), dtype=torch.float64, device=learner.device)
    correct = torch.zeros((), dtype=torch.int64, device=learner.device)
    seen = 0
    for idx in batches(x.shape[0], recipe.batch_size, gen, drop_last=True):
        rows = idx.to(x.device)
        xb = augment(recipe, x[rows], gen)
        yb = y[rows]
        with learner.autocast():
            logits = [net(xb).float() for net in pair]
        per_sample = [F.cross_entropy(z.detach(), yb, reduction="none") for z in logits]
        chosen = small_loss_exchange(per_sample[0], per_sample[1], kept(yb.shape[0], rate))
        losses = [
            F.cross_entropy(z[c], yb[c], label_smoothing=recipe.label_smoothing)
            for z, c in zip(logits, chosen, strict=True)
        ]
        for optimizer, _ in steps:
            optimizer.zero_grad(set_to_none=True)
        (losses[0] + losses[1]).backward()
        for optimizer, schedule in steps:
            optimizer.step()
            schedule.step()
        total_loss += (losses[0].detach() + losses[1].detach()).double() / 2 * yb.shape[0]
        correct += (logits[0].argmax(1) == yb).sum() + (logits[1].argmax(1) == yb).sum()
        seen += yb.shape[0]
    learner.epoch_done(loss=float(total_loss) / max(seen, 1), accuracy=int(correct) / max(2 * seen, 1))


def predict_pair(
    learner: TorchLearner, pair: Pair, images: torch.Tensor, seed: int, *, chunk: int, insample: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the two networks' posteriors (n, C), and both (2, n, C). In sample, both
    networks see the same random training views of each image (the Config's ``views``)."""
    views = learner.config.views
    each = [
        posteriors(learner, net, images, seed, chunk=chunk, mc_samples=0, insample=insample, views=views)[0]
        for net in pair
    ]
    stochastic = np.stack(each).astype(np.float32)
    return stochastic.mean(axis=0, dtype=np.float32), stochastic
