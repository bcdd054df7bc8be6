"""Finds plugins: files in plugin folders, entry points, and the engine's built-in learners.

Plugin folders are loaded by file path (``<root>/datasets/*.py``, ``<root>/strategies/*.py``,
``<root>/learners/*.py``), never imported as top-level packages. The roots are this project's
folder, then every folder listed in ``ALCBENCH_PLUGIN_PATH`` (os.pathsep-separated). Third-party
packages add plugins through the entry-point groups ``alcbench.datasets``,
``alcbench.strategies`` and ``alcbench.learners``. A plugin that fails to import is recorded
with its error and shown by ``alcbench list``; it never stops the others from loading.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from benchmark.plugins import Dataset, Learner, Plugin, Strategy, parse_spec

KINDS: dict[str, type[Plugin]] = {"dataset": Dataset, "strategy": Strategy, "learner": Learner}
FOLDERS = {"dataset": "datasets", "strategy": "strategies", "learner": "learners"}
ENTRY_POINT_GROUPS = {
    "dataset": "alcbench.datasets",
    "strategy": "alcbench.strategies",
    "learner": "alcbench.learners",
}
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UnknownPluginError(LookupError):
    """No plugin of that kind has that name."""


class PluginLoadError(RuntimeError):
    """The plugin exists but its file or entry point failed to import."""


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    origin: str
    cls: type[Plugin] | None = None
    error: str | None = None

    @property
    def description(self) -> str:
        if self.cls is None:
            return f"FAILED TO LOAD: {self.error}"
        return self.cls.description

    @property
    def ok(self) -> bool:
        return self.cls is not None


def plugin_roots() -> tuple[Path, ...]:
    roots = [PROJECT_ROOT]
    for entry in os.environ.get("ALCBENCH_PLUGIN_PATH", "").split(os.pathsep):
        if entry and Path(entry).resolve() not in roots:
            roots.append(Path(entry).resolve())
    return tuple(roots)


def discover(kind: str) -> dict[str, PluginInfo]:
    """Every plugin of ``kind`` ("dataset", "strategy" or "learner"), by name."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(KINDS)}")
    return _discover(kind, plugin_roots())


@cache
def _discover(kind: str, roots: tuple[Path, ...]) -> dict[str, PluginInfo]:
    found: dict[str, PluginInfo] = {}
    if kind == "learner":
        from benchmark.learners import BUILTIN_LEARNERS

        for cls in BUILTIN_LEARNERS:
            found[cls.name] = PluginInfo(kind, cls.name, f"builtin: {cls.__module__}", cls)
    for root in roots:
        folder = root / FOLDERS[kind]
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            if path.name.startswith("_"):
                continue
            for info in _load_file(kind, path):
                found.setdefault(info.name, info)
    for ep in entry_points(group=ENTRY_POINT_GROUPS[kind]):
        origin = f"entry point {ep.value} ({ep.dist.name if ep.dist else 'unknown package'})"
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the others
            found.setdefault(ep.name, PluginInfo(kind, ep.name, origin, error=_describe(exc)))
            continue
        if not (inspect.isclass(obj) and issubclass(obj, KINDS[kind])):
            error = f"{ep.value} is not a {KINDS[kind].__name__} subclass"
            found.setdefault(ep.name, PluginInfo(kind, ep.name, origin, error=error))
            continue
        found.setdefault(obj.name, PluginInfo(kind, obj.name, origin, obj))
    return dict(sorted(found.items()))


def _load_file(kind: str, path: Path) -> list[PluginInfo]:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"alcbench_plugins.{FOLDERS[kind]}.{path.stem}_{digest}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        return [PluginInfo(kind, path.stem, str(path), error=_describe(exc))]
    base = KINDS[kind]
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, base)
        and obj.__module__ == module_name
        and isinstance(getattr(obj, "name", None), str)
    ]
    if not classes:
        error = f"defines no {base.__name__} subclass with a `name`"
        return [PluginInfo(kind, path.stem, str(path), error=error)]
    return [PluginInfo(kind, cls.name, str(path), cls) for cls in classes]


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def list_plugins(kind: str, pattern: str = "*") -> list[PluginInfo]:
    """Plugins of ``kind`` whose name matches the shell-style ``pattern``."""
    return [info for name, info in discover(kind).items() if fnmatch.fnmatch(name, pattern)]


def get(kind: str, name: str) -> type[Any]:
    """The plugin class called ``name``; a clear error, with close names, when there is none."""
    plugins = discover(kind)
    info = plugins.get(name)
    if info is None:
        close = difflib.get_close_matches(name, list(plugins), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(plugins) or "none"
        raise UnknownPluginError(f"unknown {kind} {name!r}{hint} (available: {available})")
    if info.cls is None:
        raise PluginLoadError(f"{kind} {name!r} from {info.origin} failed to load: {info.error}")
    return info.cls


def create(kind: str, spec: str) -> Any:
    """An instance configured from a spec string such as ``"eq2[hinge=True]"``."""
    name, params = parse_spec(spec)
    return get(kind, name)(**params)


def refresh() -> None:
    """Forget what was discovered (tests that add plugin folders call this)."""
    _discover.cache_clear()
