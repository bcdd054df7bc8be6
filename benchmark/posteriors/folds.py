"""Folds for cross-fitting: stratified fold assignment, the (train, test) splits, fitting over
them, and the seeds each model gets (see :mod:`benchmark.posteriors.crossfit`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from benchmark.task import CleaningTask

Prediction = tuple[np.ndarray, np.ndarray | None]
#: (train_idx, test_idx) of one model
Split = tuple[np.ndarray, np.ndarray]


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
    fold_of: np.ndarray, fit_and_predict: Callable[[np.ndarray, np.ndarray], Prediction]
) -> Prediction:
    """Out-of-sample predictions: fold k is predicted by a model fitted on every other fold.

    Args:
        fold_of: (N,) fold index of each sample (see :func:`fold_assignment`).
        fit_and_predict: ``(train_idx, test_idx) -> (probs (n, C), stochastic (T, n, C) or
            None)`` fits on ``train_idx`` and predicts ``test_idx``; called once per fold, in
            fold order.

    Returns:
        probs (N, C) and stochastic (T, N, C) (None when every fold gave None), float32, in
        sample order.
    """
    return fit_splits(fold_of.shape[0], fold_splits(fold_of), fit_and_predict)


def fold_splits(fold_of: np.ndarray) -> list[Split]:
    """(train_idx, test_idx) of each fold, in fold order: fold k is tested, the others train."""
    return [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in np.unique(fold_of)]


def fit_splits(
    n_samples: int, splits: Sequence[Split], fit_and_predict: Callable[[np.ndarray, np.ndarray], Prediction]
) -> Prediction:
    """Calls ``fit_and_predict(train_idx, test_idx)`` for each split, in order, and gathers the
    predictions into probs (N, C) and stochastic (T, N, C) (None when every split gave None),
    float32, in sample order. The test sets must cover every sample; where they overlap, the
    later split wins."""
    probs: np.ndarray | None = None
    stochastic: np.ndarray | None = None
    for i, (train_idx, test_idx) in enumerate(splits):
        p, s = fit_and_predict(train_idx, test_idx)
        if i == 0:
            probs = np.zeros((n_samples, p.shape[1]), dtype=np.float32)
            if s is not None:
                stochastic = np.zeros((s.shape[0], n_samples, p.shape[1]), dtype=np.float32)
        elif (s is None) != (stochastic is None):
            raise ValueError("fit_and_predict returned stochastic posteriors for some folds only")
        assert probs is not None
        probs[test_idx] = p
        if stochastic is not None:
            stochastic[:, test_idx] = s
    assert probs is not None
    return probs, stochastic


def derived_seed(seed: int, fold: int) -> int:
    """An independent 63-bit seed for fold ``fold`` of a fit with ``seed``."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(2, np.uint64)[0] >> 1)


def check_images(images: np.ndarray, task: CleaningTask) -> np.ndarray:
    """``images`` as (N, H, W, ch) uint8: (N, H, W) greyscale gains a channel axis."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] != task.n_samples:
        raise ValueError(
            f"{task.name}: expected images of shape ({task.n_samples}, H, W, channels), got {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{task.name}: expected uint8 images, got {images.dtype}")
    return images
