"""What a cleaning project's operations hand back (:class:`Question`, :class:`Batch`,
:class:`IngestReport`, :class:`Status`) and the error they raise (:class:`ProjectError`)."""

from __future__ import annotations

from dataclasses import dataclass


class ProjectError(ValueError):
    """A request the project cannot carry out (bad arguments, nothing to refit with, ...)."""


@dataclass(frozen=True)
class Question:
    """One row of a batch: a sample to annotate, with what the queue knows of it."""

    request: int
    batch: int
    sample_id: str
    kind: str  # "new": selected now; "more": selected before, not settled yet
    current_label: str
    votes: dict[str, int]
    top: list[tuple[str, float]]  # the model's top classes with their probabilities
    score: float | None
    correctness: float  # the model's probability of the current label
    difficulty: float  # normalised entropy of the model's posterior, in [0, 1]
    image: str | None = None


@dataclass(frozen=True)
class Batch:
    number: int | None  # None when nothing was handed out
    questions: list[Question]
    why_empty: str = ""
    generation: int = 0  # the model generation whose posteriors the questions show


@dataclass(frozen=True)
class IngestReport:
    file: str
    added: int
    duplicates: int
    settled: int  # samples settled by this file
    refitted: bool = False
    corrected: int = 0  # answers ingested before whose label this file changes


@dataclass(frozen=True)
class Status:
    samples: int
    classes: list[str]
    strategy: str
    budget: int | None
    spent: int
    selected: int
    settled: int
    unsettled: int  # selected, answered, no strict majority yet
    open_questions: int
    labels_changed: int
    #: samples not settled whose label is not the model's top class
    estimated_mislabelled_left: int
    model_generation: int
    batches: int
    over_budget: int = 0  # answers received past the budget (at most the last sample's)

    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.spent, 0)


__all__ = ["Batch", "IngestReport", "ProjectError", "Question", "Status"]
