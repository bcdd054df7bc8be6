"""An ensemble of K independently seeded fits of a base learner.

Member 0 is the base learner fitted with the ensemble's own seed; member k > 0 with
:func:`~benchmark.posteriors.crossfit.derived_seed` ``(seed, k)``. Each member is fetched through the
posterior cache (:func:`benchmark.posteriors.cache.fetch`): looked up in ``<cache>/ensemble/members/``
and in the cache folders of :func:`benchmark.posteriors.cache.artifact_dirs`, so a member fitted before
(the base learner's own entry for that seed, shipped or cached) is read instead of fitted
again; a member fitted here is stored in ``<cache>/ensemble/members/``, so an ensemble that
stops half-way keeps the members it finished. The members are not shipped with the results
(only the ensemble's own entries are).

Posteriors: ``probs`` is the mean of the members' posteriors; ``stochastic`` is the members'
posteriors (K, N, C), the samples that BALD's mutual information reads (deep ensembles as a
posterior sample, in place of MC dropout). Each member's posteriors are the base learner's own
(out-of-fold or in-sample, whatever its ``posteriors`` parameter says).

``base`` names a registered learner, used with its default parameters except ``posteriors``
(``oof`` or ``insample`` members) and ``views`` (training views averaged per in-sample
posterior), for bases that have them; a base configured otherwise is a learner of its own (a
plugin subclass that sets its defaults).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from benchmark import registry
from benchmark.plugins import Learner, Param, Posteriors
from benchmark.posteriors.cache import artifact_dirs, fetch, key_params
from benchmark.posteriors.cache_entry import canonical_json
from benchmark.posteriors.crossfit import derived_seed
from benchmark.task import CleaningTask

#: Sub-folder of the ensemble's cache folder that its members' entries are written to (the
#: ensemble's own entries are what a benchmark reads; its members are kept to be re-used).
MEMBERS = "members"
#: The ensemble's parameters that are the base learner's own, set on every member when given.
PASSED_ON = ("posteriors", "views")


class Ensemble(Learner):
    name = "ensemble"
    description = "K independently seeded fits of a base learner; members are BALD's posterior samples."
    version = "1"
    parameters = {
        "base": Param(["smallcnn"], type=str),
        "members": Param([3], type=int, low=2, high=64),
        # passed on to the base learner: out-of-fold or in-sample members (None: its default)
        "posteriors": Param([None], type=str, optional=True, choices=("oof", "insample")),
        # passed on too: training views averaged per in-sample posterior (None: its default)
        "views": Param([None], type=int, optional=True, low=1, high=64),
    }
    key_neutral = {"views": None}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        base = str(self.params["base"])
        if base == self.name:
            raise ValueError("learner ensemble: base may not be ensemble itself")
        if "[" in base:
            raise ValueError(f"learner ensemble: base={base!r} must be a learner name without parameters")
        cls = registry.get("learner", base)  # unknown names fail here, with suggestions
        self.needs_images = cls.needs_images  # type: ignore[misc]  # as its base
        for passed in PASSED_ON:
            if self.params.get(passed) is not None and passed not in cls.parameters:
                raise ValueError(f"learner ensemble: base {base} has no `{passed}` parameter to set")
        # The cache key follows the base learner: its version and every parameter.
        member = self.base()
        digest = hashlib.sha256(
            canonical_json({"params": key_params(member), "version": member.version}).encode()
        )
        self.version = f"{type(self).version}+{base}-{digest.hexdigest()[:12]}"  # type: ignore[misc]

    def base(self) -> Learner:
        """The base learner: its default parameters, and ``posteriors`` and ``views`` when set."""
        cls = registry.get("learner", str(self.params["base"]))
        return cls(**{k: self.params[k] for k in PASSED_ON if self.params.get(k) is not None})

    def member_seeds(self, seed: int) -> list[int]:
        """The seed of each member: ``seed`` itself, then derived seeds."""
        return [seed] + [derived_seed(seed, k) for k in range(1, int(self.params["members"]))]

    def fit_predict(self, task: CleaningTask, *, seed: int, progress: bool = True) -> Posteriors:
        start = time.perf_counter()
        base = self.base()
        write_dir, read_dirs = artifact_dirs()
        members_dir = write_dir / self.name / MEMBERS
        members: list[Posteriors] = []
        fitted = 0
        for member_seed in self.member_seeds(seed):
            found = fetch(
                task,
                base,
                member_seed,
                cache_dir=members_dir,
                extra_cache_dirs=[write_dir, *read_dirs],
                progress=progress,
            )
            members.append(found.posteriors)
            fitted += int(found.fitted)
        return self._combine(task, members, start, fitted)

    def refit(
        self, task: CleaningTask, labels: np.ndarray, *, seed: int, progress: bool = False
    ) -> Posteriors:
        """Every member re-fitted on ``labels`` (the base learner's own ``refit``)."""
        start = time.perf_counter()
        if not hasattr(self, "_members"):
            self._members = [self.base() for _ in self.member_seeds(seed)]
        members = [
            m.refit(task, labels, seed=s, progress=progress)
            for m, s in zip(self._members, self.member_seeds(seed), strict=True)
        ]
        return self._combine(task, members, start, len(members))

    def _combine(
        self, task: CleaningTask, members: list[Posteriors], start: float, fitted: int
    ) -> Posteriors:
        stacked = np.stack([np.asarray(m.probs, dtype=np.float32) for m in members])
        probs = stacked.mean(axis=0)
        probs /= probs.sum(axis=1, keepdims=True)
        true = task.true_labels
        accuracy = [float(np.mean(m.probs.argmax(axis=1) == true)) for m in members]
        member_seconds = [float((m.info or {}).get("seconds") or 0.0) for m in members]
        info: dict[str, Any] = {
            "accuracy_true": float(np.mean(probs.argmax(axis=1) == true)),
            "member_accuracy_true": accuracy,
            "members": len(members),
            "members_fitted": fitted,
            # what the members cost when they were fitted (cached ones included)
            "seconds": round(sum(member_seconds), 2),
            "seconds_this_call": round(time.perf_counter() - start, 2),
        }
        return Posteriors(probs=probs.astype(np.float32), stochastic=stacked, info=info)

    def display_name(self) -> str:
        """``"5-member ensemble, in-sample, 8 views"``: the members, the base learner unless it
        is smallcnn, and the posteriors and views it passes on (else the base's defaults)."""
        base = str(self.params["base"])
        declared = registry.get("learner", base).parameters
        posteriors = self.params["posteriors"] or declared.get("posteriors", [None])[0]
        views = self.params["views"] or declared.get("views", [1])[0]
        parts = [f"{self.params['members']}-member ensemble" + ("" if base == "smallcnn" else f" of {base}")]
        if posteriors in ("insample", "oof"):
            parts.append("in-sample" if posteriors == "insample" else "out-of-fold")
        if views and int(views) > 1:
            parts.append(f"{views} views")
        return ", ".join(parts)
