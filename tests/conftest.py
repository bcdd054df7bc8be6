"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import make_task as _make_task

from benchmark.task import CleaningTask

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data (``../shared/data`` or ``$ALCBENCH_TEST_DATA``); skips when absent."""
    root = Path(os.environ.get("ALCBENCH_TEST_DATA") or REPO_ROOT.parent / "shared" / "data")
    if not root.is_dir():
        pytest.skip(f"no test data at {root} (set ALCBENCH_TEST_DATA to a data root)")
    return root


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plugin folder (with ``strategies/``) added through ``ALCBENCH_PLUGIN_PATH``; the
    registry forgets it afterwards."""
    from benchmark import registry

    root = tmp_path / "plugins"
    (root / "strategies").mkdir(parents=True)
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(root))
    registry.refresh()
    yield root
    registry.refresh()


@pytest.fixture
def make_task() -> Callable[..., CleaningTask]:
    """``make_task(true_dist, noisy_labels, *, budget_multiplier=4.0, name="toy")``."""
    return _make_task


@pytest.fixture(autouse=True)
def _no_cache_dirs_from_other_tests() -> Iterator[None]:
    """A command run by a test names its cache folders in the environment
    (:func:`benchmark.posteriors.cache.use_cache_dirs`); no test inherits another's."""
    from benchmark.posteriors.cache import CACHE_DIRS_ENV

    os.environ.pop(CACHE_DIRS_ENV, None)
    yield
    os.environ.pop(CACHE_DIRS_ENV, None)
