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
    strategy = registry.create("strategy", "label_margin[power=2]")
    counts = np.array([[1, 0, 0], [0, 1, 0]])
    post = np.array([[0.2, 0.7, 0.1], [0.2, 0.7, 0.1]])
    scores = strategy.score(ScoringContext(label_counts=counts, posteriors=post))
    np.testing.assert_allclose(scores, [(0.7 - 0.2) ** 2, 0.0])


def test_readme_strategy_joins_the_default_suite(example_root):
    from benchmark.suite import expand

    strategies, failed = expand("strategy")
    assert "label_margin[power=1]" in strategies and "label_margin[power=2]" in strategies
