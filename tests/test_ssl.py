"""The ``ssl`` learner: a BYOL encoder pretrained once per set of images, and a NumPy linear head.

Pretraining is kept tiny (an 8-wide encoder, 2 epochs of 16x16 images): about a second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark import registry
from benchmark.learners._linear_head import predict_head, train_head
from benchmark.learners._ssl_encoder import SCALES, BadEncoderError, encoder_inputs, read_encoder
from benchmark.learners.ssl import SelfSupervised
from benchmark.plugins import Posteriors
from benchmark.posteriors.cache import CACHE_DIRS_ENV
from benchmark.task import CleaningTask
from benchmark.threads import THREADS_ENV

N_PER_CLASS, N_CLASSES, SIZE = 32, 3, 16
FAST: dict[str, Any] = {
    "width": 8,
    "pretrain_epochs": 2,
    "pretrain_batch": 32,
    "head_epochs": 30,
    "mc_samples": 5,
}
FLIPPED = np.array([0, 5, 40, 77])
TESTS = Path(__file__).resolve().parent


def colour_task(seed: int = 0, flipped: np.ndarray = FLIPPED) -> CleaningTask:
    """Class c is a noisy image whose channel c is bright; the labels of ``flipped`` are wrong."""
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(N_CLASSES), N_PER_CLASS)
    rng.shuffle(true)
    images = rng.integers(0, 90, size=(true.size, SIZE, SIZE, 3))
    images[np.arange(true.size), :, :, true] += 150
    images = images.astype(np.uint8)
    noisy = true.copy()
    noisy[flipped] = (noisy[flipped] + 1 + seed % 2) % N_CLASSES
    return CleaningTask(
        name="colours",
        true_dist=np.eye(N_CLASSES)[true],
        noisy_labels=noisy,
        class_names=("red", "green", "blue"),
        load_images=lambda: images,
    )


def use_dirs(monkeypatch: pytest.MonkeyPatch, root: Path) -> tuple[Path, Path]:
    """Makes ``root/write`` the cache folder written and ``root/read`` one read (as the command
    line does); returns their encoder folders. Fits use one thread: the tests' networks are too
    small to gain from two, and lose much on a CPU shared with other work."""
    monkeypatch.setenv(CACHE_DIRS_ENV, os.pathsep.join([str(root / "write"), str(root / "read")]))
    monkeypatch.setenv(THREADS_ENV, "1")
    return root / "write" / "ssl" / "encoders", root / "read" / "ssl" / "encoders"


def count_pretraining(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gains an entry each time an encoder is pretrained."""
    from benchmark.learners import _ssl_net

    calls: list[int] = []
    real = _ssl_net.pretrain

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_ssl_net, "pretrain", counted)
    return calls


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Artifact folders holding the tiny encoder of the colour images, pretrained once here."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as mp:
        use_dirs(mp, folder)
        SelfSupervised(**FAST).fit_predict(colour_task(), seed=0, progress=False)
        yield folder


@pytest.fixture
def encoders(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's encoder folder, in use for this test."""
    return use_dirs(monkeypatch, root)[0]


@pytest.fixture
def fitted(encoders: Path) -> Posteriors:
    return SelfSupervised(**FAST).fit_predict(colour_task(), seed=0, progress=False)


# ----------------------------------------------------------------------------- plugin


def test_registered_as_a_builtin_learner() -> None:
    assert registry.get("learner", "ssl") is SelfSupervised
    assert isinstance(registry.create("learner", "ssl[scale=paper]"), SelfSupervised)


def test_bad_scale_or_mode_is_refused_when_named() -> None:
    with pytest.raises(ValueError, match="scale='gpu' must be one of cpu, paper"):
        SelfSupervised(scale="gpu")
    with pytest.raises(ValueError, match="posteriors"):
        SelfSupervised(posteriors="both")


def test_zero_pretraining_settings_take_the_scales_values() -> None:
    cpu = SelfSupervised().pretrain_settings()
    paper = SelfSupervised(scale="paper").pretrain_settings()
    assert (cpu.feature_dim, cpu.batch_size, cpu.epochs) == (
        128,
        SCALES["cpu"]["batch_size"],
        SCALES["cpu"]["epochs"],
    )
    assert (paper.feature_dim, paper.batch_size, paper.epochs) == (2048, 512, 2500)
    assert SelfSupervised(pretrain_epochs=7).pretrain_settings().epochs == 7


def test_the_encoder_key_ignores_the_head_and_depends_on_images_and_pretraining() -> None:
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    base = encoder_inputs(images, SelfSupervised().pretrain_settings())
    head_only = SelfSupervised(head_epochs=3, dropout=0.5, mc_samples=2, folds=5, posteriors="oof")
    assert encoder_inputs(images, head_only.pretrain_settings()) == base
    assert encoder_inputs(images, SelfSupervised(pretrain_seed=1).pretrain_settings()) != base
    assert encoder_inputs(images + 1, SelfSupervised().pretrain_settings()) != base


# ----------------------------------------------------------------------------- the head


def gaussian_features(n: int = 600, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, d)) * 3
    return (centres[labels] + rng.normal(size=(n, d)) + 50).astype(np.float32), labels


def test_the_head_separates_gaussian_classes() -> None:
    x, y = gaussian_features()
    head = train_head(x, y, 4, epochs=20, lr=0.01, weight_decay=1e-3, dropout=0.2, seed=0)
    probs, stochastic = predict_head(head, x, mc_samples=10, seed=0)
    assert np.mean(probs.argmax(axis=1) == y) > 0.97
    assert probs.dtype == np.float32 and stochastic is not None and stochastic.shape == (10, 600, 4)
    np.testing.assert_allclose(probs, stochastic.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_head_is_seeded() -> None:
    x, y = gaussian_features()

    def fit(seed: int) -> np.ndarray:
        head = train_head(x, y, 4, epochs=3, lr=0.01, weight_decay=1e-3, dropout=0.2, seed=seed)
        return predict_head(head, x, mc_samples=3, seed=seed)[0]

    np.testing.assert_array_equal(fit(0), fit(0))
    assert not np.array_equal(fit(0), fit(1))


def test_without_mc_samples_the_head_predicts_deterministically() -> None:
    x, y = gaussian_features()
    head = train_head(x, y, 4, epochs=2, lr=0.01, weight_decay=1e-3, dropout=0.2, seed=0)
    probs, stochastic = predict_head(head, x, mc_samples=0, seed=0)
    assert stochastic is None and probs.shape == (600, 4)


# ----------------------------------------------------------------------------- the learner


def test_posteriors_are_float32_distributions_with_mc_samples(fitted: Posteriors) -> None:
    n = N_PER_CLASS * N_CLASSES
    assert fitted.probs.shape == (n, N_CLASSES) and fitted.probs.dtype == np.float32
    assert fitted.stochastic is not None and fitted.stochastic.shape == (FAST["mc_samples"], n, N_CLASSES)
    np.testing.assert_allclose(fitted.probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(fitted.stochastic[0] - fitted.stochastic[1]).max() > 1e-4


def test_learns_the_classes_far_above_chance(fitted: Posteriors) -> None:
    task = colour_task()
    assert np.mean(fitted.probs.argmax(axis=1) == task.true_labels) > 0.8  # chance: 1/3
    assert fitted.info is not None and fitted.info["posteriors"] == "insample"


def test_same_seed_gives_bitwise_identical_posteriors(fitted: Posteriors) -> None:
    again = SelfSupervised(**FAST).fit_predict(colour_task(), seed=0, progress=False)
    np.testing.assert_array_equal(again.probs, fitted.probs)
    np.testing.assert_array_equal(again.stochastic, fitted.stochastic)


def test_another_seed_gives_other_posteriors(fitted: Posteriors) -> None:
    other = SelfSupervised(**FAST).fit_predict(colour_task(), seed=1, progress=False)
    assert not np.array_equal(other.probs, fitted.probs)


def test_the_encoder_is_pretrained_once_for_every_seed_and_label_set(
    encoders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_pretraining(monkeypatch)
    first = SelfSupervised(**FAST).fit_predict(colour_task(seed=1), seed=4, progress=False)
    second = SelfSupervised(**{**FAST, "posteriors": "oof"}).fit_predict(colour_task(seed=2), seed=5)
    assert calls == []
    assert first.info is not None and second.info is not None
    assert first.info["encoder_pretrained"] is False
    assert first.info["encoder_key"] == second.info["encoder_key"]


def test_oof_mode_cross_fits_the_heads(encoders: Path, fitted: Posteriors) -> None:
    oof = SelfSupervised(**{**FAST, "posteriors": "oof", "folds": 3}).fit_predict(colour_task(), seed=0)
    assert oof.info is not None and oof.info["folds"] == 3 and "holdout_accuracy_noisy" in oof.info
    assert not np.array_equal(oof.probs, fitted.probs)
    np.testing.assert_allclose(oof.probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_encoder_file_holds_features_weights_and_a_sidecar(encoders: Path) -> None:
    (path,) = encoders.glob("*.npz")
    with np.load(path) as z:
        assert z["features"].dtype == np.float16 and z["features"].shape == (96, 4 * FAST["width"])
        assert any(name.startswith("weights/") for name in z.files)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["key"] == path.stem and record["epochs"] == FAST["pretrain_epochs"]
    assert np.isfinite(record["final_loss"]) and record["seconds"] > 0 and record["created"]
    assert not path.with_suffix(".partial.pt").exists()


def test_a_file_of_the_wrong_shape_is_refused(encoders: Path) -> None:
    (path,) = encoders.glob("*.npz")
    inputs = json.loads(path.with_suffix(".json").read_text())["inputs"]
    with pytest.raises(BadEncoderError, match=r"shape \(96, 32\), not \(95, 32\)"):
        read_encoder(path, path.stem, inputs, (95, 32))
    with pytest.raises(BadEncoderError, match="records key"):
        read_encoder(path, "0" * 20, inputs, (96, 32))


def test_a_corrupt_encoder_file_is_reported_and_pretrained_again(
    encoders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write, read = use_dirs(monkeypatch, tmp_path)
    (good,) = encoders.glob("*.npz")
    read.mkdir(parents=True)
    (read / good.name).write_bytes(b"not an npz file")
    calls = count_pretraining(monkeypatch)
    with pytest.warns(RuntimeWarning, match=f"{read / good.name}: bad encoder file"):
        post = SelfSupervised(**FAST).fit_predict(colour_task(), seed=0, progress=False)
    assert calls == [1] and post.info is not None and post.info["encoder_pretrained"] is True
    with np.load(write / good.name) as fresh, np.load(good) as original:
        np.testing.assert_array_equal(fresh["features"], original["features"])


def test_an_interrupted_pretraining_resumes_to_the_same_encoder(
    encoders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.learners import _ssl_net

    write, _ = use_dirs(monkeypatch, tmp_path)
    monkeypatch.setattr(_ssl_net, "CHECKPOINT_SECONDS", 0.0)

    class Interrupted(Exception):
        pass

    def interrupt(self: SelfSupervised, epoch: int, loss: float) -> None:
        raise Interrupted(epoch)

    with monkeypatch.context() as mp:
        mp.setattr(SelfSupervised, "pretrain_epoch_done", interrupt)
        with pytest.raises(Interrupted):
            SelfSupervised(**FAST).fit_predict(colour_task(), seed=0, progress=False)
    (good,) = encoders.glob("*.npz")
    assert (write / f"{good.stem}.partial.pt").exists() and not (write / good.name).exists()
    SelfSupervised(**FAST).fit_predict(colour_task(), seed=0, progress=False)
    assert json.loads((write / f"{good.stem}.json").read_text())["resumed_from_epoch"] == 1
    assert not (write / f"{good.stem}.partial.pt").exists()
    with np.load(write / good.name) as resumed, np.load(good) as uninterrupted:
        np.testing.assert_array_equal(resumed["features"], uninterrupted["features"])
        for name in uninterrupted.files:
            np.testing.assert_array_equal(resumed[name], uninterrupted[name])


# ----------------------------------------------------------------------------- re-fits


@pytest.mark.parametrize("mode", ["insample", "oof"])
def test_a_refit_on_the_same_labels_reproduces_the_fit(encoders: Path, mode: str) -> None:
    task = colour_task()
    learner = SelfSupervised(**{**FAST, "posteriors": mode})
    fit = learner.fit_predict(task, seed=3, progress=False)
    refit = SelfSupervised(**{**FAST, "posteriors": mode}).refit(task, task.noisy_labels, seed=3)
    np.testing.assert_array_equal(refit.probs, fit.probs)
    np.testing.assert_array_equal(refit.stochastic, fit.stochastic)


def test_a_refit_trains_only_the_head_and_follows_the_new_labels(
    encoders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = colour_task()
    assert task.load_images is not None
    images, loads = task.load_images(), []

    def load() -> np.ndarray:
        loads.append(1)
        return images

    counted = dataclasses.replace(task, load_images=load)
    calls = count_pretraining(monkeypatch)
    # the re-fit fine-tunes the fit's head; 96 samples make 2 steps an epoch, so as many epochs
    # as the fit's (the default 10 are sized for thousands of samples)
    learner = SelfSupervised(**FAST, refit_epochs=FAST["head_epochs"])
    before = learner.refit(counted, task.noisy_labels, seed=0)
    # the flipped samples get their true labels back, and a dozen others a wrong one
    moved = np.arange(10, 22)
    labels = task.true_labels.copy()
    labels[moved] = (labels[moved] + 1) % N_CLASSES
    after = learner.refit(counted, labels, seed=0)
    assert calls == [] and loads == [1]  # no pretraining; the images are read once
    fixed = task.true_labels[FLIPPED]
    assert after.probs[FLIPPED, fixed].mean() > before.probs[FLIPPED, fixed].mean()
    assert after.probs[moved, labels[moved]].mean() > before.probs[moved, labels[moved]].mean()
    assert after.info is not None
    assert after.info["accuracy_true"] == pytest.approx(np.mean(after.probs.argmax(1) == task.true_labels))


def test_a_cached_fit_and_refit_need_no_torch(encoders: Path, tmp_path: Path) -> None:
    """In a fresh interpreter where ``import torch`` fails: the head trains on stored features;
    a fit whose encoder is missing stops with the error naming the extra to install."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["torch"] = None
        sys.modules["torchvision"] = None
        sys.path.insert(0, {str(TESTS)!r})
        from test_ssl import FAST, colour_task
        from benchmark.learners._torch import MissingExtraError
        from benchmark.learners.ssl import SelfSupervised

        task = colour_task()
        learner = SelfSupervised(**FAST)
        fit = learner.fit_predict(task, seed=0, progress=False)
        refit = learner.refit(task, task.true_labels, seed=0)
        try:
            SelfSupervised(**{{**FAST, "pretrain_seed": 9}}).fit_predict(task, seed=0, progress=False)
            missing = None
        except MissingExtraError as exc:
            missing = str(exc)
        print(json.dumps({{
            "pretrained": fit.info["encoder_pretrained"],
            "refit_accuracy": refit.info["accuracy_true"],
            "missing": missing,
            "torch": [m for m, v in sys.modules.items() if m.split(".")[0] == "torch" and v is not None],
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["pretrained"] is False and out["refit_accuracy"] > 0.8 and out["torch"] == []
    assert out["missing"] is not None and "pip install" in out["missing"]


# ----------------------------------------------------------------------------- networks


def test_the_paper_encoder_is_a_resnet50_with_a_3x3_stem() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from benchmark.learners._ssl_net import build_encoder

    settings = SelfSupervised(scale="paper").pretrain_settings()
    encoder = build_encoder(settings, 3).eval()
    stem = encoder.get_submodule("conv1")
    assert isinstance(stem, torch.nn.Conv2d) and (stem.kernel_size, stem.stride) == ((3, 3), (1, 1))
    assert isinstance(encoder.get_submodule("maxpool"), torch.nn.Identity)
    with torch.no_grad():
        assert encoder(torch.zeros(2, 3, 32, 32)).shape == (2, settings.feature_dim)


def test_augmented_views_are_seeded_and_keep_the_shape() -> None:
    torch = pytest.importorskip("torch")
    from benchmark.learners._ssl_net import augment

    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    one = augment(x, torch.Generator().manual_seed(1), mean, std)
    again = augment(x, torch.Generator().manual_seed(1), mean, std)
    other = augment(x, torch.Generator().manual_seed(2), mean, std)
    assert one.shape == x.shape and torch.equal(one, again) and not torch.equal(one, other)


def test_a_refit_without_the_images_uses_the_encoder_indexed_for_those_samples(
    encoders: Path, fitted: Posteriors
) -> None:
    from benchmark.dataroot import DataNotFoundError

    def absent() -> np.ndarray:
        raise DataNotFoundError("images not here")

    task = colour_task()
    expected = SelfSupervised(**FAST).refit(task, task.noisy_labels, seed=0)
    assert (encoders / "index.json").exists()
    without = dataclasses.replace(task, load_images=absent)
    found = SelfSupervised(**FAST).refit(without, without.noisy_labels, seed=0)
    np.testing.assert_array_equal(found.probs, expected.probs)
    other = dataclasses.replace(without, sample_ids=np.arange(task.n_samples) + 1)  # other samples
    with pytest.raises(DataNotFoundError, match="images not here"):
        SelfSupervised(**FAST).refit(other, other.noisy_labels, seed=0)
