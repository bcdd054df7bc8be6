"""The README's strategy example works as printed: one file, and it is a registered strategy."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.plugins import ScoringContext

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- strategy-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its strategy example"
    return match.group(1)


@pytest.fixture
def example_root(tmp_path, monkeypatch):
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "label_margin.py").write_text(_example())
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


def test_readme_strategy_is_discovered_with_its_description(example_root):
    info = registry.discover("strategy")["label_margin"]
    assert info.ok
    assert info.origin.endswith("label_margin.py")
    assert "prefers another class" in info.description


def test_readme_strategy_scores_as_documented(example_root):
    strategy = registry.create("strategy", "label_margin[doubt_weight=0.5]")
    counts = np.array([[1, 0, 0], [0, 1, 0]])
    post = np.array([[0.2, 0.7, 0.1], [0.2, 0.7, 0.1]])
    scores = strategy.score(ScoringContext(label_counts=counts, posteriors=post))
    doubt = -np.sum(post[0] * np.log(post[0])) / np.log(3)
    np.testing.assert_allclose(scores, [0.5 - 0.5 * doubt, -0.5 * doubt])


def test_readme_strategy_parameter_changes_the_ranking(example_root):
    counts = np.eye(3, dtype=np.int64)[[0, 0]]
    # sample 0: the larger margin, but an unsure model; sample 1: a smaller margin, surer
    post = np.array([[0.2, 0.5, 0.3], [0.35, 0.6, 0.05]])
    ctx = ScoringContext(label_counts=counts, posteriors=post)
    plain = registry.create("strategy", "label_margin").score(ctx)
    weighted = registry.create("strategy", "label_margin[doubt_weight=0.5]").score(ctx)
    assert plain[0] > plain[1] and weighted[1] > weighted[0]


def test_readme_strategy_rejects_a_bad_value(example_root):
    with pytest.raises(ValueError, match="doubt_weight=-1 is not allowed"):
        registry.create("strategy", "label_margin[doubt_weight=-1]")


def test_readme_runs_the_strategy_beside_random():
    assert re.search(r"--strategy 'label_margin\[doubt_weight=0.5\]' --strategy random", README.read_text())


def test_readme_strategy_joins_the_default_suite(example_root):
    from benchmark.suite import expand

    strategies, failed = expand("strategy")
    assert "label_margin[doubt_weight=0]" in strategies and "label_margin[doubt_weight=0.5]" in strategies


def _learner_example() -> str:
    match = re.search(r"<!-- learner-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README lost its learner example"
    return match.group(1)


@pytest.fixture
def learner_root(tmp_path, monkeypatch):
    (tmp_path / "learners").mkdir()
    (tmp_path / "learners" / "nearest_mean.py").write_text(_learner_example())
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


def test_readme_learner_is_discovered_with_its_parameters(learner_root):
    info = registry.discover("learner")["nearest_mean"]
    assert info.ok and info.origin.endswith("nearest_mean.py")
    assert info.cls.parameters == {"folds": [2], "temperature": [10.0]}
    assert registry.create("learner", "nearest_mean[temperature=5]").config.temperature == 5.0


def test_readme_learner_gives_out_of_sample_posteriors(learner_root):
    from benchmark.task import CleaningTask

    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 20)
    images = (truth[:, None, None] * 100 + rng.integers(0, 30, (60, 6, 6))).astype(np.uint8)
    noisy = truth.copy()
    noisy[[0, 25, 50]] = [1, 2, 0]
    task = CleaningTask(
        "toy",
        np.eye(3)[truth],
        noisy,
        ("dark", "grey", "light"),
        load_images=lambda: images,
    )
    post = registry.create("learner", "nearest_mean").fit_predict(task, seed=0, progress=False)
    assert post.probs.shape == (60, 3) and post.stochastic is None
    np.testing.assert_allclose(post.probs.sum(axis=1), 1.0, rtol=1e-5)
    # the flipped labels are not memorised: the held-out model predicts the true class
    assert np.array_equal(post.probs.argmax(axis=1), truth)
