"""The CIFAR-10H adapter reproduces the paper's subset and noise exactly.

Counts ship with the adapter (datasets/data); only the image tests use the shared data root.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from benchmark import registry
from benchmark.dataroot import DataNotFoundError
from benchmark.task import CleaningTask

COUNTS = Path(__file__).resolve().parent.parent / "datasets" / "data" / "cifar10h-counts.npy"


def isolated_env(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """No $ALCBENCH_DATA and an empty user cache, so only what the test names is found."""
    mp.delenv("ALCBENCH_DATA", raising=False)
    mp.setenv("XDG_CACHE_HOME", str(tmp / "xdg-cache"))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CleaningTask]:
    with pytest.MonkeyPatch.context() as mp:
        isolated_env(mp, tmp_path_factory.mktemp("env"))
        return {
            spec: registry.create("dataset", spec).load()
            for spec in ("cifar10h", "cifar10h[temperature=10]", "cifar10h[n=10000]")
        }


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    return np.load(COUNTS)


def ambiguous_indices(counts: np.ndarray) -> np.ndarray:
    """Images whose annotation entropy exceeds 0.3 log 10, computed without any epsilon."""
    p = counts / counts.sum(axis=1, keepdims=True)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.nonzero(-plogp.sum(axis=1) / np.log(10) > 0.3)[0]


def test_paper_subset_has_5000_unique_images_including_all_454_ambiguous(tasks, counts):
    ids = tasks["cifar10h"].sample_ids
    ambiguous = ambiguous_indices(counts)
    assert ambiguous.size == 454
    assert ids.shape == (5000,) and np.unique(ids).size == 5000
    assert np.isin(ambiguous, ids).all()
    assert tasks["cifar10h"].ambiguous.sum() == 454


def test_full_set_is_a_permutation_of_all_10000_images(tasks):
    ids = tasks["cifar10h[n=10000]"].sample_ids
    assert sorted(ids.tolist()) == list(range(10_000))
    assert ids.tolist() != list(range(10_000))


@pytest.mark.parametrize(
    ("spec", "mislabelled", "n"),
    [
        ("cifar10h", 769, 5000),  # 15.38 % at T=2
        ("cifar10h[temperature=10]", 1485, 5000),  # 29.70 % at T=10
        ("cifar10h[n=10000]", 1315, 10_000),  # 13.15 % on all images at T=2
    ],
)
def test_noise_rate_is_exactly_the_paper_s(tasks, spec, mislabelled, n):
    task = tasks[spec]
    assert task.n_samples == n
    assert task.initially_mislabelled == mislabelled
    assert task.noise_rate == pytest.approx(mislabelled / n, abs=0)


def test_true_distribution_is_normalised_annotation_counts(tasks, counts):
    task = tasks["cifar10h"]
    rows = counts[task.sample_ids]
    np.testing.assert_allclose(task.true_dist, rows / rows.sum(axis=1, keepdims=True))


def test_true_label_is_the_plurality_vote_of_the_counts(tasks, counts):
    task = tasks["cifar10h"]
    np.testing.assert_array_equal(task.true_labels, np.argmax(counts[task.sample_ids], axis=1))


def test_budget_is_four_times_the_mislabelled_images(tasks):
    assert tasks["cifar10h"].budget == 4 * 769


def test_noisy_labels_are_the_same_on_every_load(tasks, tmp_path, monkeypatch):
    isolated_env(monkeypatch, tmp_path)
    again = registry.create("dataset", "cifar10h").load()
    np.testing.assert_array_equal(again.noisy_labels, tasks["cifar10h"].noisy_labels)
    np.testing.assert_array_equal(again.sample_ids, tasks["cifar10h"].sample_ids)


def test_images_load_in_subset_order(data_root, tmp_path, monkeypatch):
    isolated_env(monkeypatch, tmp_path)
    task = registry.create("dataset", "cifar10h").load(data_root)
    assert task.load_images is not None
    images = task.load_images()
    assert images.shape == (5000, 32, 32, 3) and images.dtype == np.uint8
    with np.load(data_root / "cifar10" / "cifar10_test_from_jpeg.npz") as z:
        reference, official_labels = z["images"], z["labels"]
    for k in (0, 1, 2, 2500, 4999):
        np.testing.assert_array_equal(images[k], reference[task.sample_ids[k]])
    np.testing.assert_array_equal(images, reference[task.sample_ids])
    # The CIFAR-10H plurality vote agrees with the official test labels for ~99 % of images.
    assert np.mean(official_labels[task.sample_ids] == task.true_labels) > 0.98


def test_missing_images_offline_raise_error_listing_every_path_looked_at(tmp_path, monkeypatch):
    root, env_root, cache = tmp_path / "root", tmp_path / "env-data", tmp_path / "xdg-cache"
    for folder in (root, env_root, cache):
        folder.mkdir()
    monkeypatch.setenv("ALCBENCH_DATA", str(env_root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))

    def offline_download(*args, **kwargs):
        raise OSError("network unreachable")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=offline_download)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)

    task = registry.create("dataset", "cifar10h").load(root)
    assert task.load_images is not None
    with pytest.raises(DataNotFoundError) as err:
        task.load_images()
    message = str(err.value)
    for base in (root, env_root, cache / "alcbench" / "data"):
        assert str(base / "cifar-10-batches-py" / "test_batch") in message
        assert str(base / "cifar10" / "cifar10_test_from_jpeg.npz") in message
    assert "network unreachable" in message
    assert "torchvision" in message  # how to get the images


def test_corrupt_image_file_raises_error_naming_the_file(tmp_path, monkeypatch):
    isolated_env(monkeypatch, tmp_path)
    corrupt = tmp_path / "root" / "cifar10" / "cifar10_test_from_jpeg.npz"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not a zip file")
    task = registry.create("dataset", "cifar10h").load(tmp_path / "root")
    assert task.load_images is not None
    with pytest.raises(ValueError, match="cannot read CIFAR-10 test images") as err:
        task.load_images()
    assert str(corrupt) in str(err.value)


class _RunsCode:
    """Unpickling this makes the folder ``marker``: a pickle that executes code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.mkdir, (str(self.marker),))


def _cifar10h_module() -> types.ModuleType:
    return sys.modules[registry.get("dataset", "cifar10h").__module__]


@pytest.mark.parametrize("content", ["code", "random"])
def test_a_test_batch_that_is_not_the_official_file_is_never_unpickled(tmp_path, monkeypatch, content):
    import hashlib
    import pickle

    isolated_env(monkeypatch, tmp_path)
    marker = tmp_path / "unpickled"
    batch = tmp_path / "root" / "cifar-10-batches-py" / "test_batch"
    batch.parent.mkdir(parents=True)
    if content == "code":
        batch.write_bytes(pickle.dumps({b"data": _RunsCode(marker)}))
    else:
        batch.write_bytes(np.random.default_rng(0).bytes(4096))
    digest = hashlib.md5(batch.read_bytes()).hexdigest()
    task = registry.create("dataset", "cifar10h").load(tmp_path / "root")
    assert task.load_images is not None
    with pytest.raises(ValueError, match="not the official CIFAR-10 test_batch") as err:
        task.load_images()
    message = str(err.value)
    assert str(batch) in message
    assert digest in message and "40351d587109b95175f43aff81a1287e" in message
    assert not marker.exists()


def test_a_test_batch_with_the_official_md5_is_read(tmp_path, monkeypatch):
    import hashlib
    import pickle

    isolated_env(monkeypatch, tmp_path)
    images = np.random.default_rng(1).integers(0, 256, size=(10_000, 3, 32, 32), dtype=np.uint8)
    batch = tmp_path / "root" / "cifar-10-batches-py" / "test_batch"
    batch.parent.mkdir(parents=True)
    batch.write_bytes(pickle.dumps({b"data": images.reshape(10_000, -1), b"labels": [0] * 10_000}))
    module = _cifar10h_module()
    monkeypatch.setattr(module, "TEST_BATCH_MD5", hashlib.md5(batch.read_bytes()).hexdigest())
    loaded = module.load_test_images(tmp_path / "root")
    np.testing.assert_array_equal(loaded, images.transpose(0, 2, 3, 1))
