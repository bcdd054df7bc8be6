"""Co-teaching: the small-loss exchange, the forget rate, and the pair learning an easy task."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import registry
from benchmark.learners.coteaching import CoTeaching
from benchmark.plugins import Posteriors
from benchmark.posteriors.files import check_posteriors_array
from benchmark.task import CleaningTask

torch = pytest.importorskip("torch")

from test_smallcnn import (  # noqa: E402
    FLIPPED,
    N_CLASSES,
    check_finetune_follows_new_labels,
    check_insample_fit,
    check_insample_views,
    colour_task,
    training_views,
)

from benchmark.learners import _coteaching_net  # noqa: E402
from benchmark.learners._coteaching_net import forget_rate_at, kept, small_loss_exchange  # noqa: E402

#: Out-of-fold unless a test says otherwise (the default is in-sample).
FAST = {"epochs": 4, "width": 8, "batch_size": 16, "lr": 0.05, "warmup_epochs": 1, "posteriors": "oof"}


@pytest.fixture(scope="module")
def task() -> CleaningTask:
    return colour_task()


@pytest.fixture(scope="module")
def fitted(task: CleaningTask) -> Posteriors:
    return CoTeaching(**FAST).fit_predict(task, seed=0, progress=False)


# ----------------------------------------------------------------------------- the exchange


def test_each_network_learns_from_the_other_ones_small_loss_rows() -> None:
    loss_a = torch.tensor([0.1, 0.9, 0.5, 0.3])
    loss_b = torch.tensor([0.8, 0.2, 0.4, 0.6])
    for_a, for_b = small_loss_exchange(loss_a, loss_b, keep=2)
    assert for_a.tolist() == [1, 2]  # smallest under b
    assert for_b.tolist() == [0, 3]  # smallest under a


def test_ties_go_to_the_earlier_row() -> None:
    loss_a = torch.tensor([0.5, 0.5, 0.1, 0.5])
    loss_b = torch.tensor([0.3, 0.3, 0.3, 0.3])
    for_a, for_b = small_loss_exchange(loss_a, loss_b, keep=2)
    assert for_a.tolist() == [0, 1]
    assert for_b.tolist() == [2, 0]


def test_keeping_all_rows_or_one() -> None:
    loss_a = torch.tensor([0.4, 0.1, 0.3])
    loss_b = torch.tensor([0.2, 0.7, 0.5])
    for_a, for_b = small_loss_exchange(loss_a, loss_b, keep=3)
    assert for_a.tolist() == [0, 2, 1] and for_b.tolist() == [1, 2, 0]
    for_a, for_b = small_loss_exchange(loss_a, loss_b, keep=1)
    assert for_a.tolist() == [0] and for_b.tolist() == [1]


def test_rows_kept_and_the_forget_rate_schedule() -> None:
    assert kept(64, 0.15) == 54  # int(0.85 * 64)
    assert kept(64, 0.0) == 64
    assert kept(256, 0.28) == 184
    assert kept(4, 0.99) == 1
    assert [forget_rate_at(e, 2, 0.3) for e in range(4)] == [0.0, 0.0, 0.3, 0.3]


# ----------------------------------------------------------------------------- configuration


def test_registered_with_one_default_per_parameter() -> None:
    assert registry.get("learner", "coteaching") is CoTeaching
    assert all(len(values) == 1 for values in CoTeaching.parameters.values())
    assert CoTeaching().config.forget_rate is None
    assert CoTeaching(forget_rate=0.2).config.forget_rate == 0.2
    assert registry.create("learner", "coteaching[forget_rate=0.2]").config.forget_rate == 0.2
    assert CoTeaching.version == "1"


def test_bad_values_are_refused_when_named() -> None:
    with pytest.raises(ValueError, match="forget_rate"):
        CoTeaching(forget_rate=1.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        CoTeaching(warmup_epochs=-1)


def test_the_default_forget_rate_is_the_noise_rate_clipped_to_a_half(task: CleaningTask) -> None:
    learner = CoTeaching(**FAST)
    assert task.load_images is not None
    images = task.load_images()
    with learner.session():
        learner.prepare(images, task)
        assert learner.forget_rate == pytest.approx(len(FLIPPED) / task.n_samples)
        very_noisy = CleaningTask(
            name="noisy",
            true_dist=task.true_dist,
            noisy_labels=(task.true_labels + 1) % N_CLASSES,
            class_names=task.class_names,
            load_images=task.load_images,
        )
        learner.prepare(images, very_noisy)
        assert learner.forget_rate == 0.5
    fixed = CoTeaching(**FAST, forget_rate=0.3)
    with fixed.session():
        fixed.prepare(images, task)
    assert fixed.forget_rate == 0.3


# ----------------------------------------------------------------------------- fitting


def test_the_pair_exchanges_small_loss_rows_after_the_warm_up(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    keeps: list[int] = []
    real = _coteaching_net.small_loss_exchange

    def spy(loss_a: torch.Tensor, loss_b: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        keeps.append(keep)
        return real(loss_a, loss_b, keep)

    monkeypatch.setattr(_coteaching_net, "small_loss_exchange", spy)
    learner = CoTeaching(**{**FAST, "epochs": 3, "forget_rate": 0.25})
    assert task.load_images is not None
    with learner.session():
        x = learner.prepare(task.load_images(), task)
        learner.train(x, task.noisy_labels, seed=0)
    per_epoch = task.n_samples // FAST["batch_size"]
    assert keeps == [16] * per_epoch + [12] * (2 * per_epoch)  # warm-up epoch, then int(0.75 * 16)
    assert len(learner.history) == 3  # one report per epoch of the pair


def test_outputs_are_the_mean_of_the_two_networks(task: CleaningTask, fitted: Posteriors) -> None:
    check_posteriors_array(fitted.probs, task.n_samples, N_CLASSES, where="probs")
    assert fitted.stochastic is not None and fitted.stochastic.shape == (2, task.n_samples, N_CLASSES)
    check_posteriors_array(fitted.stochastic, task.n_samples, N_CLASSES, where="stochastic")
    np.testing.assert_allclose(fitted.probs, fitted.stochastic.mean(axis=0), atol=1e-6)
    assert np.abs(fitted.stochastic[0] - fitted.stochastic[1]).max() > 1e-4  # two networks


def test_learns_the_classes_well_above_chance(task: CleaningTask, fitted: Posteriors) -> None:
    assert np.mean(fitted.probs.argmax(axis=1) == task.true_labels) >= 0.8
    assert fitted.info is not None
    assert fitted.info["forget_rate"] == pytest.approx(len(FLIPPED) / task.n_samples)
    assert fitted.info["warmup_epochs"] == 1 and fitted.info["scale"] == "cpu"


def test_same_seed_gives_bitwise_identical_posteriors(task: CleaningTask, fitted: Posteriors) -> None:
    again = CoTeaching(**FAST).fit_predict(task, seed=0, progress=False)
    np.testing.assert_array_equal(again.probs, fitted.probs)
    np.testing.assert_array_equal(again.stochastic, fitted.stochastic)
    other = CoTeaching(**FAST).fit_predict(task, seed=1, progress=False)
    assert not np.array_equal(other.probs, fitted.probs)


def test_insample_mode_trains_one_pair_on_every_sample(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    post = check_insample_fit(CoTeaching, FAST, task, monkeypatch)
    assert post.stochastic is not None and post.stochastic.shape[0] == 2


def test_insample_posteriors_see_one_training_view(task: CleaningTask) -> None:
    check_insample_views(CoTeaching, FAST, task)


def test_views_average_each_networks_training_views(task: CleaningTask) -> None:
    """views=K: each network's in-sample posterior is the mean of the same K seeded training
    views, the first being the one-view posterior; probs is the pair's mean; views=1 keys as
    before the parameter existed."""
    from benchmark.posteriors.cache import cache_key, key_inputs

    params = {**FAST, "posteriors": "insample"}
    one, three = CoTeaching(**params), CoTeaching(**params, views=3)
    assert task.load_images is not None
    with one.session():
        x = one.prepare(task.load_images(), task)
        pair = one.train(x, task.noisy_labels, seed=0)
        _, single = one.predict_insample(pair, x, seed=3)
    with three.session():
        averaged, each = three.predict_insample(pair, x, seed=3)
        for i, net in enumerate(pair):
            views = training_views(three, net, x, 3, 3)
            np.testing.assert_array_equal(views[0], single[i])
            expected = np.mean(views, axis=0)
            np.testing.assert_allclose(each[i], expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(averaged, each.mean(axis=0), atol=1e-6)
    check_posteriors_array(averaged, task.n_samples, N_CLASSES, where="views")
    with pytest.raises(ValueError, match="needs posteriors=insample"):
        CoTeaching(**FAST, views=2)
    assert "views" not in key_inputs(task, one, 0)["learner"]["params"]
    assert cache_key(task, CoTeaching(**params, views=1), 0) == cache_key(task, one, 0)
    assert cache_key(task, three, 0) != cache_key(task, one, 0)


@pytest.mark.parametrize("posteriors", ["oof", "insample"])
def test_finetuning_follows_new_labels(task: CleaningTask, posteriors: str) -> None:
    check_finetune_follows_new_labels(CoTeaching, FAST, task, posteriors)
