"""Cross-fitting and the CrossFitLearner base: configuration, folds, and a plugin built on it."""

from __future__ import annotations

import csv
import dataclasses
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark import registry
from benchmark.posteriors.crossfit import CrossFitLearner, cross_fit, derived_seed, fold_assignment
from benchmark.task import CleaningTask

Prediction = tuple[np.ndarray, np.ndarray | None]


class Toy(CrossFitLearner):
    name = "toy"

    @dataclass(frozen=True)
    class Config:
        epochs: int = 3
        folds: int = 2
        lr: float = 0.1
        augment: bool = True
        mode: str = "fast"
        init: str | None = None

        def __post_init__(self) -> None:
            if self.epochs < 1:
                raise ValueError(f"epochs={self.epochs} must be >= 1")


# ----------------------------------------------------------------------------- configuration


def test_parameters_are_derived_once_from_the_config_fields_in_order() -> None:
    assert Toy.parameters == {
        "epochs": [3],
        "folds": [2],
        "lr": [0.1],
        "augment": [True],
        "mode": ["fast"],
        "init": [None],
    }
    declared = Toy.declared()
    assert (
        declared["epochs"].type is int and declared["lr"].type is float and declared["augment"].type is bool
    )
    assert declared["init"].optional and not declared["mode"].optional
    assert Toy().config == Toy.Config()
    with pytest.raises(ValueError, match="no parameter width"):
        Toy(width=3)


def test_values_are_converted_to_the_field_types_when_the_learner_is_named() -> None:
    learner = Toy(epochs=24.0, lr=1, augment=False, mode=7, init=None)
    assert learner.config == Toy.Config(epochs=24, lr=1.0, augment=False, mode="7", init=None)
    assert isinstance(learner.config.epochs, int) and isinstance(learner.config.lr, float)
    # params hold the converted values: what the cache key hashes and the spec shows
    assert learner.params["epochs"] == 24 and isinstance(learner.params["epochs"], int)
    assert learner.spec == "toy[augment=False,epochs=24,lr=1,mode=7]"
    assert Toy(init="/x.pt").config.init == "/x.pt"
    with pytest.raises(dataclasses.FrozenInstanceError):
        learner.config.epochs = 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"epochs": "many"},
            "learner toy: epochs=many is not allowed (not an integer): epochs must be an integer",
        ),
        ({"epochs": 2.5}, "learner toy: epochs=2.5 is not allowed (not an integer)"),
        ({"epochs": True}, "learner toy: epochs=True is not allowed (not an integer)"),
        ({"augment": "yes"}, "learner toy: augment=yes is not allowed (not true or false)"),
        ({"augment": 1}, "learner toy: augment=1 is not allowed (not true or false)"),
        ({"lr": None}, "learner toy: lr=None is not allowed (None is not allowed): lr must be a number"),
        ({"lr": "fast"}, "learner toy: lr=fast is not allowed (not a number)"),
        ({"epochs": 0}, "learner toy: epochs=0 must be >= 1"),  # the Config's own __post_init__
    ],
)
def test_a_bad_value_is_a_clear_error(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Toy(**params)


def test_an_explicit_parameters_grid_must_name_the_config_fields() -> None:
    class Grid(Toy):
        name = "grid"
        parameters = {k: [v[0]] for k, v in Toy.parameters.items()} | {"lr": [0.1, 0.01]}

    assert [p["lr"] for p in Grid.grid()] == [0.1, 0.01]
    assert Grid(lr=0.01).config.lr == 0.01
    with pytest.raises(TypeError, match="must be the fields of its Config"):

        class Wrong(Toy):
            name = "wrong"
            parameters = {"epochs": [3], "folds": [2], "width": [8]}


def test_a_config_must_be_a_frozen_dataclass_with_defaults_and_folds() -> None:
    with pytest.raises(TypeError, match="frozen"):

        class Mutable(CrossFitLearner):
            name = "mutable"

            @dataclass
            class Config:
                folds: int = 2

    with pytest.raises(TypeError, match="folds"):

        class NoFolds(CrossFitLearner):
            name = "nofolds"

            @dataclass(frozen=True)
            class Config:
                epochs: int = 2

    with pytest.raises(TypeError, match="sizes: type tuple is not"):

        class Listy(CrossFitLearner):
            name = "listy"

            @dataclass(frozen=True)
            class Config:
                folds: int = 2
                sizes: tuple = ()


# ----------------------------------------------------------------------------- folds


def test_fold_assignment_partitions_samples_evenly_within_each_class() -> None:
    labels = np.repeat([0, 1, 2], [10, 7, 5])
    fold_of = fold_assignment(labels, 3, seed=0)
    assert fold_of.shape == labels.shape and set(fold_of) == {0, 1, 2}
    sizes = np.bincount(fold_of)
    assert sizes.max() - sizes.min() <= 1
    for c in range(3):
        per_fold = np.bincount(fold_of[labels == c], minlength=3)
        assert per_fold.max() - per_fold.min() <= 1


def test_fold_assignment_is_seeded_and_needs_two_folds() -> None:
    labels = np.arange(40) % 2
    first = fold_assignment(labels, 2, seed=3)
    np.testing.assert_array_equal(fold_assignment(labels, 2, seed=3), first)
    assert not np.array_equal(fold_assignment(labels, 2, seed=4), first)
    with pytest.raises(ValueError, match="folds"):
        fold_assignment(np.zeros(10, dtype=int), 1, seed=0)


def test_cross_fit_predicts_each_sample_with_the_model_that_never_saw_it() -> None:
    labels = np.arange(30) % 3
    fold_of = fold_assignment(labels, 3, seed=1)
    trained_on: list[np.ndarray] = []

    def fit_and_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> Prediction:
        model = len(trained_on)
        trained_on.append(train_idx)
        probs = np.zeros((test_idx.size, 4))
        probs[:, model] = 1.0  # the column says which model made the prediction
        return probs, np.stack([probs, probs])

    probs, stochastic = cross_fit(fold_of, fit_and_predict)
    assert stochastic is not None
    assert probs.shape == (30, 4) and stochastic.shape == (2, 30, 4)
    model_of = probs.argmax(axis=1)
    assert probs.sum(axis=1).tolist() == [1.0] * 30  # every sample predicted exactly once
    for i in range(30):
        assert i not in trained_on[model_of[i]]
        assert np.isin(np.flatnonzero(fold_of != fold_of[i]), trained_on[model_of[i]]).all()
    np.testing.assert_array_equal(stochastic[1], probs)


def test_cross_fit_without_stochastic_posteriors() -> None:
    fold_of = fold_assignment(np.arange(10) % 2, 2, seed=0)
    probs, stochastic = cross_fit(fold_of, lambda tr, te: (np.full((te.size, 2), 0.5), None))
    assert stochastic is None and probs.dtype == np.float32 and probs.shape == (10, 2)


def test_derived_seeds_differ_by_fold_and_seed() -> None:
    seeds = {derived_seed(s, k) for s in range(3) for k in range(3)}
    assert len(seeds) == 9 and all(0 <= s < 2**63 for s in seeds)


class Recorder(CrossFitLearner):
    """Each sample's image is filled with its index; ``train`` records which samples it saw."""

    name = "recorder"

    @dataclass(frozen=True)
    class Config:
        folds: int = 3
        epochs: int = 2

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.calls: list[tuple[dict[str, Any], np.ndarray, int]] = []

    def train(self, images: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, Any]:
        for epoch in range(self.config.epochs):
            self.epoch_done(loss=1.0 / (epoch + 1), accuracy=0.5 + 0.25 * epoch)
        return {"seen": images[:, 0, 0, 0].astype(int), "labels": labels, "seed": seed}

    def predict(self, model: dict[str, Any], images: np.ndarray, seed: int) -> Prediction:
        self.calls.append((model, images[:, 0, 0, 0].astype(int), seed))
        probs = np.zeros((images.shape[0], self.n_classes), dtype=np.float32)
        probs[:, 0] = 1.0
        return probs, None


def index_task(n: int = 30, n_classes: int = 3) -> CleaningTask:
    true = np.arange(n) % n_classes
    noisy = true.copy()
    noisy[:3] = (noisy[:3] + 1) % n_classes
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 4, 4)).copy()
    return CleaningTask(
        name="indices",
        true_dist=np.eye(n_classes)[true],
        noisy_labels=noisy,
        class_names=tuple(f"c{c}" for c in range(n_classes)),
        load_images=lambda: images,
    )


def test_fit_predict_predicts_every_sample_once_by_a_model_that_never_saw_it() -> None:
    task = index_task()
    learner = Recorder()
    out = learner.fit_predict(task, seed=7, progress=False)
    calls = learner.calls
    fold_of = fold_assignment(task.noisy_labels, 3, seed=7)
    assert len(calls) == 3
    predicted = np.concatenate([shown for _, shown, _ in calls])
    np.testing.assert_array_equal(np.sort(predicted), np.arange(task.n_samples))
    for k, (model, shown, seed) in enumerate(calls):
        assert not np.intersect1d(model["seen"], shown).size
        np.testing.assert_array_equal(shown, np.flatnonzero(fold_of == k))
        np.testing.assert_array_equal(model["seen"], np.flatnonzero(fold_of != k))
        np.testing.assert_array_equal(model["labels"], task.noisy_labels[model["seen"]])
        assert model["seed"] == seed == derived_seed(7, k)
    assert out.stochastic is None and out.probs.shape == (task.n_samples, 3)
    info = out.info or {}
    assert info["train_accuracy_noisy"] == 0.75  # the last epoch of each fold
    assert info["holdout_accuracy_noisy"] == pytest.approx(np.mean(task.noisy_labels == 0))
    assert info["accuracy_true"] == pytest.approx(np.mean(task.true_labels == 0))
    assert (info["folds"], info["epochs"], info["device"]) == (3, 2, "cpu")
    assert info["seconds"] >= 0


class Modes(Recorder):
    """A Recorder with the ``posteriors`` mode, an in-sample prediction of its own, and a
    ``finetune`` that records each call."""

    name = "modes"

    @dataclass(frozen=True)
    class Config:
        folds: int = 3
        epochs: int = 2
        posteriors: str = "oof"
        finetune_epochs: int = 1

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.insample_calls = 0
        self.finetuned: list[tuple[np.ndarray, np.ndarray, int]] = []

    def predict_insample(self, model: dict[str, Any], images: np.ndarray, seed: int) -> Prediction:
        self.insample_calls += 1
        return self.predict(model, images, seed)

    def finetune(self, model: dict[str, Any], images: np.ndarray, labels: np.ndarray, seed: int) -> Any:
        self.finetuned.append((images[:, 0, 0, 0].astype(int), labels, seed))
        self.epoch_done(loss=0.1, accuracy=1.0)
        return {**model, "labels": labels}


def test_insample_mode_trains_one_model_on_every_sample_and_predicts_them() -> None:
    task = index_task()
    learner = Modes(posteriors="insample")
    out = learner.fit_predict(task, seed=7, progress=False)
    assert len(learner.calls) == 1 and learner.insample_calls == 1
    model, shown, seed = learner.calls[0]
    np.testing.assert_array_equal(model["seen"], np.arange(task.n_samples))
    np.testing.assert_array_equal(shown, np.arange(task.n_samples))
    assert seed == derived_seed(7, 0)
    info = out.info or {}
    assert info["folds"] is None and info["posteriors"] == "insample"
    assert "insample_accuracy_noisy" in info and "holdout_accuracy_noisy" not in info
    oof = Modes()
    oof.fit_predict(task, seed=7, progress=False)
    assert len(oof.calls) == 3 and oof.insample_calls == 0


def test_an_unknown_posteriors_mode_is_refused_when_named() -> None:
    with pytest.raises(ValueError, match=r"modes: posteriors='bootstrap' must be one of oof, insample"):
        Modes(posteriors="bootstrap")


@pytest.mark.parametrize("mode", ["oof", "insample"])
def test_refit_fine_tunes_the_kept_models_on_their_own_samples(mode: str) -> None:
    task = index_task()
    learner = Modes(posteriors=mode)
    new = (task.noisy_labels + 1) % 3
    learner.refit(task, new, seed=7)  # nothing kept yet: a fit from scratch on the new labels
    assert learner.finetuned == [] and len(learner.calls) == (1 if mode == "insample" else 3)
    first_models = [m for m, _, _ in learner.calls]
    out = learner.refit(task, new, seed=7)
    splits = learner.splits(new, 7)
    assert len(learner.finetuned) == len(splits)
    for k, (seen, labels, seed) in enumerate(learner.finetuned):
        np.testing.assert_array_equal(seen, splits[k][0])  # the model's own training samples
        np.testing.assert_array_equal(labels, new[splits[k][0]])
        np.testing.assert_array_equal(first_models[k]["seen"], seen)
        assert seed == derived_seed(derived_seed(7, k), 1)
    assert (out.info or {})["finetuned"] == 1
    learner.refit(task, new, seed=7)
    assert (learner.finetuned[-1][2]) == derived_seed(derived_seed(7, len(splits) - 1), 2)


def test_a_learner_without_finetune_refits_from_scratch() -> None:
    task = index_task()
    learner = Recorder()
    learner.fit_predict(task, seed=1, progress=False)
    learner.refit(task, task.noisy_labels, seed=1)
    assert len(learner.calls) == 6  # three folds fitted twice
    assert learner.__dict__.get("_kept") is None


def test_a_task_without_images_is_an_error_naming_learner_and_task() -> None:
    task = dataclasses.replace(index_task(), load_images=None)
    with pytest.raises(ValueError, match="indices: the recorder learner needs images"):
        Recorder().fit_predict(task, seed=0)


def test_crossfit_imports_no_torch() -> None:
    import subprocess

    code = "import benchmark.posteriors.crossfit, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- a plugin


NEAREST_MEAN = '''
"""Nearest class mean on flattened pixels: softmax of minus the distances."""

from dataclasses import dataclass

import numpy as np

from benchmark.posteriors.crossfit import CrossFitLearner


class NearestMean(CrossFitLearner):
    name = "nearest_mean"
    description = "Nearest class mean of the flattened pixels, cross-fitted."

    @dataclass(frozen=True)
    class Config:
        folds: int = 2
        temperature: float = 10.0

    def train(self, images, labels, seed):
        x = images.reshape(len(images), -1) / 255.0
        means = np.stack([x[labels == c].mean(axis=0) for c in range(self.n_classes)])
        self.epoch_done(accuracy=float(np.mean(self._probs(means, x).argmax(1) == labels)))
        return means

    def predict(self, means, images, seed):
        return self._probs(means, images.reshape(len(images), -1) / 255.0), None

    def _probs(self, means, x):
        logits = -np.linalg.norm(x[:, None] - means[None], axis=2) * self.config.temperature
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
'''

TOY_IMAGES = '''
"""Sixty 8x8 greyscale images of three brightness levels; a few labels flipped."""

import numpy as np

from benchmark.plugins import Dataset
from benchmark.task import CleaningTask


class ToyImages(Dataset):
    name = "toyimages"
    description = "Sixty tiny images of three brightness levels."

    def load(self, data_root=None):
        rng = np.random.default_rng(0)
        true = np.arange(60) % 3
        images = (rng.integers(0, 40, size=(60, 8, 8)) + 90 * true[:, None, None]).astype(np.uint8)
        noisy = true.copy()
        noisy[[1, 7, 20, 33, 50]] = (noisy[[1, 7, 20, 33, 50]] + 1) % 3
        return CleaningTask(
            name="toyimages",
            true_dist=np.eye(3)[true],
            noisy_labels=noisy,
            class_names=("dark", "grey", "light"),
            budget_multiplier=2.0,
            load_images=lambda: images,
        )
'''


@pytest.fixture
def plugin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "plugins"
    for folder, name, text in [
        ("learners", "nearest_mean", NEAREST_MEAN),
        ("datasets", "toyimages", TOY_IMAGES),
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(root))
    registry.refresh()
    yield root
    registry.refresh()


def test_a_small_learner_file_runs_end_to_end(plugin_root: Path, tmp_path: Path, capsys) -> None:
    from benchmark.cli import main

    assert main(["list", "learners"]) == 0
    listed = capsys.readouterr().out
    assert "  nearest_mean " in listed and "nearest_mean.py" in listed
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "--dataset", "toyimages", "--learner", "nearest_mean"]
    args += ["--strategy", "loss", "--strategy", "random", "--seeds", "0-1"]
    assert main([*args, "--out", str(out), "--cache", str(cache), "--no-progress"]) == 0
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert {r["learner"] for r in rows} == {"nearest_mean"} and {r["status"] for r in rows} == {"ok"}
    assert list((cache / "nearest_mean").glob("*.npz"))  # the fitted posteriors were cached
