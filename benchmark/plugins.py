"""Base classes for the three kinds of plugin: datasets, strategies and learners.

A plugin is a small class with a ``name``, a one-line ``description`` and ``parameters``: each
parameter maps to the list of values the default suite runs (the first is the default), either
a plain list, whose values also tell the parameter's type, or a :class:`Param`, which declares
the type and the allowed values once. Every value is checked and converted to its type when an
instance is made, so a bad value is an error naming the plugin, the parameter, the value and
what is allowed, before any work starts. Instances are cheap and do no other work in
``__init__``; a configured instance is named by its canonical *spec*, ``name[key=value,...]``,
which is what tables and caches record.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmark.params import Param, format_spec, format_value, parse_spec
from benchmark.task import CleaningTask

__all__ = [
    "Dataset",
    "Learner",
    "Param",
    "Plugin",
    "Posteriors",
    "ScoringContext",
    "Strategy",
    "format_spec",
    "parse_spec",
]


class Plugin:
    kind: ClassVar[str] = "plugin"
    name: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, **params: Any) -> None:
        declared = self.declared()
        unknown = sorted(set(params) - set(declared))
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            raise ValueError(
                f"{self.kind} {self.name!r} has no parameter {', '.join(unknown)} (parameters: {known})"
            )
        self.params: dict[str, Any] = {k: v[0] for k, v in declared.items()}
        for key, value in params.items():
            try:
                self.params[key] = declared[key].check(value)
            except ValueError as exc:
                raise ValueError(
                    f"{self.kind} {self.name}: {key}={format_value(value)} is not allowed ({exc}): "
                    f"{key} must be {declared[key].allowed()}"
                ) from None

    @classmethod
    def declared(cls) -> dict[str, Param]:
        """Every parameter as a :class:`Param` (plain lists converted)."""
        return {k: Param.of(v) for k, v in cls.parameters.items()}

    @property
    def spec(self) -> str:
        """``name`` or ``name[k=v,...]`` listing the parameters that differ from defaults...

        ...except that every parameter with more than one grid value is always shown, so that
        the cells of a grid are told apart in tables.
        """
        shown = {
            k: v
            for k, v in self.params.items()
            if len(self.parameters.get(k, [])) > 1 or v != self.parameters[k][0]
        }
        return format_spec(self.name, shown)

    @classmethod
    def grid(cls) -> Iterator[dict[str, Any]]:
        """Every combination of the declared parameter values."""
        keys = list(cls.parameters)
        for values in itertools.product(*(cls.parameters[k] for k in keys)):
            yield dict(zip(keys, values, strict=True))

    def __repr__(self) -> str:
        return f"<{self.kind} {self.spec}>"

    def display_name(self) -> str:
        """The name shown in titles, legends and the site's cards (tables keep the spec beside
        it). By default the spec in words, ``name (k = v, k = v)``, which wraps between words;
        a plugin overrides it to say what its parameters mean. Presentation only: the source
        of a ``display_name`` method is no part of a cell's identity
        (:mod:`benchmark.run.identity`), so a new one re-runs nothing."""
        from benchmark.params import readable_spec

        return readable_spec(self.spec)


class Dataset(Plugin):
    """Builds a :class:`CleaningTask` from files under a data root."""

    kind = "dataset"
    #: Learners the default suite runs on this dataset (empty: the suite's defaults).
    learners: ClassVar[tuple[str, ...]] = ()

    def load(self, data_root: Path | None = None) -> CleaningTask:
        raise NotImplementedError

    def display_name(self, noise_rate: float | None = None) -> str:
        """As :meth:`Plugin.display_name`, with the task's noise rate when given (the report
        takes it from the runs table): ``"name (k = v) (15.4 % noise)"``."""
        from benchmark.params import noise_text, readable_spec

        return readable_spec(self.spec) + noise_text(noise_rate)


@dataclass(frozen=True, eq=False)
class ScoringContext:
    """What a strategy may look at when it scores samples.

    Attributes:
        label_counts: (N, C) current expert label counts (one-hot at the noisy label at start).
        posteriors: (N, C) model posteriors, or None when the run has none.
        stochastic: (T, N, C) stochastic posteriors (MC dropout, ensembles), or None.
        true_dist: (N, C) the expert's distribution; only given to strategies whose
            ``requires`` contains ``"truth"`` (the oracle).
        seed: the run's seed, for strategies that draw random numbers.
    """

    label_counts: np.ndarray
    posteriors: np.ndarray | None = None
    stochastic: np.ndarray | None = None
    true_dist: np.ndarray | None = None
    seed: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.label_counts.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.label_counts.shape[1])

    @property
    def label_dist(self) -> np.ndarray:
        """(N, C) the current label counts normalised to distributions."""
        counts = self.label_counts.astype(np.float64)
        return counts / counts.sum(axis=1, keepdims=True)

    @property
    def current_labels(self) -> np.ndarray:
        """(N,) the current majority label."""
        return np.argmax(self.label_counts, axis=1)

    def rows(self, idx: np.ndarray) -> ScoringContext:
        """The same context restricted to the samples ``idx``."""
        return ScoringContext(
            label_counts=self.label_counts[idx],
            posteriors=None if self.posteriors is None else self.posteriors[idx],
            stochastic=None if self.stochastic is None else self.stochastic[:, idx],
            true_dist=None if self.true_dist is None else self.true_dist[idx],
            seed=self.seed,
        )


class Strategy(Plugin):
    """Scores samples for relabelling: higher = relabel sooner.

    The contract with the simulator, declared by class attributes:

    - ``requires`` names what ``score`` reads besides the label counts: ``"posteriors"``,
      ``"stochastic"`` or ``"truth"``. The engine checks it before scoring: a run that lacks
      one is skipped with the reason, so ``score`` may rely on those fields being set.
    - ``row_local`` (True by default): the score of a sample depends only on that sample's own
      row of the context (its label counts, posteriors, ...), never on other samples'. The
      simulator then scores once and sorts once. A strategy that normalises over the whole
      dataset must set it False; it is then simulated by the per-step reference loop
      (:mod:`benchmark.simulation.reference`), which re-scores every sample at every selection:
      correct, and slower.
    - ``reselect``: the strategy may return to a sample whose majority is still wrong after
      its annotation (the oracle); the simulator re-scores that one row and keeps it in a
      priority queue.

    ``score`` must return one finite number per sample; anything else fails the run with a
    message naming the strategy.
    """

    kind = "strategy"
    requires: ClassVar[frozenset[str]] = frozenset({"posteriors"})
    row_local: ClassVar[bool] = True
    reselect: ClassVar[bool] = False
    #: True when a sample's score depends on its label counts only through its current
    #: majority (the oracle): the simulator then tabulates every sample's score under every
    #: majority once, instead of re-scoring single rows on returns.
    majority_only: ClassVar[bool] = False

    def score(self, ctx: ScoringContext) -> np.ndarray:
        """(N,) float scores; higher = relabel sooner. Ties are broken at random by the caller."""
        raise NotImplementedError

    @classmethod
    def uses_model(cls) -> bool:
        """Whether re-fitting the learner can change this strategy's ranking (active runs)."""
        return not cls.reselect and bool(cls.requires & {"posteriors", "stochastic"})


@dataclass(frozen=True, eq=False)
class Posteriors:
    """A learner's output for every sample of a task.

    Attributes:
        probs: (N, C) float32, rows sum to 1.
        stochastic: (T, N, C) float32 samples of the posterior, or None.
        info: small JSON-serialisable facts about the fit (accuracies, epochs, seconds).
    """

    probs: np.ndarray
    stochastic: np.ndarray | None = None
    info: dict[str, Any] | None = None


class Learner(Plugin):
    """Fits a model on a task's noisy labels and returns posteriors for every sample.

    Outputs are cached on disk under a hash of ``cache_key`` (see :mod:`benchmark.posteriors.cache`);
    bump ``version`` whenever a change to the code would change what it returns.
    """

    kind = "learner"
    version: ClassVar[str] = "1"
    #: False for learners that read only label tables (no images needed).
    needs_images: ClassVar[bool] = True
    #: False for learners so cheap that caching their output on disk is not worth a file.
    cache: ClassVar[bool] = True
    #: Parameters added after cache entries were made, each with the value that does what the
    #: learner did before the parameter existed: at that value it stays out of the cache key
    #: (:func:`benchmark.posteriors.cache.key_params`), so the entries made before it are still found.
    key_neutral: ClassVar[dict[str, Any]] = {}

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        raise NotImplementedError

    def refit(
        self, task: CleaningTask, labels: np.ndarray, *, seed: int, progress: bool = False
    ) -> Posteriors:
        """Posteriors after re-fitting on ``labels`` (N,), the current majority labels: the
        active loop of the paper's Algorithm 1. This default fits from scratch on the
        relabelled task; learners that can fine-tune their last weights override it."""
        return self.fit_predict(replace(task, noisy_labels=labels), seed=seed, progress=progress)
