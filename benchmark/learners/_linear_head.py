"""The linear head of the ``ssl`` learner (:mod:`benchmark.learners.ssl`), in NumPy only.

Multinomial logistic regression on standardised features, trained with input dropout by
minibatch SGD with momentum (the paper's head on its frozen self-supervised encoder: dropout
0.2, SGD lr 0.01, weight decay 1e-3, 120 epochs). Posteriors are the mean over ``mc_samples``
passes with dropout on, as the reference computes them; the passes themselves are the
stochastic posteriors.

A head can also start from another (``train_head(..., init=head)``): the ``ssl`` learner's
active re-fit fine-tunes the head it trained on the initial labels for a few epochs rather
than training a new one for 120 (see :meth:`benchmark.learners.ssl.SelfSupervised.refit`).

Training and prediction run with BLAS on one thread (:func:`one_blas_thread`): the last bits
of OpenBLAS's product of a prediction's size ((N, 128) x (128, 10)) can depend on how many
threads share it (they do with its Haswell kernels), so posteriors, and the active runs that
re-rank by them, would depend on the thread count (the runner's ``--jobs``, a worker's limits,
``OPENBLAS_NUM_THREADS``). On one thread they do not, and the head's products are too small to
gain from more.

No torch here: a re-fit of the head on cached features runs on the lean install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

#: Samples per SGD step.
BATCH_SIZE = 64
MOMENTUM = 0.9
#: Standard deviations below this count as constant features (left unscaled).
MIN_STD = 1e-6

#: threadpoolctl's view of the BLAS libraries loaded, made on first use (finding them takes a
#: fraction of a millisecond each time; limiting through a controller made once does not).
_controller: ThreadpoolController | None = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (OpenBLAS, MKL, BLIS) on one thread for the duration, then as it was: the head's
    results are then the same bytes whatever the process's thread settings or the load."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class LinearHead:
    """A trained head: logits = ((x - mean) / std) @ weights + bias.

    Attributes:
        weights: (D, C) float32.
        bias: (C,) float32.
        mean: (D,) float32, the training features' mean.
        std: (D,) float32, their standard deviation (1 where constant).
        dropout: the input dropout rate it was trained with (used again by MC passes).
    """

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    dropout: float


def check_head(head: Any, d: int, n_classes: int) -> None:
    """ValueError unless ``head`` is a :class:`LinearHead` of float32 arrays for ``d`` features
    and ``n_classes`` classes, every value finite and every std positive."""
    if not isinstance(head, LinearHead):
        raise ValueError(f"expected a LinearHead, got {type(head).__name__}")
    shapes = {"weights": (d, n_classes), "bias": (n_classes,), "mean": (d,), "std": (d,)}
    for name, shape in shapes.items():
        value = getattr(head, name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != shape:
            raise ValueError(f"the head's {name} must be a float32 array of shape {shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"the head's {name} are not all finite")
    if not (head.std > 0).all():
        raise ValueError("the head's std must be positive")
    if not 0.0 <= head.dropout < 1.0:
        raise ValueError(f"the head's dropout={head.dropout} must lie in [0, 1)")


def standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), std (D,)) of ``features`` (n, D), float32; std is 1 where a feature is constant."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (..., C) logits, stable for large values."""
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def train_head(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    seed: int,
    batch_size: int = BATCH_SIZE,
    on_epoch: Callable[[float, float], None] | None = None,
    init: LinearHead | None = None,
) -> LinearHead:
    """A :class:`LinearHead` fitted to ``labels`` (n,) int in 0..n_classes-1 on ``features`` (n, D).

    Mean cross-entropy plus ``weight_decay`` x L2 on the weights (not the bias), minimised by
    minibatch SGD with momentum 0.9 over ``epochs`` shuffled passes; each input feature is
    dropped with probability ``dropout`` (inverted dropout). The shuffles and masks come from
    ``seed``. ``on_epoch(loss, accuracy)`` is called after each epoch with the mean training
    loss and accuracy of its (dropped-out) batches.

    With ``init`` (a warm start, for fine-tuning) the weights and bias start as ``init``'s
    and the features are standardised with ``init``'s mean and std, so that the head it
    returns reads features as ``init`` does; the momentum starts at zero. Without it the
    weights start at zero and the standardiser is that of ``features``. BLAS runs on one
    thread (:func:`one_blas_thread`).
    """
    with one_blas_thread():
        return _train(
            features, labels, n_classes, epochs, lr, weight_decay, dropout, seed, batch_size, on_epoch, init
        )


def _train(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    seed: int,
    batch_size: int,
    on_epoch: Callable[[float, float], None] | None,
    init: LinearHead | None,
) -> LinearHead:
    labels = np.asarray(labels, dtype=np.int64)
    n, d = features.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout} must lie in [0, 1)")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    if init is None:
        mean, std = standardiser(features)
        weights = np.zeros((d, n_classes), dtype=np.float32)
        bias = np.zeros(n_classes, dtype=np.float32)
    else:
        check_head(init, d, n_classes)
        mean, std = init.mean, init.std
        weights = np.array(init.weights, dtype=np.float32)  # copies: init is left as it was
        bias = np.array(init.bias, dtype=np.float32)
    x = (np.asarray(features, dtype=np.float32) - mean) / std
    onehot = np.eye(n_classes, dtype=np.float32)[labels]
    velocity_w = np.zeros_like(weights)
    velocity_b = np.zeros_like(bias)
    keep = 1.0 - dropout
    for _ in range(epochs):
        order = rng.permutation(n)
        total_loss = 0.0
        correct = 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx]
            if dropout > 0.0:
                xb = xb * (rng.random(xb.shape, dtype=np.float32) < keep) / np.float32(keep)
            probs = softmax(xb @ weights + bias)
            target = onehot[idx]
            total_loss -= float(np.log(np.maximum((probs * target).sum(axis=1), 1e-12)).sum())
            correct += int((probs.argmax(axis=1) == labels[idx]).sum())
            residual = (probs - target) / np.float32(idx.size)
            grad_w = xb.T @ residual + np.float32(weight_decay) * weights
            grad_b = residual.sum(axis=0)
            velocity_w *= np.float32(MOMENTUM)
            velocity_w += grad_w
            velocity_b *= np.float32(MOMENTUM)
            velocity_b += grad_b
            weights -= np.float32(lr) * velocity_w
            bias -= np.float32(lr) * velocity_b
        if on_epoch is not None:
            on_epoch(total_loss / n, correct / n)
    return LinearHead(weights=weights, bias=bias, mean=mean, std=std, dropout=float(dropout))


def predict_head(
    head: LinearHead, features: np.ndarray, *, mc_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Posteriors of ``features`` (n, D): probs (n, C) and stochastic (mc_samples, n, C), float32.

    With ``mc_samples`` > 0 (and a head trained with dropout), each stochastic posterior is one
    pass with the head's input dropout on, masks drawn from ``seed``, and probs is their mean
    (the reference's MC-dropout posterior); otherwise probs is the deterministic pass and
    stochastic is None. BLAS runs on one thread (:func:`one_blas_thread`).
    """
    with one_blas_thread():
        return _predict(head, features, mc_samples, seed)


def _predict(
    head: LinearHead, features: np.ndarray, mc_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    x = (np.asarray(features, dtype=np.float32) - head.mean) / head.std
    if mc_samples <= 0 or head.dropout == 0.0:
        return softmax(x @ head.weights + head.bias).astype(np.float32), None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    keep = np.float32(1.0 - head.dropout)
    passes = np.empty((mc_samples, x.shape[0], head.weights.shape[1]), dtype=np.float32)
    for t in range(mc_samples):
        mask = rng.random(x.shape, dtype=np.float32) < keep
        passes[t] = softmax((x * mask / keep) @ head.weights + head.bias)
    probs = passes.mean(axis=0, dtype=np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32), passes
