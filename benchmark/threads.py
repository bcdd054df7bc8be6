"""CPU threads for learner fits: one budget, set by the runner and read by the learners.

While ``jobs`` cells run at once, each may use ``cores // jobs`` threads
(:func:`thread_budget`); the runner sets it in ``$ALCBENCH_THREADS`` around each cell
(:func:`threads_for_fits`) and a learner's fit reads it (:func:`fit_threads`). A fit outside
the cells uses every core, and ``OMP_NUM_THREADS`` set by the user wins over both: on a CPU
shared with other busy processes, one thread per core makes OpenMP's barriers spin and a fit
can run ten times slower.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from joblib import cpu_count

THREADS_ENV = "ALCBENCH_THREADS"


def available_cores() -> int:
    """CPU cores this process may use (affinity and container quotas counted), as joblib counts."""
    return max(1, int(cpu_count()))


def thread_budget(jobs: int, cores: int | None = None) -> int:
    """CPU threads for each of ``jobs`` cells running at once: ``cores // jobs``, at least 1."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


@contextmanager
def threads_for_fits(threads: int) -> Iterator[None]:
    """Sets ``$ALCBENCH_THREADS`` to ``threads`` for the duration."""
    previous = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = previous


def fit_threads() -> int | None:
    """The CPU threads a fit uses, or None to leave the library's own (``OMP_NUM_THREADS`` is set).

    ``OMP_NUM_THREADS`` set by the user wins; else ``$ALCBENCH_THREADS`` (at most the cores;
    ignored unless a whole number >= 1); else every core.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return None
    try:
        budget = int(os.environ.get(THREADS_ENV, ""))
    except ValueError:
        budget = 0
    cores = available_cores()
    return min(budget, cores) if budget >= 1 else cores
