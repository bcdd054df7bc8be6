"""What the report calls things: the display names of the plugins in a results table, titles
that wrap between words, and which strategies are the user's (drawn strongly in every figure).

A plugin names itself through :meth:`benchmark.plugins.Plugin.display_name` (a dataset with
its task's noise rate, taken from the runs table). A row whose plugin is not installed, or
whose ``display_name`` fails, keeps its spec. An active run's label keeps its suffix:
``"Eq. 2 (hinge 0.3) (active, re-fit every 1000)"``.

A strategy is *the user's* unless its plugin is one this project ships
(:data:`BUILTIN_STRATEGIES`) and is loaded from the built-in folder: a file the user drops
into the project's own ``strategies/``, one of a folder on ``ALCBENCH_PLUGIN_PATH`` and one of
an installed package's entry points all count as the user's.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import pandas as pd

from benchmark import registry
from benchmark.params import noise_text

#: The strategies this project ships (the files of ``strategies/`` in the repository): every
#: other strategy is the user's.
BUILTIN_STRATEGIES = ("bald", "cleanlab", "entropy", "eq2", "loss", "oracle", "random")
#: Suffix of the label of an active run (see :class:`benchmark.config.CellConfig`).
ACTIVE_MARK = " (active"


def split_active(label: str) -> tuple[str, str]:
    """``"loss (active, re-fit every 1000)"`` -> ``("loss", " (active, re-fit every 1000)")``."""
    static, mark, rest = str(label).partition(ACTIVE_MARK)
    return static.strip(), (mark + rest if mark else "")


def base_name(label: str) -> str:
    """The plugin name of a strategy label (its spec before ``[``, without an active suffix)."""
    return split_active(label)[0].split("[", 1)[0].strip()


def _display(kind: str, spec: str, noise_rate: float | None) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plugin = registry.create(kind, spec)
            text = plugin.display_name(noise_rate) if kind == "dataset" else plugin.display_name()
    except Exception:  # noqa: BLE001 - a plugin not installed (or failing) keeps its spec
        return None
    text = " ".join(str(text).split())
    return text or None


def plugin_name(kind: str, spec: str, noise_rate: float | None = None) -> str:
    """The display name of the plugin ``spec`` of ``kind``; its spec when it is not installed
    (a dataset's spec with the noise rate, ``"toy (20.0 % noise)"``)."""
    rate = float(noise_rate) if noise_rate is not None and math.isfinite(float(noise_rate)) else None
    found = _display(kind, str(spec), rate)
    if found is not None:
        return found
    return str(spec) + (noise_text(rate) if kind == "dataset" else "")


def strategy_name(label: str) -> str:
    """The display name of a strategy label, an active run's suffix kept."""
    static, suffix = split_active(label)
    return plugin_name("strategy", static) + suffix


def dataset_noise(runs: pd.DataFrame) -> dict[str, float | None]:
    """Each dataset's noise rate: the first finite ``noise_rate`` of its rows (None without one)."""
    out: dict[str, float | None] = {}
    if "dataset" not in runs:
        return out
    for dataset, g in runs.groupby("dataset", sort=True):
        rates = pd.to_numeric(g.get("noise_rate", pd.Series(dtype=float)), errors="coerce").dropna()
        out[str(dataset)] = float(rates.iloc[0]) if len(rates) else None
    return out


def display_names(runs: pd.DataFrame) -> dict[str, dict[str, str]]:
    """``{"dataset": {spec: name}, "learner": {...}, "strategy": {label: name}}`` of every spec
    in ``runs`` (datasets with their noise rate)."""
    noise = dataset_noise(runs)
    column = {"dataset": "dataset", "learner": "learner", "strategy": "strategy"}
    out: dict[str, dict[str, str]] = {}
    for kind, col in column.items():
        specs = sorted({str(s) for s in runs[col]}) if col in runs else []
        if kind == "dataset":
            out[kind] = {s: plugin_name(kind, s, noise.get(s)) for s in specs}
        elif kind == "strategy":
            out[kind] = {s: strategy_name(s) for s in specs}
        else:
            out[kind] = {s: plugin_name(kind, s) for s in specs}
    return out


def wrap(text: str, width: int) -> str:
    """``text`` wrapped to lines of at most ``width`` characters between words, never inside
    one (a word longer than a line keeps a line of its own)."""
    return "\n".join(
        textwrap.fill(part, width, break_long_words=False, break_on_hyphens=False)
        for part in str(text).split("\n")
    )


def _builtin_root() -> Path:
    return registry.plugin_roots()[0].resolve()


def is_user_strategy(label: str) -> bool:
    """Whether the strategy of ``label`` is the user's (see the module's docstring)."""
    name = base_name(label)
    if name not in BUILTIN_STRATEGIES:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = registry.discover("strategy").get(name)
    if info is None:
        return False  # rows of a built-in this installation lacks: still the project's own
    try:
        return not Path(info.origin).resolve().is_relative_to(_builtin_root())
    except (OSError, ValueError):
        return True


def user_strategies(labels: Iterable[str]) -> set[str]:
    """The labels whose strategy is the user's."""
    return {str(s) for s in labels if is_user_strategy(str(s))}


def matches(label: str, name: str) -> bool:
    """Whether ``--highlight name`` names the strategy ``label``: the label itself, its spec
    without an active suffix, or its plugin name (every grid point of it)."""
    return name in (str(label), split_active(label)[0], base_name(label))


def highlighted(
    labels: Iterable[str], highlight: Collection[str] = (), user: Collection[str] | None = None
) -> set[str]:
    """The labels drawn strongly: the user's strategies (``user``; found with
    :func:`user_strategies` when None) and those ``highlight`` names (:func:`matches`)."""
    labels = [str(s) for s in labels]
    mine = user_strategies(labels) if user is None else {str(s) for s in user}
    return {
        s for s in labels if s in mine or split_active(s)[0] in mine or any(matches(s, h) for h in highlight)
    }


def unmatched(highlight: Iterable[str], labels: Iterable[str]) -> list[str]:
    """The ``--highlight`` names that name no strategy of ``labels``."""
    labels = [str(s) for s in labels]
    return [h for h in dict.fromkeys(highlight) if not any(matches(s, h) for s in labels)]


def name_of(names: Mapping[str, str], spec: object) -> str:
    """``names[spec]``, the spec itself when it has none."""
    return names.get(str(spec), str(spec))


def group_title(dataset_name: str, learner_name: str, info: Mapping[str, object]) -> str:
    """A group's title in display names: ``"CIFAR-10H, T = 2 (15.4 % noise) — 5-member
    ensemble, in-sample, 8 views (N = 5000, budget 3076)"`` (the noise rate is the dataset's
    display name's)."""
    parts = []
    for key, text in (("n_samples", "N = {}"), ("budget", "budget {}")):
        value = pd.to_numeric(pd.Series([info.get(key)]), errors="coerce").iloc[0]
        if pd.notna(value) and math.isfinite(float(value)):
            parts.append(text.format(int(value)))
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{dataset_name} — {learner_name}{detail}"


def named_title(
    named: Mapping[str, Mapping[str, str]], dataset: str, learner: str, info: Mapping[str, object]
) -> str:
    """:func:`group_title` of the group's specs, by the names of :func:`display_names`."""
    data, learner_name = (
        name_of(named.get("dataset", {}), dataset),
        name_of(named.get("learner", {}), learner),
    )
    return group_title(data, learner_name, info)
