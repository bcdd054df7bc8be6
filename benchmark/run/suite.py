"""The default benchmark suite: what ``make benchmark`` runs and ``results/`` holds."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from benchmark import registry
from benchmark.config import Source
from benchmark.plugins import parse_spec
from benchmark.task import CleaningTask

#: Learners the suite pairs with a dataset that names none: the paper's learner families at
#: CPU scale whose posteriors ship with the results (vanilla out-of-fold and in-sample;
#: co-teaching, ELR, a self-supervised encoder with a linear head and an ensemble of vanilla
#: fits, in-sample as the paper's reference code, the ensemble also with 5 members whose
#: posteriors are each averaged over 8 training views), and the true distribution as an upper
#: bound.
DEFAULT_LEARNERS = (
    "smallcnn",
    "smallcnn[posteriors=insample]",
    "coteaching",
    "elr",
    "ssl",
    "ensemble[posteriors=insample]",
    "ensemble[members=5,posteriors=insample,views=8]",
    "truth",
)

#: The posterior group whose runs the downstream stage takes the cleaned labels from (the
#: one-view in-sample ensemble, the paper's way); a dataset without it uses its first learner
#: with ok runs.
DOWNSTREAM_LEARNER = "ensemble[posteriors=insample]"

#: Learners whose model-based strategies the default suite also runs actively (the paper's
#: Algorithm 1), re-fitting every this many annotations: those whose re-fit takes seconds.
ACTIVE_EVERY = {"ssl": 1000}


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


def learners_for(dataset_spec: str) -> tuple[str, ...]:
    """The learners the default suite runs on a dataset: its own ``learners``, else the defaults."""
    cls = registry.get("dataset", parse_spec(dataset_spec)[0])
    return tuple(cls.learners) or DEFAULT_LEARNERS


def shipped_learners(dataset_spec: str) -> tuple[str, ...]:
    """The learners of :func:`learners_for` whose posteriors are cached (and so ship with the
    results): those a default benchmark reads rather than fits."""
    return tuple(
        spec for spec in learners_for(dataset_spec) if registry.get("learner", parse_spec(spec)[0]).cache
    )


def source_for(learner_spec: str) -> Source:
    """The default suite's posterior source for a learner spec, with its active runs."""
    return Source(learner=learner_spec, active_every=ACTIVE_EVERY.get(parse_spec(learner_spec)[0], 0))


def downstream_groups(
    runs: pd.DataFrame, tasks: Mapping[str, CleaningTask], learner: str | None = None
) -> tuple[dict[str, str], list[str]]:
    """Per dataset with a clean evaluation set and ok runs, the posterior group the downstream
    stage reads (``learner``, else :data:`DOWNSTREAM_LEARNER`, else the dataset's first learner
    with ok runs, ``truth`` last); and notes on the datasets left out."""
    groups: dict[str, str] = {}
    notes: list[str] = []
    ok = runs[runs["status"] == "ok"]
    for dataset in sorted(set(runs["dataset"])):
        task = tasks.get(dataset)
        if task is None or task.load_eval is None:
            notes.append(f"{dataset}: no clean evaluation set")
            continue
        have = list(dict.fromkeys(ok.loc[ok["dataset"] == dataset, "learner"]))
        if learner is not None:
            if learner not in have:
                notes.append(f"{dataset}: no ok runs of learner {learner}")
                continue
            groups[dataset] = learner
        elif DOWNSTREAM_LEARNER in have:
            groups[dataset] = DOWNSTREAM_LEARNER
        elif have:
            groups[dataset] = sorted(have, key=lambda name: (name == "truth", name))[0]
        else:
            notes.append(f"{dataset}: no ok runs")
    return groups, notes
