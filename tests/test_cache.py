"""The learner-output cache: hits, misses on every input of the key, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import make_task

from benchmark.cache import cache_key, load_or_fit
from benchmark.learners.truth import TruthLearner
from benchmark.plugins import Learner, Posteriors
from benchmark.task import CleaningTask


class CountingLearner(Learner):
    """Posteriors that depend on the seed and ``sharpness``; counts its fits."""

    name = "counting"
    parameters = {"sharpness": [2.0], "stochastic": [True]}
    calls: ClassVar[list[int]] = []

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        type(self).calls.append(seed)
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(task.n_samples, task.n_classes)) * self.params["sharpness"]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        stochastic = np.stack([probs, probs[:, ::-1]]) if self.params["stochastic"] else None
        return Posteriors(
            probs=probs.astype(np.float32),
            stochastic=None if stochastic is None else stochastic.astype(np.float32),
            info={"seed": seed, "accuracy": np.float64(0.5)},
        )


class FailingLearner(CountingLearner):
    name = "failing"
    error: ClassVar[type[BaseException]] = RuntimeError

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        raise self.error("fit failed")


class UncachedLearner(CountingLearner):
    name = "uncached"
    cache = False


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    CountingLearner.calls.clear()


@pytest.fixture
def task() -> CleaningTask:
    rng = np.random.default_rng(0)
    return make_task(rng.dirichlet(np.ones(3), size=8), rng.integers(0, 3, size=8))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_second_call_is_a_hit_with_identical_arrays(task: CleaningTask, tmp_path: Path) -> None:
    first, key1 = load_or_fit(task, CountingLearner(), 3, cache_dir=tmp_path)
    second, key2 = load_or_fit(task, CountingLearner(), 3, cache_dir=tmp_path)
    assert CountingLearner.calls == [3]
    assert key1 == key2
    np.testing.assert_array_equal(second.probs, first.probs)
    assert first.stochastic is not None and second.stochastic is not None
    np.testing.assert_array_equal(second.stochastic, first.stochastic)
    assert second.info == {"seed": 3, "accuracy": 0.5}


def test_entry_layout_is_npz_plus_human_readable_json(task: CleaningTask, tmp_path: Path) -> None:
    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert files_under(tmp_path) == [f"counting/{key}.json", f"counting/{key}.npz"]
    sidecar = json.loads((tmp_path / "counting" / f"{key}.json").read_text())
    assert sidecar["key"] == key
    assert sidecar["inputs"]["learner"]["params"] == {"sharpness": 2, "stochastic": True}
    assert sidecar["inputs"]["seed"] == 0
    assert sidecar["inputs"]["task"]["name"] == task.name


def test_entry_without_stochastic_round_trips_as_none(task: CleaningTask, tmp_path: Path) -> None:
    load_or_fit(task, CountingLearner(stochastic=False), 0, cache_dir=tmp_path)
    post, _ = load_or_fit(task, CountingLearner(stochastic=False), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 1
    assert post.stochastic is None


def test_key_is_long_hex(task: CleaningTask) -> None:
    key = cache_key(task, CountingLearner(), 0)
    assert len(key) >= 16 and int(key, 16) >= 0


def test_key_does_not_load_images(task: CleaningTask) -> None:
    def explode() -> np.ndarray:
        raise AssertionError("images loaded")

    with_images = dataclasses.replace(task, load_images=explode)
    assert cache_key(with_images, CountingLearner(), 0) == cache_key(task, CountingLearner(), 0)


def test_default_params_and_their_explicit_spelling_share_a_key(task: CleaningTask) -> None:
    assert cache_key(task, CountingLearner(), 0) == cache_key(task, CountingLearner(sharpness=2), 0)


def test_changed_seed_misses(task: CleaningTask, tmp_path: Path) -> None:
    load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    load_or_fit(task, CountingLearner(), 1, cache_dir=tmp_path)
    assert CountingLearner.calls == [0, 1]


def test_changed_params_miss(task: CleaningTask, tmp_path: Path) -> None:
    first, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    other, _ = load_or_fit(task, CountingLearner(sharpness=5.0), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2
    assert not np.array_equal(first.probs, other.probs)


def test_changed_noisy_labels_miss(task: CleaningTask, tmp_path: Path) -> None:
    flipped = task.noisy_labels.copy()
    flipped[0] = (flipped[0] + 1) % task.n_classes
    relabelled = make_task(task.true_dist, flipped)
    assert relabelled.name == task.name
    load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    load_or_fit(relabelled, CountingLearner(), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2


def test_changed_sample_ids_or_task_name_miss(task: CleaningTask) -> None:
    keys = {
        cache_key(task, CountingLearner(), 0),
        cache_key(dataclasses.replace(task, sample_ids=np.arange(8)), CountingLearner(), 0),
        cache_key(dataclasses.replace(task, sample_ids=np.arange(1, 9)), CountingLearner(), 0),
        cache_key(dataclasses.replace(task, name="other"), CountingLearner(), 0),
    }
    assert len(keys) == 4


def test_changed_version_misses(task: CleaningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    monkeypatch.setattr(CountingLearner, "version", "2")
    load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2


def test_refit_ignores_and_overwrites_the_entry(task: CleaningTask, tmp_path: Path) -> None:
    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    path = tmp_path / "counting" / f"{key}.npz"
    np.savez(path, probs=np.full((8, 3), 1 / 3, dtype=np.float32), info=np.array("{}"))
    stale, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert np.allclose(stale.probs, 1 / 3)  # a hit: it trusts what is there
    fresh, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path, refit=True)
    assert len(CountingLearner.calls) == 2
    assert not np.allclose(fresh.probs, 1 / 3)
    reread, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    np.testing.assert_array_equal(reread.probs, fresh.probs)
    assert files_under(tmp_path) == [f"counting/{key}.json", f"counting/{key}.npz"]


def test_corrupt_entry_warns_naming_the_file_and_refits(task: CleaningTask, tmp_path: Path) -> None:
    first, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    path = tmp_path / "counting" / f"{key}.npz"
    path.write_bytes(b"not a zip archive")
    with pytest.warns(RuntimeWarning, match=key):
        again, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2
    np.testing.assert_array_equal(again.probs, first.probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)  # repaired: a clean hit
    assert len(CountingLearner.calls) == 2


def test_entry_of_the_wrong_shape_is_refitted(task: CleaningTask, tmp_path: Path) -> None:
    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    path = tmp_path / "counting" / f"{key}.npz"
    np.savez(path, probs=np.ones((2, 3), dtype=np.float32), info=np.array("{}"))
    with pytest.warns(RuntimeWarning, match="shape"):
        post, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert post.probs.shape == (8, 3)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failing_fit_leaves_no_entry_and_no_temp_file(
    task: CleaningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type
) -> None:
    monkeypatch.setattr(FailingLearner, "error", error)
    with pytest.raises(error):
        load_or_fit(task, FailingLearner(), 0, cache_dir=tmp_path)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_failing_write_leaves_no_entry_and_no_temp_file(
    task: CleaningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type
) -> None:
    def broken_savez(*args: Any, **kwargs: Any) -> None:
        args[0].write(b"partial")
        raise error("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(error):
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert files_under(tmp_path) == []


def test_uncached_learner_touches_no_disk(task: CleaningTask, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    load_or_fit(task, UncachedLearner(), 0, cache_dir=cache_dir)
    load_or_fit(task, UncachedLearner(), 0, cache_dir=cache_dir)
    assert CountingLearner.calls == [0, 0]
    assert not cache_dir.exists()


def test_truth_learner_is_not_cached(task: CleaningTask, tmp_path: Path) -> None:
    post, _ = load_or_fit(task, TruthLearner(), 0, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(post.probs, task.true_dist, rtol=1e-6)
    assert not (tmp_path / "cache").exists()


def test_entry_in_an_extra_cache_dir_is_a_hit_and_is_not_copied(task: CleaningTask, tmp_path: Path) -> None:
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    first, key = load_or_fit(task, CountingLearner(), 0, cache_dir=shipped)
    again, key2 = load_or_fit(task, CountingLearner(), 0, cache_dir=local, extra_cache_dirs=[shipped])
    assert len(CountingLearner.calls) == 1 and key2 == key
    np.testing.assert_array_equal(again.probs, first.probs)
    assert not local.exists()


def test_refit_ignores_extra_cache_dirs_and_writes_to_cache_dir(task: CleaningTask, tmp_path: Path) -> None:
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=shipped)
    before = (shipped / "counting" / f"{key}.npz").read_bytes()
    load_or_fit(task, CountingLearner(), 0, cache_dir=local, extra_cache_dirs=[shipped], refit=True)
    assert len(CountingLearner.calls) == 2
    assert (local / "counting" / f"{key}.npz").is_file()
    assert (shipped / "counting" / f"{key}.npz").read_bytes() == before


def test_corrupt_entry_in_an_extra_dir_is_skipped_with_a_warning(task: CleaningTask, tmp_path: Path) -> None:
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=shipped)
    (shipped / "counting" / f"{key}.npz").write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="shipped"):
        load_or_fit(task, CountingLearner(), 0, cache_dir=local, extra_cache_dirs=[shipped])
    assert len(CountingLearner.calls) == 2
    assert (local / "counting" / f"{key}.npz").is_file()
