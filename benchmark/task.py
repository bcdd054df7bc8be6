"""The data model every part of the suite agrees on: a cleaning task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A sample is ambiguous when the normalised entropy of its true distribution exceeds this.
AMBIGUITY_THRESHOLD = 0.3
#: Added inside logarithms, as in the paper's reference code, so that log(0) stays finite.
LOG_EPS = 1e-12


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy of each row of ``p`` (..., C) in units of log C, so that it lies in [0, 1]."""
    n_classes = p.shape[-1]
    return -np.sum(p * np.log(p + LOG_EPS), axis=-1) / np.log(n_classes)


@dataclass(frozen=True, eq=False)
class CleaningTask:
    """A dataset with noisy labels, ready to be cleaned.

    Attributes:
        name: identifies the task and its parameters, e.g. ``cifar10h[n=5000,temperature=2]``.
        true_dist: (N, C) float64; each row is the distribution the simulated expert draws
            labels from (rows sum to 1).
        noisy_labels: (N,) int64; the initial label of each sample, in 0..C-1.
        class_names: C names, in class-index order.
        budget_multiplier: the budget is this multiple of the number of initially
            mislabelled samples (paper: 4 for CIFAR-10H, 2.5 for NoisyCXR).
        load_images: returns the (N, H, W, ch) uint8 inputs in sample order; only learners
            call it, so simulations from supplied posteriors never touch the images.
        sample_ids: (N,) identifiers of the samples in the source dataset (for reports).
        load_eval: returns a clean evaluation set apart from the N samples, (M, H, W, ch) uint8
            images and their (M,) int64 labels, on which models trained on cleaned labels are
            tested (the downstream results); None when the dataset has none. ``info["eval_set"]``
            then names it (with the copy read), for cache keys and tables.
        info: free-form facts about the task (noise rate, source files, ...). Read by the
            engine: ``image_source`` and ``image_source_default``, which copy of the images
            a learner would read and the dataset's default copy (part of the learner cache's
            key, see :mod:`benchmark.posteriors.cache`).
    """

    name: str
    true_dist: np.ndarray
    noisy_labels: np.ndarray
    class_names: tuple[str, ...]
    budget_multiplier: float = 4.0
    load_images: Callable[[], np.ndarray] | None = None
    sample_ids: np.ndarray | None = None
    load_eval: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = np.asarray(self.true_dist, dtype=np.float64)
        y = np.asarray(self.noisy_labels)
        if p.ndim != 2:
            raise ValueError(f"{self.name}: true_dist must be (N, C), got shape {p.shape}")
        if y.shape != (p.shape[0],):
            raise ValueError(f"{self.name}: noisy_labels must have shape ({p.shape[0]},), got {y.shape}")
        if not np.allclose(p.sum(axis=1), 1.0, atol=1e-6) or (p < 0).any():
            raise ValueError(f"{self.name}: rows of true_dist must be distributions")
        if y.min(initial=0) < 0 or y.max(initial=0) >= p.shape[1]:
            raise ValueError(f"{self.name}: noisy_labels must lie in 0..{p.shape[1] - 1}")
        if len(self.class_names) != p.shape[1]:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {p.shape[1]} classes")
        object.__setattr__(self, "true_dist", p)
        object.__setattr__(self, "noisy_labels", y.astype(np.int64))

    @property
    def n_samples(self) -> int:
        return int(self.true_dist.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.true_dist.shape[1])

    @property
    def true_labels(self) -> np.ndarray:
        """(N,) the plurality vote of the true distribution (first class on ties)."""
        return np.argmax(self.true_dist, axis=1)

    @property
    def ambiguous(self) -> np.ndarray:
        """(N,) bool: normalised entropy of the true distribution > 0.3."""
        return normalised_entropy(self.true_dist) > AMBIGUITY_THRESHOLD

    @property
    def initially_mislabelled(self) -> int:
        return int(np.sum(self.noisy_labels != self.true_labels))

    @property
    def noise_rate(self) -> float:
        return self.initially_mislabelled / self.n_samples

    @property
    def budget(self) -> int:
        """Expert annotations available: the multiplier times the initially mislabelled count."""
        return int(round(self.budget_multiplier * self.initially_mislabelled))
