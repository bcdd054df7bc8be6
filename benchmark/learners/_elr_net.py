"""The torch code of the ``elr`` learner (:mod:`benchmark.learners.elr`): the early-learning
regulariser and the loss that trains ``smallcnn``'s network with it.

Early-learning regularisation (Liu et al., 2020): each training sample i keeps a target t_i, an
exponential moving average of the network's own (detached, normalised) predictions,
``t_i <- beta t_i + (1 - beta) p_i``, starting from zero. The loss adds
``lambda * mean_i log(1 - <p_i, t_i>)`` to the cross-entropy: minimising it raises
``<p_i, t_i>``, so the network keeps agreeing with what it predicted early on (when it fits the
clean majority) rather than memorising noisy labels later. Probabilities are clipped to
[1e-4, 1 - 1e-4] in both places, as in the authors' code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.learners._recipe import (
    LossFn,
    Recipe,
    finetune_network,
    recipe_for,
    train_network,
)
from benchmark.learners._smallcnn_net import Network
from benchmark.learners._torch import TorchLearner

#: Probabilities are clipped to [CLIP, 1 - CLIP].
CLIP = 1e-4


def elr_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    target_rows: torch.Tensor,
    lam: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CE(logits, labels) + ``lam`` * mean(log(1 - <p, t>)), p = clipped softmax(logits) and
    t = ``target_rows`` (B, C), the batch's targets."""
    p = torch.softmax(logits, dim=1).clamp(CLIP, 1.0 - CLIP)
    ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return ce + lam * torch.log(1.0 - (target_rows * p).sum(dim=1)).mean()


def update_targets(targets: torch.Tensor, idx: torch.Tensor, probs: torch.Tensor, beta: float) -> None:
    """``targets[idx] <- beta * targets[idx] + (1 - beta) * p`` in place, p = ``probs`` (B, C)
    detached, clipped and renormalised to sum to 1; ``idx`` (B,) distinct rows."""
    p = probs.detach().float().clamp(CLIP, 1.0 - CLIP)
    p = p / p.sum(dim=1, keepdim=True)
    targets[idx] = beta * targets[idx] + (1.0 - beta) * p


def elr_objective(targets: torch.Tensor, learner: TorchLearner, recipe: Recipe) -> LossFn:
    """The batch loss of ELR training with the learner's ``elr_beta`` and ``elr_lambda`` and the
    recipe's label smoothing: update the batch's ``targets`` rows, then :func:`elr_loss`."""
    beta, lam = learner.config.elr_beta, learner.config.elr_lambda

    def loss(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        update_targets(targets, idx, torch.softmax(logits.detach(), dim=1), beta)
        return elr_loss(logits, labels, targets[idx], lam, recipe.label_smoothing)

    return loss


def train(learner: TorchLearner, images: torch.Tensor, labels: np.ndarray, seed: int) -> Network:
    """A fresh network of the learner's recipe trained with the ELR loss, each training sample's
    target starting at zero."""

    def make(recipe: Recipe, n: int) -> LossFn:
        targets = torch.zeros(n, learner.n_classes, dtype=torch.float32, device=learner.device)
        return elr_objective(targets, learner, recipe)

    return train_network(learner, images, labels, seed, loss=make)


def finetune(
    learner: TorchLearner, model: Network, images: torch.Tensor, labels: np.ndarray, seed: int
) -> Network:
    """``model`` fine-tuned with the ELR loss on the current ``labels``; each sample's target
    restarts at zero, as in training. (Targets set to the model's present posteriors would hold
    it to what it predicted before the relabelling, against the corrected labels.)"""
    targets = torch.zeros(images.shape[0], learner.n_classes, dtype=torch.float32, device=learner.device)
    objective = elr_objective(targets, learner, recipe_for(learner.config))
    return finetune_network(learner, model, images, labels, seed, objective)
