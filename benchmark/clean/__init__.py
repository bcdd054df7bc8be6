"""Cleaning a team's own data: a relabelling queue in a strategy's order, and a ledger of the
experts' answers (``alcbench clean``; :class:`Project` for notebooks)."""

from benchmark.clean.inputs import InputError, Vote
from benchmark.clean.project import Project
from benchmark.clean.reports import Batch, IngestReport, ProjectError, Question, Status

__all__ = ["Batch", "IngestReport", "InputError", "Project", "ProjectError", "Question", "Status", "Vote"]
