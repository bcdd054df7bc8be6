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
``int``, ``float``, ``bool``, ``str`` or ``str | None``; a ``folds`` field is required). The
plugin's ``parameters`` grid is derived from it, and ``self.config`` is the instance built from
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

The model is whatever ``train`` returns, so richer learners fit without changing this base:

- co-teaching: ``train`` trains a pair of networks side by side (each picking the small-loss
  samples the other learns from), calls ``epoch_done`` once per epoch of the pair, and returns
  the pair; ``predict`` averages the two networks' posteriors (or uses one of them).
- a frozen encoder plus a head: ``session`` loads the encoder, ``prepare`` runs it once over
  every image and returns the (N, D) features; ``train`` and ``predict`` see features only.
- an ensemble of K members: ``train`` trains K models, each seeded from
  ``derived_seed(seed, member)``, and returns the list; ``predict`` returns their mean as
  ``probs`` and the K members' posteriors as ``stochastic`` (K, n, C). ``progress_steps``
  returns K x epochs so the bar counts every member's epochs.

This module imports NumPy only; torch learners build on
:class:`benchmark.learners._torch.TorchLearner`, which adds the device and deterministic
thread settings.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from benchmark.plugins import Learner, Param, Posteriors
from benchmark.task import CleaningTask

Prediction = tuple[np.ndarray, np.ndarray | None]
_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}

# --------------------------------------------------------------------------- folds


def fold_assignment(labels: np.ndarray, folds: int, *, seed: int) -> np.ndarray:
    """(N,) int64 fold index in 0..folds-1 of each sample, stratified by ``labels``.

    Samples are shuffled with ``seed`` and dealt out class by class, so every fold holds each
    class in proportion (fold sizes differ by at most one).
    """
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds must be >= 2 for out-of-sample posteriors, got {folds}")
    if labels.shape[0] < folds:
        raise ValueError(f"cannot split {labels.shape[0]} samples into {folds} folds")
    order = np.random.default_rng(seed).permutation(labels.shape[0])
    order = order[np.argsort(labels[order], kind="stable")]
    fold_of = np.empty(labels.shape[0], dtype=np.int64)
    fold_of[order] = np.arange(labels.shape[0]) % folds
    return fold_of


def cross_fit(
    fold_of: np.ndarray, fit_and_predict: Callable[[np.ndarray, np.ndarray], Prediction]
) -> Prediction:
    """Out-of-sample predictions: fold k is predicted by a model fitted on every other fold.

    Args:
        fold_of: (N,) fold index of each sample (see :func:`fold_assignment`).
        fit_and_predict: ``(train_idx, test_idx) -> (probs (n, C), stochastic (T, n, C) or
            None)`` fits on ``train_idx`` and predicts ``test_idx``; called once per fold, in
            fold order.

    Returns:
        probs (N, C) and stochastic (T, N, C) (None when every fold gave None), float32, in
        sample order.
    """
    probs: np.ndarray | None = None
    stochastic: np.ndarray | None = None
    for i, k in enumerate(np.unique(fold_of)):
        test_idx = np.flatnonzero(fold_of == k)
        train_idx = np.flatnonzero(fold_of != k)
        p, s = fit_and_predict(train_idx, test_idx)
        if i == 0:
            probs = np.zeros((fold_of.shape[0], p.shape[1]), dtype=np.float32)
            if s is not None:
                stochastic = np.zeros((s.shape[0], fold_of.shape[0], p.shape[1]), dtype=np.float32)
        elif (s is None) != (stochastic is None):
            raise ValueError("fit_and_predict returned stochastic posteriors for some folds only")
        assert probs is not None
        probs[test_idx] = p
        if stochastic is not None:
            stochastic[:, test_idx] = s
    assert probs is not None
    return probs, stochastic


def derived_seed(seed: int, fold: int) -> int:
    """An independent 63-bit seed for fold ``fold`` of a fit with ``seed``."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(2, np.uint64)[0] >> 1)


def check_images(images: np.ndarray, task: CleaningTask) -> np.ndarray:
    """``images`` as (N, H, W, ch) uint8: (N, H, W) greyscale gains a channel axis."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] != task.n_samples:
        raise ValueError(
            f"{task.name}: expected images of shape ({task.n_samples}, H, W, channels), got {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{task.name}: expected uint8 images, got {images.dtype}")
    return images


# --------------------------------------------------------------------------- configuration


def _field_type(annotation: Any) -> tuple[type, bool] | None:
    """(scalar type, optional) of an annotation such as ``int`` or ``"str | None"``."""
    if isinstance(annotation, str):
        text = annotation.strip()
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional[") : -1] + " | None"
        parts = [p.strip() for p in text.split("|")]
        optional = "None" in parts
        rest = [p for p in parts if p != "None"]
        if len(rest) == 1 and rest[0] in _SCALARS:
            return _SCALARS[rest[0]], optional
        return None
    if annotation in _SCALARS.values():
        return annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in _SCALARS.values() and type(None) in typing.get_args(annotation):
            return args[0], True
    return None


def _coerce(value: Any, kind: type, optional: bool) -> Any:
    """``value`` as ``kind``; raises ValueError with the reason."""
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ValueError("may not be None")
    if kind is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("must be true or false")
    if isinstance(value, bool | np.bool_) and kind is not str:
        raise ValueError(f"must be {'an int' if kind is int else 'a number'}, not a boolean")
    if kind is int:
        if isinstance(value, float | np.floating) and not float(value).is_integer():
            raise ValueError("must be an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError("must be an integer") from None
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    return str(value)


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
        fields = _config_fields(cls, config)
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
        typed = {f.name: _field_type(f.type) or (str, False) for f in fields}
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
        for f in _config_fields(cls, cls.Config):
            kind, optional = _field_type(f.type) or (str, False)
            value = self.params.get(f.name, f.default)
            try:
                values[f.name] = _coerce(value, kind, optional)
            except ValueError as e:
                raise ValueError(f"learner {self.name}: {f.name}={value!r} {e}") from None
        try:
            config = cls.Config(**values)
        except (TypeError, ValueError) as e:
            raise ValueError(f"learner {self.name}: {e}") from e
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
        config = self.config
        if task.load_images is None:
            raise ValueError(f"{task.name}: the {self.name} learner needs images; the task has none")
        start = time.perf_counter()
        labels = task.noisy_labels
        train_accuracy: list[float] = []
        with self.session():
            images = np.asarray(task.load_images())
            fold_of = fold_assignment(labels, config.folds, seed=seed)
            data = self.prepare(images, task)
            bar = tqdm(
                total=self.progress_steps() * config.folds,
                desc=f"{self.name} {task.name}",
                unit="epoch",
                disable=not progress,
                leave=False,
            )
            folds_done = 0

            def fit_and_predict(train_idx: np.ndarray, test_idx: np.ndarray) -> Prediction:
                nonlocal folds_done
                fold_seed = derived_seed(seed, folds_done)
                folds_done += 1
                self.history = []
                model = self.train(data[train_idx], labels[train_idx], seed=fold_seed)
                if self.history and "accuracy" in self.history[-1]:
                    train_accuracy.append(self.history[-1]["accuracy"])
                return self.predict(model, data[test_idx], seed=fold_seed)

            self._bar = bar
            try:
                with bar:
                    probs, stochastic = cross_fit(fold_of, fit_and_predict)
            finally:
                self._bar = None
            extra = self.fit_info()

        predicted = probs.argmax(axis=1)
        true = task.true_labels
        info: dict[str, Any] = {
            # on the training batches of the last epoch, averaged over the fold models
            "train_accuracy_noisy": float(np.mean(train_accuracy)) if train_accuracy else None,
            # out-of-fold: each sample predicted by the model that did not see it
            "holdout_accuracy_noisy": float(np.mean(predicted == labels)),
            "accuracy_true": float(np.mean(predicted == true)),
            "balanced_accuracy_true": float(
                np.mean([np.mean(predicted[true == c] == c) for c in np.unique(true)])
            ),
            "folds": config.folds,
            "epochs": getattr(config, "epochs", None),
            "seconds": round(time.perf_counter() - start, 2),
            "device": "cpu",
            "bf16": False,
            "threads": None,
            **extra,
        }
        return Posteriors(probs=probs, stochastic=stochastic, info=info)


def _config_fields(cls: type, config: Any) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of ``cls.Config``, checked; TypeError naming what is wrong."""
    where = f"learner {cls.__name__}: Config"
    if not (dataclasses.is_dataclass(config) and isinstance(config, type)):
        raise TypeError(f"{where} must be a dataclass")
    if not config.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{where} must be frozen: @dataclass(frozen=True)")
    fields = dataclasses.fields(config)
    for f in fields:
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{where}.{f.name} needs a default value")
        if _field_type(f.type) is None:
            raise TypeError(f"{where}.{f.name}: type {f.type} is not int, float, bool, str or str | None")
    if not any(f.name == "folds" and _field_type(f.type) == (int, False) for f in fields):
        raise TypeError(f"{where} needs a field `folds: int`")
    return fields
