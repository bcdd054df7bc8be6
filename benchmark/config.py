"""A cell's configuration and identity, where its posteriors come from, and seed lists.

A *cell* is one run: dataset x posterior source x strategy x seed (and, for active runs, the
re-fit interval). Its :class:`CellConfig` is all that determines its result; the hash of the
config names the cell's files and its rows in the result tables.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Default absolute target for "annotations needed to reach a target accuracy", in %.
DEFAULT_TARGET_ACCURACY = 95.0


@dataclass(frozen=True)
class CellConfig:
    """Everything that determines one run's result.

    ``learner`` is a learner spec, or ``file:<name>`` when posteriors come from a file, in
    which case ``posteriors_sha256`` identifies the file's content.
    """

    dataset: str
    learner: str
    strategy: str
    seed: int
    target: float = DEFAULT_TARGET_ACCURACY
    posteriors_sha256: str = ""
    #: > 0: an active run (paper's Algorithm 1), re-fitting the learner every this many annotations
    active_every: int = 0

    @property
    def hash(self) -> str:
        fields = asdict(self)
        if not self.active_every:  # static cells keep the hashes they had before active runs existed
            del fields["active_every"]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def strategy_label(self) -> str:
        """How tables name the strategy: an active run is told apart from the static one."""
        if self.active_every:
            return f"{self.strategy} (active, re-fit every {self.active_every})"
        return self.strategy

    @property
    def source_key(self) -> tuple[str, str, int]:
        """(dataset, learner, seed): the cells that share one set of posteriors."""
        return (self.dataset, self.learner, self.seed)

    def row(self) -> dict[str, Any]:
        """The configuration columns of this cell's run row."""
        return {
            "config_hash": self.hash,
            **asdict(self),
            "strategy": self.strategy_label,
            "strategy_spec": self.strategy,
        }


@dataclass(frozen=True)
class Source:
    """Where a cell's posteriors come from: a learner fitted (or cached), or a file."""

    learner: str | None = None
    file: Path | None = None
    #: > 0: the model-based strategies also run actively on this source, re-fitting every this
    #: many annotations (in addition to a run-wide ``--active-every``)
    active_every: int = 0

    @property
    def label(self) -> str:
        if self.file is not None:
            return f"file:{self.file.name}"
        assert self.learner is not None
        return self.learner


#: The most seeds one command runs: each seed is a full set of cells (and of learner fits).
MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ranges and lists combine.

    Raises:
        ValueError: unreadable text, or more than :data:`MAX_SEEDS` seeds.
    """
    seeds: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            first, last = int(lo), int(hi if sep else lo)
            if first < 0 or last < first:
                raise ValueError(part)
            if last - first + 1 > MAX_SEEDS:
                seeds.update(range(first, first + MAX_SEEDS + 1))
                break
            seeds.update(range(first, last + 1))
    except ValueError as exc:
        raise ValueError(f"cannot read seeds {text!r}: expected e.g. 0-4 or 0,1,2") from exc
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(
            f"--seeds {text} asks for more than {MAX_SEEDS:,} seeds; every seed is a full set of cells "
            "and learner fits: run them in batches (e.g. 0-999, then 1000-1999) into the same --out"
        )
    return sorted(seeds)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
