"""Scoring functions of the paper, as pure array functions (logs normalised by log C).

Strategy plugins combine these; each returns one score per sample.
"""

from __future__ import annotations

import numpy as np

from benchmark.task import LOG_EPS, normalised_entropy


def cross_entropy(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """CE(q, p) = -sum_c q_c log p_c / log C for (N, C) label distributions q and posteriors p.

    The paper's label-correctness term: high when the posterior disagrees with the label.
    """
    return -np.sum(q * np.log(p + LOG_EPS), axis=-1) / np.log(p.shape[-1])


def entropy(p: np.ndarray) -> np.ndarray:
    """H(p) / log C for (..., C) distributions: the paper's difficulty (ambiguity) term."""
    return normalised_entropy(p)


def correctness_minus_difficulty(q: np.ndarray, p: np.ndarray, *, hinge: float | None = None) -> np.ndarray:
    """The paper's Eq. 2: CE(q, p) - H(p).

    With ``hinge`` set (the reference code uses 0.3), only the part of the entropy above the
    hinge is subtracted: CE(q, p) - max(H(p) - hinge, 0).
    """
    h = entropy(p)
    if hinge is not None:
        h = np.maximum(h - hinge, 0.0)
    return cross_entropy(q, p) - h


def bald(stochastic: np.ndarray) -> np.ndarray:
    """BALD mutual information H(mean_t p_t) - mean_t H(p_t) for (T, N, C) posterior samples."""
    return entropy(stochastic.mean(axis=0)) - entropy(stochastic).mean(axis=0)


def expected_draws(p: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Expected expert draws to fix a sample, the reference code's recursion truncated at depth 3.

    For each row of ``p`` (N, C) with current majority ``current`` (N,), with R the classes
    other than ``current``, S = sum_{j in R} p_j and Q = sum_{j in R} p_j^2, the recursion
    1 + sum_j p_j (1 + sum_{k != j} p_k (1 + sum_{l != j,k} p_l)) has the closed form
    1 + sum_{j in R} p_j [1 + (S - p_j)(1 + S - p_j) - Q + p_j^2].
    For one-hot p it gives 1 if the current label is right and 2 if not, as the reference does.
    """
    rows = np.arange(p.shape[0])
    others = p.copy()
    others[rows, current] = 0.0
    s = others.sum(axis=1, keepdims=True)
    q = (others**2).sum(axis=1, keepdims=True)
    inner = 1.0 + (s - others) * (1.0 + s - others) - q + others**2
    return 1.0 + np.sum(others * inner, axis=1)


def oracle_score(p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The reference's INV rule: (1 - p[current majority]) / expected draws."""
    current = np.argmax(counts, axis=1)
    error = 1.0 - p[np.arange(p.shape[0]), current]
    return error / expected_draws(p, current)
