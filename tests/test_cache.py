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

from benchmark.learners.truth import TruthLearner
from benchmark.plugins import Learner, Posteriors
from benchmark.posteriors.cache import LOCKS, cache_key, load_or_fit
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
    """The files under ``folder``, without the lock files of fits (in ``.locks/``)."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and LOCKS not in p.parts
    )


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


class LaterParameter(CountingLearner):
    """CountingLearner after a parameter ``boost`` was added; 1 does what it did before."""

    parameters = {**CountingLearner.parameters, "boost": [1]}
    key_neutral = {"boost": 1}


def test_a_key_neutral_parameter_keeps_the_entries_made_before_it(
    task: CleaningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    monkeypatch.setattr(LaterParameter, "name", "counting")
    assert cache_key(task, LaterParameter(), 0) == key == cache_key(task, LaterParameter(boost=1.0), 0)
    found, _ = load_or_fit(task, LaterParameter(), 0, cache_dir=tmp_path)
    assert CountingLearner.calls == [0]  # read, not fitted again
    np.testing.assert_array_equal(found.probs, before.probs)
    assert cache_key(task, LaterParameter(boost=2), 0) != key


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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with refit the entry is not even read
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
    monkeypatch.setattr(np, "savez_compressed", broken_savez)
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


# --------------------------------------------------------------------------- entries checked


def write_entry(cache_dir: Path, task: CleaningTask, learner: Learner, seed: int, probs: np.ndarray) -> Path:
    """An entry for (task, learner, seed) as the cache writes it, holding ``probs``."""
    from benchmark.posteriors.cache import key_inputs
    from benchmark.posteriors.cache_entry import write_entry as store

    key = cache_key(task, learner, seed)
    path = cache_dir / learner.name / f"{key}.npz"
    store(path, Posteriors(probs=probs.astype(np.float32)), key_inputs(task, learner, seed), key)
    return path


def to_legacy(path: Path) -> None:
    """Rewrite an entry as entries were before they recorded their key in the .npz."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k not in ("key", "inputs")}
    np.savez(path, **arrays)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    del sidecar["sha256"]
    path.with_suffix(".json").write_text(json.dumps(sidecar))


def test_entry_records_its_key_and_inputs(task: CleaningTask, tmp_path: Path) -> None:
    from benchmark.posteriors.cache import key_inputs

    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    with np.load(tmp_path / "counting" / f"{key}.npz") as z:
        assert str(z["key"]) == key
        assert json.loads(str(z["inputs"])) == key_inputs(task, CountingLearner(), 0)
    sidecar = json.loads((tmp_path / "counting" / f"{key}.json").read_text())
    assert set(sidecar["sha256"]) == {"probs", "stochastic"}


def test_uniform_posteriors_written_over_an_entry_are_refitted(task: CleaningTask, tmp_path: Path) -> None:
    first, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    path = tmp_path / "counting" / f"{key}.npz"
    np.savez(path, probs=np.full((8, 3), 1 / 3, dtype=np.float32), info=np.array("{}"))
    with pytest.warns(RuntimeWarning, match=f"{key}.npz: bad cache entry .*sidecar"):
        again, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2
    np.testing.assert_array_equal(again.probs, first.probs)


def test_another_seeds_entry_is_refitted(task: CleaningTask, tmp_path: Path) -> None:
    seed0, key0 = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    _, key1 = load_or_fit(task, CountingLearner(), 1, cache_dir=tmp_path)
    folder = tmp_path / "counting"
    for suffix in (".npz", ".json"):  # seed 1's entry, whole, under seed 0's name
        (folder / f"{key0}{suffix}").write_bytes((folder / f"{key1}{suffix}").read_bytes())
    with pytest.warns(RuntimeWarning, match=r"seed=1 \(expected 0\)"):
        again, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert CountingLearner.calls == [0, 1, 0]
    np.testing.assert_array_equal(again.probs, seed0.probs)


def test_another_seeds_npz_alone_is_refitted(task: CleaningTask, tmp_path: Path) -> None:
    _, key0 = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    _, key1 = load_or_fit(task, CountingLearner(), 1, cache_dir=tmp_path)
    folder = tmp_path / "counting"
    (folder / f"{key0}.npz").write_bytes((folder / f"{key1}.npz").read_bytes())
    with pytest.warns(RuntimeWarning, match=f"records key {key1}, not {key0}"):
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert CountingLearner.calls == [0, 1, 0]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.nan, "NaN or inf"),
        (np.inf, "NaN or inf"),
        (-0.5, "negative"),
        (5.0, "sum to 1"),
    ],
)
def test_invalid_values_in_an_entry_are_refitted(
    task: CleaningTask, tmp_path: Path, bad: float, message: str
) -> None:
    probs = np.full((8, 3), 1 / 3)
    probs[2, 1] = bad
    path = write_entry(tmp_path, task, CountingLearner(), 0, probs)
    with pytest.warns(
        RuntimeWarning, match=rf"{path.name}: bad cache entry \(probs: expected .*{message}.*row 2"
    ):
        post, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert CountingLearner.calls == [0]
    assert np.isfinite(post.probs).all() and (post.probs >= 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)  # replaced by a good entry


def test_entry_of_another_learner_version_is_refused(
    task: CleaningTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, old_key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    monkeypatch.setattr(CountingLearner, "version", "2")
    new_key = cache_key(task, CountingLearner(), 0)
    folder = tmp_path / "counting"
    for suffix in (".npz", ".json"):
        (folder / f"{new_key}{suffix}").write_bytes((folder / f"{old_key}{suffix}").read_bytes())
    with pytest.warns(RuntimeWarning, match=r"learner.version='1' \(expected '2'\)"):
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2


def test_entry_without_a_record_of_its_key_is_refused(task: CleaningTask, tmp_path: Path) -> None:
    _, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    path = tmp_path / "counting" / f"{key}.npz"
    to_legacy(path)
    path.with_suffix(".json").unlink()
    with pytest.warns(RuntimeWarning, match="records no key"):
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert len(CountingLearner.calls) == 2


def test_legacy_entry_with_a_matching_sidecar_is_a_clean_hit(task: CleaningTask, tmp_path: Path) -> None:
    first, key = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    to_legacy(tmp_path / "counting" / f"{key}.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert CountingLearner.calls == [0]
    np.testing.assert_array_equal(again.probs, first.probs)


def test_legacy_entry_whose_sidecar_names_another_key_is_refused(task: CleaningTask, tmp_path: Path) -> None:
    _, key0 = load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    _, key1 = load_or_fit(task, CountingLearner(), 1, cache_dir=tmp_path)
    folder = tmp_path / "counting"
    to_legacy(folder / f"{key1}.npz")
    for suffix in (".npz", ".json"):
        (folder / f"{key0}{suffix}").write_bytes((folder / f"{key1}{suffix}").read_bytes())
    with pytest.warns(RuntimeWarning, match=f"sidecar records key {key1}"):
        load_or_fit(task, CountingLearner(), 0, cache_dir=tmp_path)
    assert CountingLearner.calls == [0, 1, 0]


def test_bad_entry_and_absent_images_name_both(task: CleaningTask, tmp_path: Path) -> None:
    from benchmark.dataroot import DataNotFoundError

    class NeedsImages(CountingLearner):
        name = "needs_images"

        def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
            raise DataNotFoundError("CIFAR-10 test images not found. Looked for: /nowhere/test_batch")

    probs = np.full((8, 3), 1 / 3)
    probs[0, 0] = np.nan
    path = write_entry(tmp_path, task, NeedsImages(), 0, probs)
    with pytest.warns(RuntimeWarning), pytest.raises(DataNotFoundError) as err:
        load_or_fit(task, NeedsImages(), 0, cache_dir=tmp_path)
    message = str(err.value)
    assert str(path) in message and "NaN" in message
    assert "/nowhere/test_batch" in message


def test_learner_returning_invalid_posteriors_fails_and_stores_nothing(
    task: CleaningTask, tmp_path: Path
) -> None:
    from benchmark.posteriors.files import PosteriorsError

    class Broken(CountingLearner):
        name = "broken"

        def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
            return Posteriors(probs=np.full((task.n_samples, task.n_classes), np.nan, dtype=np.float32))

    with pytest.raises(PosteriorsError, match="broken.fit_predict probs: expected finite"):
        load_or_fit(task, Broken(), 0, cache_dir=tmp_path)
    assert files_under(tmp_path) == []


# --------------------------------------------------------------------------- image source


def with_source(task: CleaningTask, source: str | None, default: str | None = "jpeg") -> CleaningTask:
    return dataclasses.replace(task, info={"image_source": source, "image_source_default": default})


def test_key_names_the_image_source_only_when_it_is_not_the_default(task: CleaningTask) -> None:
    learner = CountingLearner()
    legacy = cache_key(task, learner, 0)
    assert cache_key(with_source(task, "jpeg"), learner, 0) == legacy
    assert cache_key(with_source(task, None), learner, 0) == legacy
    lossless = cache_key(with_source(task, "torchvision"), learner, 0)
    assert lossless != legacy
    assert cache_key(with_source(task, "torchvision", default=None), learner, 0) == lossless


def test_fit_that_settles_its_image_source_is_stored_under_that_sources_key(
    task: CleaningTask, tmp_path: Path
) -> None:
    class Downloads(CountingLearner):
        """Finds no images, downloads the lossless copy, and the task then says so."""

        name = "downloads"

        def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
            task.info["image_source"] = "torchvision"
            return super().fit_predict(task, seed=seed, progress=progress)

    before = with_source(task, None)
    default_key = cache_key(before, Downloads(), 0)
    _, key = load_or_fit(before, Downloads(), 0, cache_dir=tmp_path)
    assert key == cache_key(with_source(task, "torchvision"), Downloads(), 0) != default_key
    assert files_under(tmp_path) == [f"downloads/{key}.json", f"downloads/{key}.npz"]


def shipped_entries() -> list[Path]:
    from benchmark.registry import PROJECT_ROOT

    return sorted((PROJECT_ROOT / "results" / "posteriors").glob("*/*.npz"))


@pytest.mark.parametrize("with_images", [False, True], ids=["no-images", "jpeg-images"])
def test_shipped_posteriors_are_valid_hits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, with_images: bool
) -> None:
    from benchmark import registry
    from benchmark.posteriors.cache import fetch

    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data_root = request.getfixturevalue("data_root") if with_images else None
    entries = [  # smallcnn's default (out-of-fold) entries: T=2 and T=10, seeds 0-4
        p
        for p in shipped_entries()
        if p.parent.name == "smallcnn"
        and json.loads(p.with_suffix(".json").read_text())["inputs"]["learner"]["params"]["posteriors"]
        == "oof"
    ]
    assert len(entries) == 10
    for path in entries:
        inputs = json.loads(path.with_suffix(".json").read_text())["inputs"]
        task = registry.create("dataset", inputs["task"]["name"]).load(data_root)
        assert task.info["image_source"] == ("jpeg" if with_images else None)
        learner = registry.create("learner", inputs["learner"]["name"])

        def no_fit(*args: Any, **kwargs: Any) -> Posteriors:
            raise AssertionError("fitted")

        monkeypatch.setattr(learner, "fit_predict", no_fit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            found = fetch(
                task,
                learner,
                inputs["seed"],
                cache_dir=tmp_path / "empty",
                extra_cache_dirs=[path.parents[1]],
            )
        assert found.key == path.stem and found.path == path and not found.fitted
        assert found.posteriors.stochastic is not None and found.posteriors.stochastic.shape == (10, 5000, 10)
    assert not (tmp_path / "empty").exists()


def test_cifar10h_image_source_is_the_file_it_would_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark import registry

    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "root"
    learner = registry.create("learner", "smallcnn")
    spec = "cifar10h"

    def load() -> CleaningTask:  # the files hold no images: finding them must not read them
        return registry.create("dataset", spec).load(root)

    none = load()
    assert none.info["image_source"] is None
    (root / "cifar10").mkdir(parents=True)
    (root / "cifar10" / "cifar10_test_from_jpeg.npz").write_bytes(b"not read")
    jpeg = load()
    assert jpeg.info["image_source"] == "jpeg"
    (root / "cifar-10-batches-py").mkdir()
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not read")
    lossless = load()
    assert lossless.info["image_source"] == "torchvision"
    keys = [cache_key(t, learner, 0) for t in (none, jpeg, lossless)]
    assert keys[0] == keys[1] != keys[2]
    assert keys[1] in {path.stem for path in shipped_entries()}


def test_two_processes_asking_for_the_same_fit_at_once_compute_it_once(tmp_path):
    """Workers sharing a cache folder (cluster workers on a network file system, or two
    commands side by side): the second waits for the first's fit and reads its entry."""
    import os
    import subprocess
    import sys
    import textwrap

    plugins = tmp_path / "plugins" / "learners"
    plugins.mkdir(parents=True)
    (plugins / "slowfit.py").write_text(
        textwrap.dedent("""
        import os, time
        import numpy as np
        from benchmark.plugins import Learner, Posteriors

        class SlowFit(Learner):
            name = "slowfit"
            description = "Takes a second and logs every fit."
            needs_images = False

            def fit_predict(self, task, *, seed, progress=True):
                with open(os.environ["FIT_LOG"], "a") as log:
                    log.write(f"{os.getpid()}\\n")
                time.sleep(1.5)
                return Posteriors(probs=np.full((task.n_samples, task.n_classes), 1.0 / task.n_classes))
        """)
    )
    env = {
        **os.environ,
        "ALCBENCH_PLUGIN_PATH": str(tmp_path / "plugins"),
        "FIT_LOG": str(tmp_path / "fits.log"),
    }
    command = [sys.executable, "-m", "benchmark.cli", "fit", "--dataset", "cifar10h[n=50]",
               "--learner", "slowfit", "--cache", str(tmp_path / "cache")]  # fmt: skip
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert len((tmp_path / "fits.log").read_text().splitlines()) == 1
    said = " ".join(out for out, _ in outputs)
    assert "fitted, stored in" in said and "cached in" in said
