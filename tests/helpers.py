"""Small builders shared by the tests: toy cleaning tasks and their scoring contexts."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from benchmark.plugins import ScoringContext
from benchmark.simulation.simulator import initial_counts
from benchmark.task import CleaningTask


def make_task(
    true_dist: Sequence[Sequence[float]] | np.ndarray,
    noisy_labels: Sequence[int] | np.ndarray,
    *,
    budget_multiplier: float = 4.0,
    name: str = "toy",
) -> CleaningTask:
    """A CleaningTask over ``true_dist`` (N, C) with classes named c0..c{C-1}."""
    p = np.asarray(true_dist, dtype=np.float64)
    return CleaningTask(
        name=name,
        true_dist=p,
        noisy_labels=np.asarray(noisy_labels, dtype=np.int64),
        class_names=tuple(f"c{c}" for c in range(p.shape[1])),
        budget_multiplier=budget_multiplier,
    )


def make_context(
    task: CleaningTask,
    *,
    posteriors: np.ndarray | None = None,
    stochastic: np.ndarray | None = None,
    seed: int = 0,
    with_truth: bool = True,
) -> ScoringContext:
    """The context a run starts from: counts one-hot at the noisy labels."""
    return ScoringContext(
        label_counts=initial_counts(task),
        posteriors=posteriors,
        stochastic=stochastic,
        true_dist=task.true_dist if with_truth else None,
        seed=seed,
    )


def one_hot(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """(N, C) float rows one-hot at ``labels``."""
    out = np.zeros((len(labels), n_classes))
    out[np.arange(len(labels)), list(labels)] = 1.0
    return out


def plugin_helper(folder: str, name: str) -> ModuleType:
    """A private helper module of one of this project's plugin folders, e.g.
    ``plugin_helper("datasets", "_cxr_labels")``, imported as the plugins import it."""
    from benchmark import _plugins
    from benchmark.registry import PROJECT_ROOT

    return importlib.import_module(f"{_plugins.folder_package(PROJECT_ROOT, folder)}.{name}")


#: A cleaning project's toy data (tests/test_clean.py, tests/test_labelstudio_server.py): six
#: samples of three classes and a model that doubts s2 and s4 most.
TOY_CLASSES = ("cat", "dog", "fox")
TOY_LABELS = {"s0": "cat", "s1": "dog", "s2": "cat", "s3": "fox", "s4": "dog", "s5": "fox"}
TOY_POSTERIORS = [
    [0.90, 0.05, 0.05],
    [0.10, 0.80, 0.10],
    [0.05, 0.90, 0.05],  # labelled cat, looks like a dog
    [0.10, 0.10, 0.80],
    [0.70, 0.20, 0.10],  # labelled dog, looks like a cat
    [0.20, 0.20, 0.60],
]
