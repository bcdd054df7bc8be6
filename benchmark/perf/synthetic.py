"""Synthetic CIFAR-10H-like tasks of any size, for the simulator speed benchmark."""

from __future__ import annotations

import numpy as np

from benchmark.plugins import ScoringContext, Strategy
from benchmark.simulation.simulator import initial_counts
from benchmark.task import CleaningTask

N_CLASSES = 10
BUDGET_MULTIPLIER = 4.0
#: Seed of the synthetic tasks; run seeds are separate.
TASK_SEED = 2022


def synthetic_task(
    n: int,
    *,
    seed: int = TASK_SEED,
    n_classes: int = N_CLASSES,
    flat_fraction: float = 0.15,
    temperature: float = 2.0,
    posterior_noise: float = 1.5,
) -> tuple[CleaningTask, np.ndarray]:
    """A CIFAR-10H-like task of ``n`` samples and its model posteriors, both seeded.

    True distributions: each sample gets a random main class. 85 % of rows are drawn from a
    Dirichlet with concentration 60 on the main class and 0.05 on the others (nearly one-hot,
    median top mass ~0.997); the other ``flat_fraction`` from a flatter Dirichlet (4 on the
    main class, 0.2 elsewhere), about 70 % of which come out ambiguous (normalised entropy
    > 0.3): ~10.5 % of all rows, with mean sorted masses ~0.62, 0.21, 0.09 (CIFAR-10H's
    ambiguous images: 0.64, 0.23, 0.08). Noisy labels are one draw from the tempered
    distribution p^(1/T) with T = 2, as in the paper's CIFAR-10H setting: about 15 % of labels
    are wrong. Posteriors are a noisy version of the truth, softmax(log(p + 1e-3) +
    ``posterior_noise`` * standard normal), so that a posterior-based strategy is better than
    random and worse than the oracle.

    Returns:
        (task, posteriors (n, C) float64).
    """
    rng = np.random.default_rng([seed, n])
    main = rng.integers(0, n_classes, n)
    flat = rng.random(n) < flat_fraction
    rows = np.arange(n)
    alpha = np.where(flat, 0.2, 0.05)[:, None] * np.ones((n, n_classes))
    alpha[rows, main] = np.where(flat, 4.0, 60.0)
    p = rng.gamma(alpha)
    # A row whose gamma draws all underflow to 0 (vanishingly rare) becomes one-hot at its main.
    empty = p.sum(axis=1) == 0
    p[empty, main[empty]] = 1.0
    p /= p.sum(axis=1, keepdims=True)

    tempered = p ** (1.0 / temperature)
    cdf = np.cumsum(tempered, axis=1)
    cdf /= cdf[:, -1:]
    noisy = np.minimum((rng.random(n)[:, None] >= cdf).sum(axis=1), n_classes - 1)

    logits = np.log(p + 1e-3) + posterior_noise * rng.standard_normal((n, n_classes))
    logits -= logits.max(axis=1, keepdims=True)
    posteriors = np.exp(logits)
    posteriors /= posteriors.sum(axis=1, keepdims=True)

    task = CleaningTask(
        name=f"synthetic[n={n},classes={n_classes},seed={seed}]",
        true_dist=p,
        noisy_labels=noisy,
        class_names=tuple(f"class{c}" for c in range(n_classes)),
        budget_multiplier=BUDGET_MULTIPLIER,
        info={"synthetic": True, "temperature": temperature},
    )
    return task, posteriors


def context_for(task: CleaningTask, posteriors: np.ndarray, strategy: Strategy, seed: int) -> ScoringContext:
    """The initial scoring context of a run: the oracle alone sees the truth."""
    return ScoringContext(
        label_counts=initial_counts(task),
        posteriors=posteriors,
        true_dist=task.true_dist if "truth" in strategy.requires else None,
        seed=seed,
    )
