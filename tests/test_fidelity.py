"""The paper's CIFAR-10H setting reproduces its published Random and Oracle curves.

Bernhardt et al. 2022: N=5000, T=2 (15.4 % noise), budget 4 x mislabelled (3,076 annotations).
Random: AUC 0.8772, final label accuracy 90.67 %. Oracle: AUC 0.9504, final 99.54 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.plugins import ScoringContext
from benchmark.simulation.metrics import run_metrics
from benchmark.simulation.simulator import initial_counts, simulate
from benchmark.task import CleaningTask

SEEDS = range(5)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> CleaningTask:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ALCBENCH_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(Path(tmp_path_factory.mktemp("env")) / "cache"))
        return registry.create("dataset", "cifar10h").load()


def mean_metrics(task: CleaningTask, spec: str) -> tuple[float, float]:
    strategy = registry.create("strategy", spec)
    runs = []
    for seed in SEEDS:
        ctx = ScoringContext(
            label_counts=initial_counts(task),
            posteriors=task.true_dist,  # the true distribution as posteriors
            true_dist=task.true_dist,
            seed=seed,
        )
        runs.append(run_metrics(task, simulate(task, strategy, ctx, seed=seed)))
    return (
        float(np.mean([m["auc"] for m in runs])),
        float(np.mean([m["final_accuracy"] for m in runs])),
    )


def test_setting_matches_the_paper(task):
    assert task.n_samples == 5000
    assert task.noise_rate == pytest.approx(0.1538, abs=1e-12)
    assert task.budget == 3076


def test_random_matches_the_paper_auc_and_final_accuracy(task):
    auc, final = mean_metrics(task, "random")
    assert auc == pytest.approx(0.8772, abs=0.005)
    assert final == pytest.approx(90.67, abs=0.5)


def test_oracle_matches_the_paper_auc_and_final_accuracy(task):
    auc, final = mean_metrics(task, "oracle")
    assert auc == pytest.approx(0.9504, abs=0.005)
    assert final == pytest.approx(99.54, abs=0.5)
