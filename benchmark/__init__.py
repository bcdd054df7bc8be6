"""alcbench: a reproducible benchmark suite for active label cleaning.

The engine's sub-packages are the stages of the flow: ``posteriors`` (posterior files, the
learner cache, cross-fitting), ``learners``, ``simulation``, ``results`` (the tables and how
they are aggregated and drawn), ``run``, ``downstream``, ``report`` (the pages and the site),
then ``clean`` and ``perf``. The top level holds what every stage uses.

Modules that moved into a stage keep their old names (``benchmark.scoring``,
``benchmark.crossfit``, ...) as aliases of the new module, so plugins written against them
go on working: ``import benchmark.scoring`` gives the module ``benchmark.simulation.scoring``
itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

__version__ = "0.1.0"

#: Old module path -> where the module lives now.
MOVED: dict[str, str] = {
    "benchmark.cache": "benchmark.posteriors.cache",
    "benchmark.cache_entry": "benchmark.posteriors.cache_entry",
    "benchmark.crossfit": "benchmark.posteriors.crossfit",
    "benchmark.folds": "benchmark.posteriors.folds",
    "benchmark.learner_config": "benchmark.posteriors.learner_config",
    "benchmark.expert": "benchmark.simulation.expert",
    "benchmark.scoring": "benchmark.simulation.scoring",
    "benchmark.trajectory": "benchmark.simulation.trajectory",
    "benchmark.snapshots": "benchmark.simulation.snapshots",
    "benchmark.reference": "benchmark.simulation.reference",
    "benchmark.simulator": "benchmark.simulation.simulator",
    "benchmark.metrics": "benchmark.simulation.metrics",
    "benchmark.diagnostics": "benchmark.simulation.diagnostics",
    "benchmark.leaderboard": "benchmark.results.leaderboard",
    "benchmark.learner_summary": "benchmark.results.learner_summary",
    "benchmark.plots": "benchmark.results.plots",
    "benchmark.runner": "benchmark.run.runner",
    "benchmark.suite": "benchmark.run.suite",
    "benchmark.engines": "benchmark.run.engines",
    "benchmark.downstream_report": "benchmark.downstream.report",
    "benchmark.site": "benchmark.report.site",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module that replaced it (one object, two names)."""

    def __init__(self) -> None:
        self._own: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._own[spec.name] = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module ran under its new name. The import system has just set
        its ``__spec__`` to the alias's; give it back its own."""
        assert module.__spec__ is not None
        module.__spec__ = self._own.pop(module.__spec__.name, module.__spec__)


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.append(_Alias())
