"""Cross-fitting: out-of-sample posteriors from learners trained on the noisy labels.

A network that has seen a sample's noisy label tends to memorise it, and then its posterior
agrees with the noise: useless for ranking. So the samples are split into ``folds`` stratified
folds, one model is trained per fold on the *other* folds, and each sample's posterior comes
from the model that never saw it (k-fold cross-fitting, as cleanlab's confident learning does).

:class:`CrossFitLearner` does this for any image learner, which then writes two methods::

    class NearestMean(CrossFitLearner):
        name = "nearest_mean"

        @dataclass(frozen=True)
        class Config:
            folds: int = 2
            temperature: float = 1.0

        def train(self, images, labels, seed):          # -> any model object
            ...
        def predict(self, model, images, seed):         # -> probs (n, C), stochastic or None
            ...

The hyper-parameters are the fields of the frozen dataclass ``Config`` (each with a default;
``int``, ``float``, ``bool``, ``str``, or one of them ``| None``; a ``folds`` field is
required). The plugin's ``parameters`` grid is derived from it, and ``self.config`` is the instance built from
``self.params``, values coerced to the field types (``"24"`` to 24, ``"false"`` to False, ``""``
to None where the field is optional) and checked by the dataclass's own ``__post_init__``. A
class may set ``parameters`` itself (to sweep a grid), with the same keys.

A fit (:meth:`CrossFitLearner.fit_predict`) runs, inside :meth:`~CrossFitLearner.session`:

1. ``data = self.prepare(images, task)``: once, over the whole dataset (normalise, move to the
   device, resize, or run a frozen encoder). ``data[idx]`` must select samples by an int64
   index array.
2. For each fold ``k``: ``model = self.train(data[train], labels[train], seed=s)`` and
   ``self.predict(model, data[test], seed=s)``, ``s = derived_seed(seed, k)``. ``train`` calls
   :meth:`~CrossFitLearner.epoch_done` after each epoch (progress bar, training accuracy).

In-sample posteriors, the paper's reference way: with a Config field ``posteriors: str``
set to ``"insample"`` (``"oof"`` is the default), one model is trained on every sample
(seed ``derived_seed(seed, 0)``) and :meth:`~CrossFitLearner.predict_insample` predicts the
samples it was trained on; image learners override it to predict with their training
augmentation on. Which of the two ranks better is a question the benchmark answers.

Active runs (the paper's Algorithm 1): a learner that implements
:meth:`~CrossFitLearner.finetune` keeps the models of its last fit on the instance, and each
:meth:`~CrossFitLearner.refit` fine-tunes every kept model on its own training samples under
the current majority labels, then predicts again. The first re-fit of a run whose posteriors
came from the cache has no models to fine-tune: it fits from scratch on the current labels.

The model is whatever ``train`` returns, so richer learners fit without changing this base
(``benchmark/learners/``): co-teaching's ``train`` returns a pair of networks, each trained
on the other's small-loss samples; the self-supervised learner's ``prepare`` returns the
frozen encoder's features, and its ``train`` fits a linear head on them. An ensemble is a
learner of its own that combines K seeded fits of any base learner.

This module imports NumPy only; torch learners build on
:class:`benchmark.learners._torch.TorchLearner`, which adds the device and deterministic
thread settings.
"""

from __future__ import annotations

__all__ = [
    "POSTERIOR_MODES",
    "CrossFitLearner",
    "Prediction",
    "Split",
    "check_images",
    "cross_fit",
    "derived_seed",
    "fit_splits",
    "fold_assignment",
    "fold_splits",
]

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from benchmark.plugins import Learner, Param, Posteriors
from benchmark.posteriors.folds import (
    Prediction,
    Split,
    check_images,
    cross_fit,
    derived_seed,
    fit_splits,
    fold_assignment,
    fold_splits,
)
from benchmark.posteriors.learner_config import coerce, config_fields, field_type
from benchmark.task import CleaningTask

#: The ``posteriors`` modes: out-of-fold (k-fold cross-fitted) or in-sample (one model predicts
#: its own training samples).
POSTERIOR_MODES = ("oof", "insample")

# --------------------------------------------------------------------------- the learner base


class CrossFitLearner(Learner):
    """A learner that cross-fits ``train``/``predict`` over stratified folds (see the module doc).

    Subclasses declare ``name``, a frozen dataclass ``Config`` and the methods :meth:`train` and
    :meth:`predict`; :meth:`prepare`, :meth:`session`, :meth:`fit_info` and
    :meth:`progress_steps` are optional hooks.
    """

    #: The hyper-parameters: a frozen dataclass whose fields all have defaults.
    Config: ClassVar[type]
    #: Number of classes of the task being fitted; set by :meth:`prepare`.
    n_classes: int
    #: Per epoch of the current fold (cleared before each fold): what :meth:`epoch_done` got.
    history: list[dict[str, float]]
    #: The progress bar of the fit under way, if any.
    _bar: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        config = getattr(cls, "Config", None)
        if config is None:
            return
        fields = config_fields(cls, config)
        if "parameters" in cls.__dict__:
            if set(cls.parameters) != {f.name for f in fields}:
                raise TypeError(
                    f"learner {cls.__name__}: the keys of `parameters` ({', '.join(cls.parameters)}) "
                    f"must be the fields of its Config ({', '.join(f.name for f in fields)})"
                )
            grids = {f.name: list(cls.parameters[f.name]) for f in fields}
        elif "Config" in cls.__dict__:
            grids = {f.name: [f.default] for f in fields}
        else:
            return
        # Each parameter declared with its field's type, so that a bad value is refused when
        # the learner is named, before any work.
        typed = {f.name: field_type(f.type) or (str, False) for f in fields}
        cls.parameters = {
            name: Param(grid, type=typed[name][0], optional=typed[name][1]) for name, grid in grids.items()
        }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _ = self.config  # the Config's own checks (ranges, combinations) run when the learner is named

    # ----------------------------------------------------------------------- configuration

    @property
    def config(self) -> Any:
        """The frozen ``Config`` built from ``self.params``; ValueError naming a bad value."""
        cached = self.__dict__.get("_config")
        if cached is not None and cached[0] == self.params:
            return cached[1]
        cls = type(self)
        values = {}
        for f in config_fields(cls, cls.Config):
            kind, optional = field_type(f.type) or (str, False)
            value = self.params.get(f.name, f.default)
            try:
                values[f.name] = coerce(value, kind, optional)
            except ValueError as e:
                raise ValueError(f"learner {self.name}: {f.name}={value!r} {e}") from None
        try:
            config = cls.Config(**values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"learner {self.name}: {e}") from e
        mode = getattr(config, "posteriors", "oof")
        if mode not in POSTERIOR_MODES:
            raise ValueError(
                f"learner {self.name}: posteriors={mode!r} must be one of {', '.join(POSTERIOR_MODES)}"
            )
        self.__dict__["_config"] = (dict(self.params), config)
        return config

    # ----------------------------------------------------------------------- hooks

    @contextmanager
    def session(self) -> Iterator[None]:
        """Around the whole fit (loading images, preparing, every fold): devices, thread
        settings, weights to load. The default does nothing."""
        yield

    def prepare(self, images: np.ndarray, task: CleaningTask) -> Any:
        """Whole-dataset preprocessing, once before the folds; returns data indexable by an int64
        index array. The default checks ``images`` (see :func:`check_images`), records
        ``self.n_classes`` and returns the (N, H, W, ch) uint8 array; overrides call it first."""
        self.n_classes = task.n_classes
        return check_images(images, task)

    def train(self, images: Any, labels: np.ndarray, seed: int) -> Any:
        """A model trained on ``images`` (a selection of what :meth:`prepare` returned) and their
        noisy ``labels`` (n,) int64; calls :meth:`epoch_done` after each epoch."""
        raise NotImplementedError

    def predict(self, model: Any, images: Any, seed: int) -> Prediction:
        """Posteriors of ``images``: probs (n, C) float32 and stochastic (T, n, C) float32 or None."""
        raise NotImplementedError

    def predict_insample(self, model: Any, images: Any, seed: int) -> Prediction:
        """Posteriors of the samples ``model`` was trained on (``posteriors=insample``). The
        default is :meth:`predict`; image learners predict with their training augmentation on,
        as the paper's reference does."""
        return self.predict(model, images, seed)

    def finetune(self, model: Any, images: Any, labels: np.ndarray, seed: int) -> Any:
        """``model`` fine-tuned on ``images`` and their current ``labels`` (an active run's
        re-fit). Learners that do not override it are re-fitted from scratch instead."""
        raise NotImplementedError

    def finetune_steps(self) -> int:
        """How many times :meth:`finetune` calls :meth:`epoch_done` (the progress bar)."""
        return int(getattr(self.config, "finetune_epochs", 1))

    def fit_info(self) -> dict[str, Any]:
        """Learner-specific entries of ``Posteriors.info``, asked for at the end of the session."""
        return {}

    def progress_steps(self) -> int:
        """How many times :meth:`train` calls :meth:`epoch_done` per fold (the progress bar)."""
        return int(getattr(self.config, "epochs", 1))

    def epoch_done(self, *, loss: float | None = None, accuracy: float | None = None) -> None:
        """Called by :meth:`train` after each epoch: the mean training loss and the accuracy on
        the (noisy) training labels of that epoch, either may be None."""
        entry: dict[str, float] = {}
        if loss is not None:
            entry["loss"] = float(loss)
        if accuracy is not None:
            entry["accuracy"] = float(accuracy)
        if not hasattr(self, "history"):
            self.history = []
        self.history.append(entry)
        if self._bar is not None:
            self._bar.update(1)
            postfix = {"loss": entry.get("loss"), "acc": entry.get("accuracy")}
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items() if v is not None})

    # ----------------------------------------------------------------------- the fit

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        if task.load_images is None:
            raise ValueError(f"{task.name}: the {self.name} learner needs images; the task has none")
        start = time.perf_counter()
        labels = task.noisy_labels
        with self.session():
            images = np.asarray(task.load_images())
            splits = self.splits(labels, seed)
            data = self.prepare(images, task)
            kept = _KeptFit(task.name, task.n_samples, data, splits) if self._finetunes() else None
            probs, stochastic, train_accuracy = self._run(
                task.n_samples,
                splits,
                progress,
                f"{self.name} {task.name}",
                lambda k, train, test: self._fit_one(data, labels, train, test, derived_seed(seed, k), kept),
            )
            extra = self.fit_info()
        self._kept = kept
        return self._posteriors(task, probs, stochastic, train_accuracy, start, extra)

    def refit(
        self, task: CleaningTask, labels: np.ndarray, *, seed: int, progress: bool = False
    ) -> Posteriors:
        """Posteriors after re-fitting on ``labels`` (N,), the current majority labels.

        A learner with a :meth:`finetune` hook keeps the models of its last fit (or re-fit) on
        this instance; each later re-fit fine-tunes every kept model on its own training
        samples under the new labels and predicts again, as the paper's active loop does. With
        no kept models (the first re-fit of a run whose posteriors came from the cache), the
        learner is fitted from scratch on ``labels``, and those models are kept.
        """
        kept: _KeptFit | None = self.__dict__.get("_kept")
        if (
            not self._finetunes()
            or kept is None
            or (kept.task, kept.n_samples) != (task.name, task.n_samples)
        ):
            return super().refit(task, labels, seed=seed, progress=progress)
        start = time.perf_counter()
        labels = np.asarray(labels, dtype=np.int64)
        kept.rounds += 1
        with self.session():

            def finetune_one(k: int, train_idx: np.ndarray, test_idx: np.ndarray) -> Prediction:
                fold_seed = derived_seed(derived_seed(seed, k), kept.rounds)
                kept.models[k] = self.finetune(
                    kept.models[k], kept.data[train_idx], labels[train_idx], fold_seed
                )
                return self._predict_split(kept.models[k], kept.data[test_idx], fold_seed)

            probs, stochastic, train_accuracy = self._run(
                kept.n_samples,
                kept.splits,
                progress,
                f"{self.name} {task.name} (fine-tune)",
                finetune_one,
                steps=self.finetune_steps(),
            )
            extra = self.fit_info()
        relabelled = replace(task, noisy_labels=labels)
        return self._posteriors(
            relabelled, probs, stochastic, train_accuracy, start, {**extra, "finetuned": kept.rounds}
        )

    # ----------------------------------------------------------------------- the fit, in parts

    @property
    def insample(self) -> bool:
        """Whether posteriors are in-sample (``posteriors=insample``): one model on every sample."""
        return getattr(self.config, "posteriors", "oof") == "insample"

    def splits(self, labels: np.ndarray, seed: int) -> list[Split]:
        """(train_idx, test_idx) of each model: the stratified folds, or every sample twice in
        the in-sample mode."""
        if self.insample:
            every = np.arange(labels.shape[0])
            return [(every, every)]
        return fold_splits(fold_assignment(labels, self.config.folds, seed=seed))

    def _finetunes(self) -> bool:
        return type(self).finetune is not CrossFitLearner.finetune

    def _predict_split(self, model: Any, images: Any, seed: int) -> Prediction:
        return (
            self.predict_insample(model, images, seed) if self.insample else self.predict(model, images, seed)
        )

    def _fit_one(
        self,
        data: Any,
        labels: np.ndarray,
        train_idx: np.ndarray,
        test_idx: np.ndarray,
        seed: int,
        kept: _KeptFit | None,
    ) -> Prediction:
        model = self.train(data[train_idx], labels[train_idx], seed=seed)
        if kept is not None:
            kept.models.append(model)
        return self._predict_split(model, data[test_idx], seed)

    def _run(
        self,
        n_samples: int,
        splits: Sequence[Split],
        progress: bool,
        desc: str,
        fit_one: Callable[[int, np.ndarray, np.ndarray], Prediction],
        steps: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, list[float]]:
        """Runs ``fit_one(k, train_idx, test_idx)`` over the splits under one progress bar;
        probs, stochastic and the last-epoch training accuracy of each model."""
        train_accuracy: list[float] = []
        done = 0

        def one(train_idx: np.ndarray, test_idx: np.ndarray) -> Prediction:
            nonlocal done
            self.history = []
            prediction = fit_one(done, train_idx, test_idx)
            done += 1
            if self.history and "accuracy" in self.history[-1]:
                train_accuracy.append(self.history[-1]["accuracy"])
            return prediction

        total = (self.progress_steps() if steps is None else steps) * len(splits)
        self._bar = tqdm(total=total, desc=desc, unit="epoch", disable=not progress, leave=False)
        try:
            with self._bar:
                probs, stochastic = fit_splits(n_samples, splits, one)
        finally:
            self._bar = None
        return probs, stochastic, train_accuracy

    def _posteriors(
        self,
        task: CleaningTask,
        probs: np.ndarray,
        stochastic: np.ndarray | None,
        train_accuracy: list[float],
        start: float,
        extra: dict[str, Any],
    ) -> Posteriors:
        predicted = probs.argmax(axis=1)
        true = task.true_labels
        mode = "insample" if self.insample else "oof"
        info: dict[str, Any] = {
            # on the training batches of the last epoch, averaged over the models
            "train_accuracy_noisy": float(np.mean(train_accuracy)) if train_accuracy else None,
            # out-of-fold: each sample predicted by the model that did not see it; in-sample:
            # by the model trained on it
            f"{'holdout' if mode == 'oof' else 'insample'}_accuracy_noisy": float(
                np.mean(predicted == task.noisy_labels)
            ),
            "accuracy_true": float(np.mean(predicted == true)),
            "balanced_accuracy_true": float(
                np.mean([np.mean(predicted[true == c] == c) for c in np.unique(true)])
            ),
            "folds": None if self.insample else self.config.folds,
            "epochs": getattr(self.config, "epochs", None),
            "seconds": round(time.perf_counter() - start, 2),
            "device": "cpu",
            "bf16": False,
            "threads": None,
            **extra,
        }
        if mode == "insample":
            info["posteriors"] = mode
        return Posteriors(probs=probs, stochastic=stochastic, info=info)


@dataclass
class _KeptFit:
    """The models of a learner's last fit, kept for fine-tuning in an active run."""

    task: str
    n_samples: int
    data: Any
    splits: list[Split]
    models: list[Any] = field(default_factory=list)
    rounds: int = 0
