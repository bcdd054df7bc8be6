"""Finds plugins: files in plugin folders, and entry points.

A *plugin root* is a folder that may hold ``datasets/``, ``strategies/`` and ``learners/``.
The roots are the built-in datasets and strategies (this project's folder in a checkout, their
copies inside the engine package in an installed distribution), the engine package itself (its
built-in ``learners/``), then every folder listed in ``ALCBENCH_PLUGIN_PATH``
(os.pathsep-separated). Every ``*.py`` file of a plugin folder whose name does not start with
``_`` is a plugin file; files starting with ``_`` are private helpers its plugins may import
relatively (``from ._cxr_labels import ...``).

Plugin folders are not importable top-level packages (a package called ``datasets`` would
shadow Hugging Face's): each is loaded by path as a private package,
``benchmark._plugins.r<hash of the root>.<folder>`` (the engine's own learners keep their
real name, ``benchmark.learners``). Those names import in any process, so plugin classes and
instances pickle into worker processes.

Third-party packages add plugins through the entry-point groups ``alcbench.datasets``,
``alcbench.strategies`` and ``alcbench.learners``. A plugin that fails to import is recorded
with its error and shown by ``alcbench list``; it never stops the others from loading. When two
plugins share a name, the first found wins (roots in order, then entry points) and the clash is
recorded on it (``PluginInfo.shadows``).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import inspect
import sys
import traceback
import warnings
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from benchmark import _plugins
from benchmark.plugins import Dataset, Learner, Plugin, Strategy, parse_spec

KINDS: dict[str, type[Plugin]] = {"dataset": Dataset, "strategy": Strategy, "learner": Learner}
FOLDERS = {"dataset": "datasets", "strategy": "strategies", "learner": "learners"}
ENTRY_POINT_GROUPS = {
    "dataset": "alcbench.datasets",
    "strategy": "alcbench.strategies",
    "learner": "alcbench.learners",
}
#: The engine package's folder: a plugin root for the built-in learners.
ENGINE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = ENGINE_ROOT.parent


class UnknownPluginError(LookupError):
    """No plugin of that kind has that name."""


class PluginLoadError(RuntimeError):
    """The plugin exists but its file or entry point failed to import."""


class PluginNameClash(UserWarning):
    """Two plugins of one kind share a name; the first found is used."""


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    origin: str
    cls: type[Plugin] | None = None
    error: str | None = None
    #: Origins of other plugins with the same name, hidden by this one.
    shadows: tuple[str, ...] = field(default=())

    @property
    def description(self) -> str:
        if self.cls is None:
            return f"FAILED TO LOAD: {self.error}"
        return self.cls.description

    @property
    def ok(self) -> bool:
        return self.cls is not None


def plugin_roots() -> tuple[Path, ...]:
    return _plugins.plugin_roots()


def discover(kind: str) -> dict[str, PluginInfo]:
    """Every plugin of ``kind`` ("dataset", "strategy" or "learner"), by name."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(KINDS)}")
    return _discover(kind, plugin_roots())


@cache
def _discover(kind: str, roots: tuple[Path, ...]) -> dict[str, PluginInfo]:
    found: dict[str, PluginInfo] = {}

    def add(info: PluginInfo) -> None:
        first = found.get(info.name)
        if first is None:
            found[info.name] = info
        else:
            found[info.name] = replace(first, shadows=(*first.shadows, info.origin))
            warnings.warn(
                f"two {FOLDERS[kind]} are called {info.name!r}: using the one from {first.origin}; "
                f"the one from {info.origin} is not loaded (rename one of them)",
                PluginNameClash,
                stacklevel=2,
            )

    for root in roots:
        folder = root / FOLDERS[kind]
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            if path.name.startswith("_"):
                continue
            for info in _load_file(kind, root, path):
                add(info)
    for ep in entry_points(group=ENTRY_POINT_GROUPS[kind]):
        origin = f"entry point {ep.value} ({ep.dist.name if ep.dist else 'unknown package'})"
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not stop the others
            add(PluginInfo(kind, ep.name, origin, error=_describe(exc)))
            continue
        if not (inspect.isclass(obj) and issubclass(obj, KINDS[kind])):
            error = f"{ep.value} is not a {KINDS[kind].__name__} subclass"
            add(PluginInfo(kind, ep.name, origin, error=error))
            continue
        add(PluginInfo(kind, obj.name, origin, obj))
    return dict(sorted(found.items()))


def _load_file(kind: str, root: Path, path: Path) -> list[PluginInfo]:
    folder = FOLDERS[kind]
    try:
        package = _plugins.folder_package(root, folder)
        module_name = f"{package}.{path.stem}"
        if root == ENGINE_ROOT:
            # The engine's own learners are imported under their real names, once.
            module = importlib.import_module(module_name)
        else:
            # Executed afresh on every discovery, so that an edited file is seen after refresh().
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
    except (Exception, SystemExit) as exc:
        return [PluginInfo(kind, path.stem, str(path), error=_describe(exc))]
    base = KINDS[kind]
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, base)
        and obj.__module__ == module.__name__
        and isinstance(getattr(obj, "name", None), str)
    ]
    if not classes:
        error = f"defines no {base.__name__} subclass with a `name`"
        return [PluginInfo(kind, path.stem, str(path), error=error)]
    return [PluginInfo(kind, cls.name, str(path), cls) for cls in classes]


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] in ("torch", "torchvision"):
        where += "; PyTorch is an optional extra: pip install 'alcbench[learners]'"
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
