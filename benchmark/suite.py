"""The default benchmark suite: what ``make benchmark`` runs and ``results/`` holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark import registry
from benchmark.plugins import parse_spec

#: Learners of the default suite: the CPU learner, and the true distribution as an upper bound.
DEFAULT_LEARNERS = ("smallcnn", "truth")
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Suite:
    datasets: tuple[str, ...]
    learners: tuple[str, ...]
    strategies: tuple[str, ...]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    failed_plugins: tuple[str, ...] = field(default=())


def expand(kind: str, names: tuple[str, ...] | None = None) -> tuple[list[str], list[str]]:
    """Specs for every grid point of the named plugins (all registered ones when None; a name
    given with parameters, ``name[k=v]``, stands for itself), and the messages of plugins
    that failed to load."""
    specs: list[str] = []
    failed: list[str] = []
    infos = registry.discover(kind)
    for entry in names if names is not None else tuple(infos):
        name, params = parse_spec(entry)
        if name not in infos:
            registry.get(kind, name)  # raises with suggestions
        info = infos[name]
        if info.cls is None:
            failed.append(f"{kind} {name} ({info.origin}): {info.error}")
        elif params:  # a configured spec stands for itself
            specs.append(info.cls(**params).spec)
        else:
            specs.extend(info.cls(**grid_point).spec for grid_point in info.cls.grid())
    return specs, failed


def default_suite() -> Suite:
    """Every registered dataset and strategy (each over its parameter grid), the default
    learners, seeds 0-4."""
    datasets, failed_d = expand("dataset")
    strategies, failed_s = expand("strategy")
    return Suite(
        datasets=tuple(datasets),
        learners=DEFAULT_LEARNERS,
        strategies=tuple(strategies),
        failed_plugins=tuple(failed_d + failed_s),
    )
