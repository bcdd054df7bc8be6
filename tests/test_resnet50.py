"""The chest X-ray learner: a cross-fitted ResNet-50, exercised on tiny greyscale images."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import registry
from benchmark.dataroot import DataNotFoundError
from benchmark.learners.resnet50 import ResNet50
from benchmark.plugins import Posteriors
from benchmark.task import CleaningTask

torch = pytest.importorskip("torch")

from benchmark.learners._resnet50_net import (  # noqa: E402 (the learner's torch code)
    XRayResNet50,
    augment,
    balanced_sampler,
    channel_stats,
    load_encoder,
    resize_images,
)

SIZE = 32
#: Tiny enough that a 2-fold fit of ResNet-50 takes a few seconds on a 2-core CPU.
FAST = {"image_size": SIZE, "crop": 28, "epochs": 1, "batch_size": 8, "folds": 2}


def disc_or_square_task(n: int = 24, seed: int = 0) -> CleaningTask:
    """Class 0: a bright disc on grey; class 1: a dark square. Greyscale (N, H, W) uint8."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 4) ** 2
    square = (abs(yy - SIZE / 2) < SIZE / 4) & (abs(xx - SIZE / 2) < SIZE / 4)
    images = rng.integers(100, 140, size=(n, SIZE, SIZE))
    images[labels == 0] = np.where(disc, 230, images[labels == 0])
    images[labels == 1] = np.where(square, 20, images[labels == 1])
    images = images.astype(np.uint8)
    return CleaningTask(
        name="disc-or-square",
        true_dist=np.eye(2)[labels],
        noisy_labels=labels,
        class_names=("disc", "square"),
        load_images=lambda: images,
    )


@pytest.fixture(scope="module")
def task() -> CleaningTask:
    return disc_or_square_task()


@pytest.fixture(scope="module")
def fitted(task: CleaningTask) -> Posteriors:
    return ResNet50(**FAST).fit_predict(task, seed=0, progress=False)


def test_registered_as_a_builtin_learner() -> None:
    assert registry.get("learner", "resnet50") is ResNet50
    learner = registry.create("learner", "resnet50[epochs=2]")
    assert isinstance(learner, ResNet50) and learner.params["epochs"] == 2


def test_every_parameter_has_one_default() -> None:
    assert all(len(values) == 1 for values in ResNet50.parameters.values())
    required = {
        "epochs",
        "image_size",
        "crop",
        "batch_size",
        "lr",
        "weight_decay",
        "folds",
        "mc_samples",
        "init",
    }
    assert required <= set(ResNet50.parameters)
    assert ResNet50.parameters["init"] == [None]  # from scratch unless an encoder file is given


def test_parameters_and_version_are_those_the_posterior_cache_keys_hash() -> None:
    assert ResNet50().params == {
        "epochs": 20,
        "image_size": 256,
        "crop": 224,
        "batch_size": 32,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "folds": 2,
        "mc_samples": 0,
        "dropout": 0.0,
        "init": None,
        "bf16": True,
    }
    assert ResNet50.version == "1"


def test_bad_configuration_is_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match=r"learner resnet50: crop=64 must lie in 1\.\.image_size=32"):
        _ = ResNet50(**{**FAST, "crop": 64}).config
    with pytest.raises(ValueError, match=r"learner resnet50: epochs=x is not allowed \(not an integer\)"):
        _ = ResNet50(epochs="x").config


def test_posteriors_are_distributions_over_the_classes(task: CleaningTask, fitted: Posteriors) -> None:
    assert fitted.probs.shape == (task.n_samples, task.n_classes) and fitted.probs.dtype == np.float32
    assert np.isfinite(fitted.probs).all() and (fitted.probs >= 0).all()
    np.testing.assert_allclose(fitted.probs.sum(axis=1), 1.0, atol=1e-5)
    assert fitted.stochastic is None  # mc_samples=0 by default


def test_info_reports_accuracies_time_and_device(fitted: Posteriors) -> None:
    info = fitted.info or {}
    for key in ("holdout_accuracy_noisy", "accuracy_true", "seconds", "device"):
        assert key in info
    assert 0.0 <= info["holdout_accuracy_noisy"] <= 1.0 and info["device"] in ("cpu", "cuda")


def test_same_seed_gives_bitwise_identical_posteriors(task: CleaningTask, fitted: Posteriors) -> None:
    again = ResNet50(**FAST).fit_predict(task, seed=0, progress=False)
    np.testing.assert_array_equal(again.probs, fitted.probs)


def test_mc_dropout_gives_stochastic_posteriors(task: CleaningTask) -> None:
    out = ResNet50(**FAST, mc_samples=3, dropout=0.5).fit_predict(task, seed=1, progress=False)
    assert out.stochastic is not None and out.stochastic.shape == (3, task.n_samples, task.n_classes)
    np.testing.assert_allclose(out.stochastic.sum(axis=2), 1.0, atol=1e-5)
    assert not np.array_equal(out.stochastic[0], out.stochastic[1])


def test_mc_samples_without_dropout_is_refused(task: CleaningTask) -> None:
    with pytest.raises(ValueError, match="dropout"):
        ResNet50(**FAST, mc_samples=3).fit_predict(task, seed=0, progress=False)


def test_crop_larger_than_the_image_is_refused(task: CleaningTask) -> None:
    with pytest.raises(ValueError, match="crop"):
        ResNet50(**{**FAST, "crop": 64}).fit_predict(task, seed=0, progress=False)


@pytest.mark.slow
def test_learns_an_easy_task_out_of_sample() -> None:
    task = disc_or_square_task(n=64)
    out = ResNet50(**{**FAST, "epochs": 8, "lr": 1e-3}).fit_predict(task, seed=0, progress=False)
    assert (out.info or {})["accuracy_true"] >= 0.8


# ----------------------------------------------------------------------------- sampling


def test_balanced_sampler_draws_a_minority_class_as_often_as_the_majority() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    sampler = balanced_sampler(labels, num_samples=20_000, generator=torch.Generator().manual_seed(0))
    drawn = labels[np.fromiter(iter(sampler), dtype=np.int64)]
    assert len(drawn) == 20_000
    assert abs(np.mean(drawn == 1) - 0.5) < 0.02


def test_balanced_sampler_is_seeded() -> None:
    labels = np.array([0] * 30 + [1] * 5 + [2] * 15)

    def draw(seed: int) -> list[int]:
        return list(balanced_sampler(labels, generator=torch.Generator().manual_seed(seed)))

    assert draw(3) == draw(3) and draw(3) != draw(4)
    assert len(draw(3)) == labels.size


# ----------------------------------------------------------------------------- images


def test_resize_and_channel_stats_of_uint8_images() -> None:
    images = torch.full((3, 1, 40, 40), 51, dtype=torch.uint8)
    images[1] = 255
    resized = resize_images(images, 20)
    assert resized.shape == (3, 1, 20, 20) and resized.dtype == torch.uint8
    mean, std = channel_stats(resized)
    expected = np.array([51, 255, 51]) / 255
    assert mean.item() == pytest.approx(expected.mean()) and std.item() == pytest.approx(expected.std())


def test_augmentation_gives_normalised_three_channel_crops_without_flips() -> None:
    # Left half dark, right half bright: a flip would put the bright side on the left.
    images = torch.zeros((16, 1, 32, 32), dtype=torch.uint8)
    images[..., 16:] = 255
    norm = (torch.tensor(0.5).view(1, 1, 1, 1), torch.tensor(0.5).view(1, 1, 1, 1))
    out = augment(images, 28, torch.Generator().manual_seed(0), norm)
    assert out.shape == (16, 3, 28, 28)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert (out[..., -4:].mean(dim=(1, 2, 3)) > out[..., :4].mean(dim=(1, 2, 3))).all()


# ----------------------------------------------------------------------------- init


def test_missing_init_file_is_an_error_naming_it(task: CleaningTask, tmp_path) -> None:
    missing = tmp_path / "nih_simclr_encoder.pt"
    with pytest.raises(DataNotFoundError, match="nih_simclr_encoder.pt"):
        ResNet50(**FAST, init=str(missing)).fit_predict(task, seed=0, progress=False)


def test_incompatible_init_file_is_an_error_naming_it(tmp_path) -> None:
    path = tmp_path / "not_a_resnet.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "layer9.bias": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not_a_resnet.pt"):
        load_encoder(path)


def test_encoder_state_dict_with_a_prefix_is_loaded(tmp_path) -> None:
    import torchvision

    source = torchvision.models.resnet50(weights=None)
    state = {f"encoder.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state["projection.0.weight"] = torch.zeros(128, 2048)  # an SSL head: ignored
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": state}, path)
    encoder = load_encoder(path)
    assert torch.equal(encoder.state["layer4.2.conv3.weight"], source.state_dict()["layer4.2.conv3.weight"])
    assert not any(k.startswith(("fc.", "projection")) for k in encoder.state)
    assert len(encoder.sha256) == 64
    missing, unexpected = XRayResNet50(2, 0.0).backbone.load_state_dict(encoder.state, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected


def test_fit_from_an_encoder_file_records_its_hash(task: CleaningTask, tmp_path) -> None:
    import torchvision

    path = tmp_path / "encoder.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    out = ResNet50(**FAST, init=str(path)).fit_predict(task, seed=0, progress=False)
    info = out.info or {}
    assert info["init"] == str(path) and info["init_sha256"] == load_encoder(path).sha256
    assert np.isfinite(out.probs).all()
