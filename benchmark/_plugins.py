"""The private package that plugin folders are loaded into.

``benchmark._plugins.r<digest>`` stands for a plugin root (``digest``: a short hash of the
root's resolved path) and ``benchmark._plugins.r<digest>.<folder>`` for its ``datasets/``,
``strategies/`` or ``learners/`` folder, a package whose ``__path__`` is that folder. So plugin
files import their private helpers relatively, and any process that imports this module can
import (and unpickle) a plugin by its module name: the roots are recomputed from the same
inputs, this project's folder and ``ALCBENCH_PLUGIN_PATH``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# A module with a __path__ is a package: its children are found by the finder below.
__path__: list[str] = []

_ENGINE_ROOT = Path(__file__).resolve().parent
_PROJECT_ROOT = _ENGINE_ROOT.parent
#: Where an installed distribution keeps its copies of the project's ``datasets/`` and
#: ``strategies/`` (pyproject.toml maps them there); absent in a checkout.
_SHIPPED_ROOT = _ENGINE_ROOT / "builtin"
_FOLDERS = ("datasets", "strategies", "learners")


def builtin_root() -> Path:
    """The root of the built-in datasets and strategies.

    In a checkout (and an editable install) the project's own folder, which holds
    ``pyproject.toml``, ``datasets/`` and ``strategies/`` next to the engine; in an installed
    distribution the copies shipped inside the engine package.
    """
    checkout = (_PROJECT_ROOT / "pyproject.toml").is_file() and all(
        (_PROJECT_ROOT / folder).is_dir() for folder in ("datasets", "strategies")
    )
    return _PROJECT_ROOT if checkout else _SHIPPED_ROOT


def plugin_roots() -> tuple[Path, ...]:
    """The built-in datasets and strategies (:func:`builtin_root`), the engine package (its
    learners), then the folders of ``ALCBENCH_PLUGIN_PATH``."""
    roots = [builtin_root(), _ENGINE_ROOT]
    for entry in os.environ.get("ALCBENCH_PLUGIN_PATH", "").split(os.pathsep):
        if entry and Path(entry).resolve() not in roots:
            roots.append(Path(entry).resolve())
    return tuple(roots)


def root_package(root: Path) -> str:
    """The private package name of a plugin root (the engine's is ``benchmark``)."""
    root = Path(root).resolve()
    if root == _ENGINE_ROOT:
        return "benchmark"
    return f"{__name__}.r{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"


def folder_package(root: Path, folder: str) -> str:
    """The package name of ``root/folder``, imported (created) on the way."""
    name = f"{root_package(root)}.{folder}"
    if root.resolve() != _ENGINE_ROOT:
        _ROOTS[root_package(root)] = Path(root).resolve()
    importlib.import_module(name)
    return name


#: Roots known to this process by package name (plugin_roots() is consulted as well).
_ROOTS: dict[str, Path] = {}


def _root_for(package: str) -> Path | None:
    if package not in _ROOTS:
        for root in plugin_roots():
            _ROOTS.setdefault(root_package(root), root)
    return _ROOTS.get(package)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Creates the root and folder packages; plugin files are then found through ``__path__``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        parts = fullname.split(".")
        if parts[:2] != ["benchmark", "_plugins"] or len(parts) not in (3, 4):
            return None
        root = _root_for(".".join(parts[:3]))
        if root is None or (len(parts) == 4 and parts[3] not in _FOLDERS):
            return None
        location = root if len(parts) == 3 else root / parts[3]
        spec = importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        spec.submodule_search_locations = [str(location)]
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__doc__ = f"Plugin folder {module.__spec__.submodule_search_locations[0]}"  # type: ignore[union-attr,index]


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
