"""The posteriors behind the committed results ship with the project: the default suite on
CIFAR-10H reads every fit it needs and trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark import registry
from benchmark.posteriors.cache import SHIPPED_POSTERIORS, entry_path
from benchmark.run.suite import shipped_learners

SEEDS = range(5)


@pytest.mark.parametrize("temperature", [2, 10])
def test_every_default_learner_has_its_cifar10h_posteriors_shipped(data_root: Path, temperature: int) -> None:
    spec = f"cifar10h[temperature={temperature}]"
    task = registry.create("dataset", spec).load(data_root)
    missing = []
    for learner_spec in shipped_learners(spec):
        learner = registry.create("learner", learner_spec)
        for seed in SEEDS:
            if not entry_path(task, learner, seed, SHIPPED_POSTERIORS).is_file():
                missing.append(f"{learner_spec} seed {seed}")
    assert not missing, f"{spec}: not shipped: {', '.join(missing)}"
