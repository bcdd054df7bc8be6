"""ELR: the regulariser and the target update on hand-computed values, and the learner on an
easy task."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark import registry
from benchmark.learners.elr import ELR
from benchmark.learners.smallcnn import SmallCNN
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
    check_views_average,
    colour_task,
)

from benchmark.learners import _elr_net  # noqa: E402
from benchmark.learners._elr_net import elr_loss, update_targets  # noqa: E402

#: Out-of-fold unless a test says otherwise (the default is in-sample).
FAST = {"epochs": 4, "width": 8, "batch_size": 16, "lr": 0.05, "mc_samples": 5, "posteriors": "oof"}


@pytest.fixture(scope="module")
def task() -> CleaningTask:
    return colour_task()


@pytest.fixture(scope="module")
def fitted(task: CleaningTask) -> Posteriors:
    return ELR(**FAST).fit_predict(task, seed=0, progress=False)


# ----------------------------------------------------------------------------- the regulariser


def test_the_loss_is_cross_entropy_plus_lambda_log_one_minus_agreement() -> None:
    # Row 0: p = (1/4, 3/4), label 1, t = (0.2, 0.6): <p, t> = 0.05 + 0.45 = 0.5.
    # Row 1: p = (1/2, 1/2), label 0, t = 0: <p, t> = 0.
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    labels = torch.tensor([1, 0])
    targets = torch.tensor([[0.2, 0.6], [0.0, 0.0]])
    ce = (-math.log(0.75) + math.log(2.0)) / 2
    reg = (math.log(0.5) + math.log(1.0)) / 2
    assert float(elr_loss(logits, labels, targets, 3.0)) == pytest.approx(ce + 3.0 * reg, rel=1e-6)
    assert float(elr_loss(logits, labels, targets, 0.0)) == pytest.approx(ce, rel=1e-6)


def test_the_targets_are_a_moving_average_of_the_predictions_of_each_sample() -> None:
    targets = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    probs = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    update_targets(targets, torch.tensor([0, 2]), probs, beta=0.9)
    expected = [[0.025, 0.075], [0.5, 0.5], [0.95, 0.05]]  # row 1 untouched
    np.testing.assert_allclose(targets.numpy(), expected, rtol=1e-6)


def test_the_targets_take_clipped_and_renormalised_detached_predictions() -> None:
    targets = torch.zeros(1, 2)
    probs = torch.tensor([[0.0, 1.0]], requires_grad=True)
    update_targets(targets, torch.tensor([0]), probs, beta=0.0)
    assert not targets.requires_grad
    np.testing.assert_allclose(targets.numpy(), [[1e-4, 1 - 1e-4]], rtol=1e-5)


def test_the_regulariser_pulls_the_prediction_toward_the_target() -> None:
    logits = torch.tensor([[0.0, 1.0]], requires_grad=True)
    targets = torch.tensor([[0.9, 0.1]])
    labels = torch.tensor([1])
    regulariser = elr_loss(logits, labels, targets, 1.0) - elr_loss(logits, labels, targets, 0.0)
    regulariser.backward()
    assert logits.grad is not None
    # Gradient descent raises the logit of class 0, where the target is.
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]


# ----------------------------------------------------------------------------- configuration


def test_registered_with_one_default_per_parameter() -> None:
    assert registry.get("learner", "elr") is ELR
    assert all(len(values) == 1 for values in ELR.parameters.values())
    config = ELR().config
    assert (config.elr_beta, config.elr_lambda, config.label_smoothing) == (0.9, 3.0, 0.0)
    assert ELR.version == "1"
    with pytest.raises(ValueError, match="elr_beta"):
        ELR(elr_beta=1.0)
    with pytest.raises(ValueError, match="elr_lambda"):
        ELR(elr_lambda=-1.0)


# ----------------------------------------------------------------------------- fitting


def test_learns_the_classes_well_above_chance(task: CleaningTask, fitted: Posteriors) -> None:
    check_posteriors_array(fitted.probs, task.n_samples, N_CLASSES, where="probs")
    assert fitted.stochastic is not None and fitted.stochastic.shape == (5, task.n_samples, N_CLASSES)
    check_posteriors_array(fitted.stochastic, task.n_samples, N_CLASSES, where="stochastic")
    assert np.abs(fitted.stochastic[0] - fitted.stochastic[1]).max() > 1e-4  # MC dropout
    assert np.mean(fitted.probs.argmax(axis=1) == task.true_labels) >= 0.8
    p_noisy = fitted.probs[np.arange(task.n_samples), task.noisy_labels]
    assert p_noisy[FLIPPED].max() < np.median(np.delete(p_noisy, FLIPPED))


def test_every_training_sample_has_its_own_target_row(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[np.ndarray] = []
    sizes: list[int] = []
    real = _elr_net.update_targets

    def spy(targets: torch.Tensor, idx: torch.Tensor, probs: torch.Tensor, beta: float) -> None:
        rows.append(idx.cpu().numpy())
        sizes.append(targets.shape[0])
        real(targets, idx, probs, beta)

    monkeypatch.setattr(_elr_net, "update_targets", spy)
    learner = ELR(**{**FAST, "epochs": 2})
    assert task.load_images is not None
    with learner.session():
        x = learner.prepare(task.load_images(), task)
        learner.train(x[:80], task.noisy_labels[:80], seed=0)
    per_epoch = 80 // FAST["batch_size"]
    assert set(sizes) == {80} and len(rows) == 2 * per_epoch
    for epoch in range(2):
        seen = np.concatenate(rows[epoch * per_epoch : (epoch + 1) * per_epoch])
        assert sorted(seen) == list(range(80))  # each sample once per epoch


def test_without_the_regulariser_it_is_smallcnn_without_label_smoothing(task: CleaningTask) -> None:
    params = {**FAST, "epochs": 2, "label_smoothing": 0.0}
    plain = SmallCNN(**params).fit_predict(task, seed=0, progress=False)
    unregularised = ELR(**params, elr_lambda=0.0).fit_predict(task, seed=0, progress=False)
    regularised = ELR(**params).fit_predict(task, seed=0, progress=False)
    np.testing.assert_array_equal(unregularised.probs, plain.probs)
    assert not np.array_equal(regularised.probs, plain.probs)


def test_same_seed_gives_bitwise_identical_posteriors(task: CleaningTask, fitted: Posteriors) -> None:
    again = ELR(**FAST).fit_predict(task, seed=0, progress=False)
    np.testing.assert_array_equal(again.probs, fitted.probs)
    np.testing.assert_array_equal(again.stochastic, fitted.stochastic)
    other = ELR(**FAST).fit_predict(task, seed=1, progress=False)
    assert not np.array_equal(other.probs, fitted.probs)


def test_insample_mode_trains_one_model_on_every_sample(
    task: CleaningTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_insample_fit(ELR, FAST, task, monkeypatch)


def test_insample_posteriors_see_one_training_view(task: CleaningTask) -> None:
    check_insample_views(ELR, FAST, task)


def test_views_average_training_views_and_stay_out_of_the_key_at_one(task: CleaningTask) -> None:
    """ELR shares smallcnn's in-sample posteriors, ``views`` included, and views=1 keys as
    before the parameter existed."""
    from benchmark.posteriors.cache import cache_key, key_inputs

    params = {k: v for k, v in FAST.items() if k != "posteriors"}
    check_views_average(ELR, params, task)
    with pytest.raises(ValueError, match="needs posteriors=insample"):
        ELR(**FAST, views=2)
    one = ELR(**params, posteriors="insample")
    assert "views" not in key_inputs(task, one, 0)["learner"]["params"]
    assert cache_key(task, ELR(**params, posteriors="insample", views=1), 0) == cache_key(task, one, 0)
    assert cache_key(task, ELR(**params, posteriors="insample", views=3), 0) != cache_key(task, one, 0)


@pytest.mark.parametrize("posteriors", ["oof", "insample"])
def test_finetuning_follows_new_labels(task: CleaningTask, posteriors: str) -> None:
    check_finetune_follows_new_labels(ELR, FAST, task, posteriors)
