"""CPU threads: cells running in parallel share the cores instead of oversubscribing them."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from joblib.externals.loky import get_reusable_executor

from benchmark import registry
from benchmark import threads as cpu_threads
from benchmark.config import Source
from benchmark.learners import _torch
from benchmark.run import runner


@pytest.fixture(autouse=True)
def no_thread_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(cpu_threads.THREADS_ENV, raising=False)


@pytest.mark.parametrize(
    ("jobs", "cores", "threads"),
    [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (3, 16, 5), (16, 16, 1), (0, 4, 4)],
)
def test_thread_budget_is_cores_over_jobs_and_at_least_one(jobs: int, cores: int, threads: int) -> None:
    assert cpu_threads.thread_budget(jobs, cores) == threads


def test_thread_budget_counts_the_cores_this_process_may_use() -> None:
    assert cpu_threads.thread_budget(1) == cpu_threads.available_cores() >= 1


def test_the_budget_the_runner_sets_is_the_one_torch_learners_read() -> None:
    with cpu_threads.threads_for_fits(1), _torch.torch_settings(torch.device("cpu")):
        assert torch.get_num_threads() == 1


def test_threads_for_fits_sets_and_restores_the_budget() -> None:
    with cpu_threads.threads_for_fits(3):
        assert os.environ[cpu_threads.THREADS_ENV] == "3"
        with cpu_threads.threads_for_fits(1):
            assert os.environ[cpu_threads.THREADS_ENV] == "1"
        assert os.environ[cpu_threads.THREADS_ENV] == "3"
    assert cpu_threads.THREADS_ENV not in os.environ


def test_a_fit_uses_every_core_without_a_budget() -> None:
    assert cpu_threads.fit_threads() == cpu_threads.available_cores()


def test_torch_settings_honour_the_budget_and_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv(cpu_threads.THREADS_ENV, "1")
    with _torch.torch_settings(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_budget_above_the_cores_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_threads.THREADS_ENV, "100000")
    assert cpu_threads.fit_threads() == cpu_threads.available_cores()


@pytest.mark.parametrize("value", ["", "zero", "0", "-2"])
def test_unreadable_budget_means_every_core(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(cpu_threads.THREADS_ENV, value)
    assert cpu_threads.fit_threads() == cpu_threads.available_cores()


def test_omp_num_threads_set_by_the_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(cpu_threads.THREADS_ENV, "1")
    assert cpu_threads.fit_threads() is None
    before = torch.get_num_threads()
    with _torch.torch_settings(torch.device("cpu")):
        assert torch.get_num_threads() == before  # left as torch set it from OMP_NUM_THREADS


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_cell_runs_with_its_share_of_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A strategy records the budget it sees, in the worker processes of parallel cells."""
    plugins, seen = tmp_path / "plugins", tmp_path / "seen"
    (plugins / "strategies").mkdir(parents=True)
    seen.mkdir()
    (plugins / "strategies" / "threads_probe.py").write_text(
        textwrap.dedent(f"""
        import os
        from pathlib import Path
        from benchmark.plugins import Strategy

        class ThreadsProbe(Strategy):
            name = "threads_probe"
            description = "Records the CPU thread budget of its cell."

            def score(self, ctx):
                budget = os.environ.get("{cpu_threads.THREADS_ENV}", "unset")
                (Path({str(seen)!r}) / f"{{ctx.seed}}").write_text(budget)
                return ctx.posteriors.max(axis=1)
        """)
    )
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(plugins))
    registry.refresh()
    # Worker processes left by earlier tests would not see this plugin path: start afresh.
    get_reusable_executor().shutdown(wait=True)
    try:
        task = registry.create("dataset", "cifar10h").load()
        posteriors = tmp_path / "truth.npy"
        np.save(posteriors, task.true_dist.astype(np.float32))
        plan = runner.prepare(
            [("cifar10h", [Source(file=posteriors)])],
            ["threads_probe"],
            [0, 1, 2, 3],
            data_root=None,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
        rows = runner.execute(plan, tmp_path / "out", jobs=jobs, progress=False)
    finally:
        registry.refresh()
        get_reusable_executor().shutdown(wait=True)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    budgets = {p.name: p.read_text() for p in seen.iterdir()}
    assert budgets == {str(s): str(cpu_threads.thread_budget(jobs)) for s in range(4)}
    assert cpu_threads.THREADS_ENV not in os.environ
