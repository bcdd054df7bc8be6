"""The default CPU learner: cross-fitted, deterministic, and able to learn an easy task."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark import registry
from benchmark.learners.smallcnn import SmallCNN
from benchmark.plugins import Posteriors
from benchmark.posteriors import crossfit
from benchmark.posteriors.crossfit import fold_assignment
from benchmark.posteriors.files import check_posteriors_array
from benchmark.task import CleaningTask

torch = pytest.importorskip("torch")

N_PER_CLASS, N_CLASSES, SIZE = 32, 3, 16
#: Small and short enough that a fit takes about a second on a laptop CPU.
FAST = {"epochs": 4, "width": 8, "batch_size": 16, "lr": 0.05, "mc_samples": 5}
FLIPPED = np.array([0, 5, 40, 77])
Prediction = tuple[np.ndarray, np.ndarray | None]


def colour_task(seed: int = 0) -> CleaningTask:
    """Class c is a noisy image whose channel c is bright; a few labels are flipped."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(N_CLASSES), N_PER_CLASS)
    rng.shuffle(true)
    images = rng.integers(0, 90, size=(true.size, SIZE, SIZE, 3))
    images[np.arange(true.size), :, :, true] += 150
    noisy = true.copy()
    noisy[FLIPPED] = (noisy[FLIPPED] + 1) % N_CLASSES
    images = images.astype(np.uint8)
    return CleaningTask(
        name="colours",
        true_dist=np.eye(N_CLASSES)[true],
        noisy_labels=noisy,
        class_names=("red", "green", "blue"),
        load_images=lambda: images,
    )


@pytest.fixture(scope="module")
def task() -> CleaningTask:
    return colour_task()


@pytest.fixture(scope="module")
def fitted(task: CleaningTask) -> Posteriors:
    return SmallCNN(**FAST).fit_predict(task, seed=0, progress=False)


def test_registered_as_a_builtin_learner() -> None:
    assert registry.get("learner", "smallcnn") is SmallCNN
    assert registry.discover("learner")["smallcnn"].origin.endswith("benchmark/learners/smallcnn.py")
    assert isinstance(registry.create("learner", "smallcnn[epochs=2]"), SmallCNN)


def test_every_parameter_has_one_default() -> None:
    assert all(len(values) == 1 for values in SmallCNN.parameters.values())
    required = {"epochs", "width", "folds", "mc_samples", "batch_size", "lr"}
    assert required <= set(SmallCNN.parameters)


def test_parameters_and_version_are_those_the_posterior_cache_keys_hash() -> None:
    assert SmallCNN().params == {
        "epochs": 24,
        "width": 32,
        "folds": 2,
        "mc_samples": 10,
        "batch_size": 64,
        "lr": 0.05,
        "weight_decay": 5e-4,
        "dropout": 0.1,
        "label_smoothing": 0.2,
        "bf16": True,
        "scale": "cpu",
        "posteriors": "oof",
        "views": 1,
        "finetune_epochs": 4,
        "finetune_lr": 0.0025,
    }
    assert SmallCNN.version == "1"
    # the shipped posteriors were keyed before ``views`` existed: at 1 it stays out of the key
    assert SmallCNN.key_neutral == {"views": 1}


def test_fit_predict_uses_out_of_fold_models(task: CleaningTask, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    real_fit_splits = crossfit.fit_splits

    def spy(
        n_samples: int,
        splits: list[tuple[np.ndarray, np.ndarray]],
        fit_and_predict: Callable[[np.ndarray, np.ndarray], Prediction],
    ) -> Prediction:
        def recorded(train_idx: np.ndarray, test_idx: np.ndarray) -> Prediction:
            calls.append((train_idx, test_idx))
            return fit_and_predict(train_idx, test_idx)

        fold_of = fold_assignment(task.noisy_labels, 2, seed=5)
        for k, (_, test_idx) in enumerate(splits):
            np.testing.assert_array_equal(test_idx, np.flatnonzero(fold_of == k))
        return real_fit_splits(n_samples, splits, recorded)

    monkeypatch.setattr(crossfit, "fit_splits", spy)
    SmallCNN(**{**FAST, "epochs": 1, "folds": 2}).fit_predict(task, seed=5, progress=False)
    assert len(calls) == 2
    for train_idx, test_idx in calls:
        assert not np.intersect1d(train_idx, test_idx).size
        assert np.union1d(train_idx, test_idx).size == task.n_samples


# ----------------------------------------------------------------------------- fitting


def test_outputs_are_float32_distributions_of_the_right_shape(task: CleaningTask, fitted: Posteriors) -> None:
    assert fitted.probs.shape == (task.n_samples, N_CLASSES) and fitted.probs.dtype == np.float32
    assert fitted.stochastic is not None
    assert fitted.stochastic.shape == (FAST["mc_samples"], task.n_samples, N_CLASSES)
    assert fitted.stochastic.dtype == np.float32
    np.testing.assert_allclose(fitted.probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fitted.stochastic.sum(axis=2), 1.0, atol=1e-5)
    assert (fitted.probs >= 0).all()


def test_mc_dropout_samples_differ(fitted: Posteriors) -> None:
    assert fitted.stochastic is not None
    assert np.abs(fitted.stochastic[0] - fitted.stochastic[1]).max() > 1e-4


def test_learns_the_classes_well_above_chance(task: CleaningTask, fitted: Posteriors) -> None:
    accuracy = np.mean(fitted.probs.argmax(axis=1) == task.true_labels)
    assert accuracy > 0.9
    assert fitted.info is not None and fitted.info["accuracy_true"] == pytest.approx(accuracy)


def test_flipped_labels_get_low_posterior(task: CleaningTask, fitted: Posteriors) -> None:
    p_noisy = fitted.probs[np.arange(task.n_samples), task.noisy_labels]
    clean = np.setdiff1d(np.arange(task.n_samples), FLIPPED)
    assert p_noisy[FLIPPED].max() < np.median(p_noisy[clean])


def test_info_records_accuracies_time_and_device(fitted: Posteriors) -> None:
    info = fitted.info
    assert info is not None
    for key in ("train_accuracy_noisy", "holdout_accuracy_noisy", "accuracy_true"):
        assert 0.0 <= info[key] <= 1.0
    assert info["seconds"] > 0 and info["device"] in ("cpu", "cuda")


def test_training_loss_falls(task: CleaningTask) -> None:
    learner = SmallCNN(**FAST)
    assert task.load_images is not None
    with learner.session():
        x = learner.prepare(task.load_images(), task)
        learner.train(x, task.noisy_labels, seed=0)
    history = learner.history
    assert len(history) == FAST["epochs"]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert history[-1]["accuracy"] > 0.8


def test_same_seed_gives_bitwise_identical_posteriors(task: CleaningTask, fitted: Posteriors) -> None:
    again = SmallCNN(**FAST).fit_predict(task, seed=0, progress=False)
    np.testing.assert_array_equal(again.probs, fitted.probs)
    assert again.stochastic is not None
    np.testing.assert_array_equal(again.stochastic, fitted.stochastic)


def test_another_seed_gives_other_posteriors(task: CleaningTask, fitted: Posteriors) -> None:
    other = SmallCNN(**FAST).fit_predict(task, seed=1, progress=False)
    assert not np.array_equal(other.probs, fitted.probs)


def test_global_torch_settings_are_restored(task: CleaningTask) -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    SmallCNN(**{**FAST, "epochs": 1}).fit_predict(task, seed=0, progress=False)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_task_without_images_is_a_clear_error(task: CleaningTask) -> None:
    with pytest.raises(ValueError, match="needs images"):
        SmallCNN(**FAST).fit_predict(dataclasses.replace(task, load_images=None), seed=0)


def test_greyscale_images_of_another_size_work() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 2
    images = (rng.integers(0, 60, size=(24, 12, 12)) + 150 * labels[:, None, None]).astype(np.uint8)
    grey = CleaningTask(
        name="grey",
        true_dist=np.eye(2)[labels],
        noisy_labels=labels,
        class_names=("dark", "light"),
        load_images=lambda: images,
    )
    post = SmallCNN(**{**FAST, "epochs": 1}).fit_predict(grey, seed=0, progress=False)
    assert post.probs.shape == (24, 2)


# ----------------------------------------------------------------------------- in-sample, fine-tuning
# (the check_* helpers serve every learner of the family: coteaching and elr import them)


def check_insample_fit(
    cls: type[SmallCNN], params: dict, task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> Posteriors:
    """posteriors=insample trains one model, on every sample, and still learns the classes."""
    trained: list[int] = []
    real_train = cls.train

    def counted(self: SmallCNN, images: Any, labels: np.ndarray, seed: int) -> Any:
        trained.append(len(labels))
        return real_train(self, images, labels, seed)

    monkeypatch.setattr(cls, "train", counted)
    post = cls(**{**params, "posteriors": "insample"}).fit_predict(task, seed=0, progress=False)
    assert trained == [task.n_samples]
    assert post.info is not None and "insample_accuracy_noisy" in post.info
    assert np.mean(post.probs.argmax(axis=1) == task.true_labels) >= 0.8
    check_posteriors_array(post.probs, task.n_samples, N_CLASSES, where="insample")
    return post


def check_insample_views(cls: type[SmallCNN], params: dict, task: CleaningTask) -> None:
    """In-sample posteriors see one seeded training-augmented view: reproducible for a seed,
    not the mirror-averaged posteriors of predict, and other views for another seed."""
    learner = cls(**params)
    assert task.load_images is not None
    with learner.session():
        x = learner.prepare(task.load_images(), task)
        model = learner.train(x, task.noisy_labels, seed=0)
        a, a_samples = learner.predict_insample(model, x, seed=3)
        b, b_samples = learner.predict_insample(model, x, seed=3)
        c, _ = learner.predict_insample(model, x, seed=4)
        plain, _ = learner.predict(model, x, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_samples, b_samples)
    assert not np.array_equal(a, c) and not np.array_equal(a, plain)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)


def check_finetune_follows_new_labels(
    cls: type[SmallCNN], params: dict, task: CleaningTask, posteriors: str
) -> None:
    """A re-fit fine-tunes the kept models: after relabelling class 0 as class 1, the
    posteriors of those samples move toward class 1; one epoch_done per fine-tuning epoch."""
    learner = cls(**{**params, "posteriors": posteriors, "finetune_epochs": 3, "finetune_lr": 0.05})
    before = learner.fit_predict(task, seed=0, progress=False)
    relabelled = np.flatnonzero(task.noisy_labels == 0)
    labels = task.noisy_labels.copy()
    labels[relabelled] = 1
    after = learner.refit(task, labels, seed=0)
    assert after.info is not None and after.info["finetuned"] == 1
    assert len(learner.history) == 3
    moved = after.probs[relabelled, 1].mean() - before.probs[relabelled, 1].mean()
    assert moved > 0.2, moved
    check_posteriors_array(after.probs, task.n_samples, N_CLASSES, where="finetuned")


def test_insample_mode_trains_one_model_on_every_sample(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_insample_fit(SmallCNN, FAST, task, monkeypatch)


def test_insample_posteriors_see_one_training_view(task: CleaningTask) -> None:
    check_insample_views(SmallCNN, FAST, task)


@pytest.mark.parametrize("posteriors", ["oof", "insample"])
def test_finetuning_follows_new_labels(task: CleaningTask, posteriors: str) -> None:
    check_finetune_follows_new_labels(SmallCNN, FAST, task, posteriors)


def training_views(learner: SmallCNN, net: Any, x: Any, seed: int, k: int) -> list[np.ndarray]:
    """The one-view in-sample posteriors of ``net`` on training views 0..k-1 of ``seed``."""
    from benchmark.learners._recipe import training_view
    from benchmark.learners._smallcnn_net import predict

    return [
        predict(learner, net, x, seed, chunk=500, mc_samples=0, view=training_view(learner, seed, i))[0]
        for i in range(k)
    ]


def check_views_average(cls: type[SmallCNN], params: dict, task: CleaningTask) -> None:
    """views=K: the in-sample posterior is the mean of K seeded training views; view 0 is the
    posterior of views=1, the MC samples stay on it, and the average is reproducible."""
    one = cls(**params, posteriors="insample")
    four = cls(**params, posteriors="insample", views=4)
    assert task.load_images is not None
    with one.session():
        x = one.prepare(task.load_images(), task)
        model = one.train(x, task.noisy_labels, seed=0)
        single, single_samples = one.predict_insample(model, x, seed=3)
    with four.session():
        averaged, samples = four.predict_insample(model, x, seed=3)
        again, _ = four.predict_insample(model, x, seed=3)
        views = training_views(four, model, x, 3, 4)
    np.testing.assert_array_equal(views[0], single)
    np.testing.assert_array_equal(samples, single_samples)
    assert not np.array_equal(views[0], views[1])
    expected = np.mean(views, axis=0)
    np.testing.assert_allclose(averaged, expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(averaged, again)
    check_posteriors_array(averaged, task.n_samples, N_CLASSES, where="views")


def test_views_average_that_many_training_views_the_first_being_the_one_view_posterior(
    task: CleaningTask,
) -> None:
    check_views_average(SmallCNN, FAST, task)


def test_views_need_insample_posteriors_and_stay_out_of_the_key_at_one(task: CleaningTask) -> None:
    from benchmark.posteriors.cache import cache_key, key_inputs

    with pytest.raises(ValueError, match="views=4 averages training views of in-sample posteriors"):
        SmallCNN(views=4)
    with pytest.raises(ValueError, match="views=0 must be >= 1"):
        SmallCNN(posteriors="insample", views=0)
    insample = SmallCNN(posteriors="insample")
    # views=1 is what the learner did before the parameter existed: the key does not change
    assert "views" not in key_inputs(task, insample, 0)["learner"]["params"]
    assert cache_key(task, SmallCNN(posteriors="insample", views=1), 0) == cache_key(task, insample, 0)
    assert cache_key(task, SmallCNN(posteriors="insample", views=8), 0) != cache_key(task, insample, 0)


@pytest.mark.slow
def test_cifar10h_posteriors_rank_mislabelled_images_better_than_random(data_root: Path) -> None:
    """The default fit on the paper's setting (N=5000, T=2): about 70 s on 2 CPU cores."""
    from benchmark.plugins import ScoringContext
    from benchmark.simulation.metrics import run_metrics
    from benchmark.simulation.simulator import initial_counts, simulate

    task = registry.create("dataset", "cifar10h[temperature=2]").load(data_root)
    post = SmallCNN().fit_predict(task, seed=0, progress=False)
    assert post.info is not None and post.info["accuracy_true"] > 0.5  # chance is 0.1

    def auc(strategy: str) -> float:
        ctx = ScoringContext(
            label_counts=initial_counts(task),
            posteriors=post.probs,
            stochastic=post.stochastic,
            seed=0,
        )
        trajectory = simulate(task, registry.create("strategy", strategy), ctx, seed=0)
        return float(run_metrics(task, trajectory)["auc"])

    # random: ~0.876; loss with the true distribution as posteriors: ~0.9385
    assert auc("loss") > auc("random") + 0.02
