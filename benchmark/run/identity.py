"""A cell's identity: a fingerprint of everything that determines its numbers.

:class:`~benchmark.config.CellConfig` names a cell by its specs (dataset, learner, strategy,
seed, target, re-fit interval); its hash names the cell's files and rows. The *identity*
(``cell_id`` in the run tables) adds what the specs do not say but the numbers depend on:

- the dataset's data: a fingerprint of the task the adapter built (true distributions, noisy
  labels, class names, budget multiplier), so a changed data file or adapter changes it;
- the posteriors: a fingerprint of their content (probabilities and stochastic samples), and
  the cache key that names the learner's version and parameters;
- the strategy's code: the source of the file that defines its plugin, so that editing a
  strategy file changes its cells' identity and no other's;
- the simulation code: the sources of :mod:`benchmark.simulation`, the plugin and task
  interfaces (:mod:`benchmark.plugins`, :mod:`benchmark.task`) and the function that runs a
  cell (:func:`benchmark.run.runner.run_cell`);
- for an active run, the learner's code too (its plugin file and :mod:`benchmark.learners`),
  whose re-fits are part of the result;
- the versions of NumPy and cleanlab, whose numerics the strategies use.

A plugin's ``display_name`` methods (how it is named in titles and legends) change no number:
their source is left out of every code fingerprint (:func:`without_presentation`), so giving a
plugin a display name, or changing one, keeps its cells.

``alcbench suite`` keeps a committed row whose identity still matches and runs only the cells
whose identity is new or changed (:func:`benchmark.run.runner.execute`); ``make reproduce``
re-runs them all and checks that the numbers equal the committed ones.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np

import benchmark
from benchmark import registry
from benchmark.config import CellConfig
from benchmark.plugins import Posteriors, parse_spec
from benchmark.task import CleaningTask

PACKAGE = Path(benchmark.__file__).resolve().parent
#: Files and folders of the package whose sources are the simulation code.
SIMULATION_CODE = ("simulation", "plugins.py", "task.py")
#: ... and those of the learners, which an active run's re-fits also depend on.
LEARNER_CODE = ("learners", "posteriors/crossfit.py", "posteriors/folds.py")
#: Methods that only say how a plugin is shown: no part of a code fingerprint.
PRESENTATION = frozenset({"display_name"})


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())  # each part framed by its own hash
    return h.hexdigest()


def _sources(names: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


@cache
def code_fingerprint(names: tuple[str, ...]) -> str:
    """The fingerprint of the sources of the package's files and folders ``names``."""
    files = _sources(names)
    return _digest(
        [str(p.relative_to(PACKAGE)).encode() for p in files]
        + [without_presentation(p.read_bytes()) for p in files]
    )


def without_presentation(source: bytes) -> bytes:
    """``source`` without its :data:`PRESENTATION` functions (each with its decorators and the
    blank lines just above it), so that adding one gives back the file's bytes as they were
    before it. Source that does not parse is kept whole."""
    if not any(f"def {name}".encode() in source for name in PRESENTATION):
        return source
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in PRESENTATION:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            while start > 0 and not lines[start - 1].strip():
                start -= 1
            drop.update(range(start, node.end_lineno or node.lineno))
    return b"".join(line for i, line in enumerate(lines) if i not in drop)


@cache
def simulation_fingerprint(runner_source: str) -> str:
    """The fingerprint of the simulation code: :data:`SIMULATION_CODE` and ``runner_source``,
    the source of the function that runs a cell."""
    return _digest([code_fingerprint(SIMULATION_CODE).encode(), runner_source.encode()])


def plugin_fingerprint(kind: str, name: str) -> str:
    """The fingerprint of the source file that defines plugin ``name`` of ``kind`` ("" when it
    cannot be read: a plugin built at run time has no file to fingerprint)."""
    cls = registry.get(kind, name)
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if not path:
        return ""
    try:
        stat = Path(path).stat()
    except OSError:
        return ""
    return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)


@cache
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """The fingerprint of a file's bytes (cached while its time stamp and size stay)."""
    try:
        return _digest([without_presentation(Path(path).read_bytes())])
    except OSError:
        return ""


def task_fingerprint(task: CleaningTask) -> str:
    """The fingerprint of the data a dataset adapter built."""
    return _digest(
        [
            np.ascontiguousarray(task.true_dist, dtype=np.float64).tobytes(),
            np.ascontiguousarray(task.noisy_labels, dtype=np.int64).tobytes(),
            json.dumps([list(task.class_names), float(task.budget_multiplier)]).encode(),
        ]
    )


def posteriors_fingerprint(posteriors: Posteriors) -> str:
    """The fingerprint of a learner output's content."""
    parts = [np.ascontiguousarray(posteriors.probs).tobytes(), str(posteriors.probs.dtype).encode()]
    if posteriors.stochastic is not None:
        parts += [
            np.ascontiguousarray(posteriors.stochastic).tobytes(),
            str(posteriors.stochastic.shape).encode(),
        ]
    return _digest(parts)


@cache
def _versions() -> str:
    found = []
    for distribution in ("numpy", "cleanlab"):
        try:
            found.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{distribution} absent")
    return ";".join(found)


def cell_id(config: CellConfig, *, task: str, posteriors: str, posteriors_id: str, simulation: str) -> str:
    """The identity of ``config``'s cell, given its task's and posteriors' fingerprints, the
    posteriors' cache key (or file sha256) and the :func:`simulation_fingerprint`."""
    fields = {
        "config": config.hash,
        "task": task,
        "posteriors": posteriors,
        "posteriors_id": posteriors_id,
        "strategy_code": plugin_fingerprint("strategy", parse_spec(config.strategy)[0]),
        "simulation_code": simulation,
        "versions": _versions(),
    }
    if config.active_every:
        fields["learner_code"] = _digest(
            [
                plugin_fingerprint("learner", parse_spec(config.learner)[0]).encode(),
                code_fingerprint(LEARNER_CODE).encode(),
            ]
        )
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
