"""Cluster backends (benchmark.run.engines): the same tables as the local backend, learner fits as
tasks of their own, and a worker that dies mid-cell costing at most that cell."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.run.engines import LostTaskError, open_engine

DATASET = "cifar10h[n=300]"
RUN = ["run", "--dataset", DATASET, "--learner", "truth", "--seeds", "0-2", "--no-progress"]
STRATEGIES = ["--strategy", "random", "--strategy", "loss", "--strategy", "oracle", "--strategy", "entropy"]


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    # `commit` can change between two commands when the checkout does; everything else may not
    runs = pd.read_parquet(out / "runs.parquet").drop(columns=["commit"])
    return runs, pd.read_parquet(out / "curves.parquet")


@pytest.fixture
def plugins(plugin_root: Path) -> Path:
    """A plugin folder seen by this process and by the workers a cluster starts."""
    return plugin_root


def _killer(root: Path, marker: Path, *, always: bool) -> None:
    """A strategy whose worker process dies while scoring (the first time, or every time)."""
    (root / "strategies" / "killer.py").write_text(
        textwrap.dedent(f"""
        import os
        import numpy as np
        from benchmark.plugins import Strategy

        class Killer(Strategy):
            name = "killer"
            description = "Kills its worker process."

            def score(self, ctx):
                marker = {str(marker)!r}
                if {always!r} or not os.path.exists(marker):
                    open(marker, "a").close()
                    os._exit(1)
                return np.zeros(ctx.n_samples)
        """)
    )


#: The cluster backends and the package each needs (a test of one that is not installed skips).
BACKENDS = ["dask", "ray"]
PACKAGE = {"dask": "distributed", "ray": "ray"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_cluster_backend_gives_the_local_backend_s_tables(tmp_path, backend):
    pytest.importorskip(PACKAGE[backend])
    assert main([*RUN, *STRATEGIES, "--out", str(tmp_path / "local")]) == 0
    assert (
        main([*RUN, *STRATEGIES, "--out", str(tmp_path / backend), "--backend", backend, "--jobs", "2"]) == 0
    )
    local, cluster = _tables(tmp_path / "local"), _tables(tmp_path / backend)
    pd.testing.assert_frame_equal(local[0], cluster[0])
    pd.testing.assert_frame_equal(local[1], cluster[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_that_dies_mid_cell_costs_a_retry_not_the_run(tmp_path, plugins, backend):
    pytest.importorskip(PACKAGE[backend])
    marker = tmp_path / "died-once"
    _killer(plugins, marker, always=False)
    out = tmp_path / "out"
    args = [*RUN, *STRATEGIES, "--strategy", "killer", "--out", str(out), "--backend", backend, "--jobs", "2"]
    assert main(args) == 0
    assert marker.exists()  # a worker did die
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 5 * 3 and set(runs["status"]) == {"ok"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cell_whose_worker_keeps_dying_fails_and_the_others_finish(tmp_path, plugins, capsys, backend):
    pytest.importorskip(PACKAGE[backend])
    _killer(plugins, tmp_path / "died", always=True)
    out = tmp_path / "out"
    args = [*RUN[:-3], "--seeds", "0", "--no-progress", "--strategy", "random", "--strategy", "killer"]
    code = main([*args, "--out", str(out), "--backend", backend, "--jobs", "2", "--retries", "0"])
    assert code == 1
    runs = pd.read_parquet(out / "runs.parquet").set_index("strategy")
    assert runs.loc["random", "status"] == "ok"
    assert runs.loc["killer", "status"] == "failed"
    assert "worker died" in runs.loc["killer", "error"]
    assert "worker died" in capsys.readouterr().out


class _FakeEngine:
    """Runs tasks in this process; the tasks named in ``lose`` come back lost."""

    name = "fake"

    def __init__(self, lose: set[int]) -> None:
        self.lose = lose
        self.calls: list[str] = []

    def map(self, fn, calls, *, retries, gpu=False):
        self.calls.append(fn.__name__)
        for i, args in reversed(list(enumerate(calls))):  # in another order than submitted
            yield i, (LostTaskError("its worker died") if i in self.lose else fn(*args))


def test_runner_on_an_engine_runs_fits_then_cells_and_reports_lost_cells(tmp_path):
    from benchmark.config import Source
    from benchmark.run import runner

    fits = _FakeEngine(set())
    plan = runner.prepare(
        [(DATASET, [Source(learner="truth")])],
        ["random", "loss"],
        [0, 1],
        data_root=None,
        cache_dir=tmp_path / "cache",
        progress=False,
        engine=fits,
    )
    assert fits.calls == ["fit_task"]  # one batch of fit tasks, one per (learner, seed)
    assert len(plan.posteriors) == 2 and not plan.unavailable
    engine = _FakeEngine({1})
    rows = runner.execute(plan, tmp_path / "out", progress=False, engine=engine)
    assert engine.calls == ["_run_cell_with_threads"]
    assert sorted(r["status"] for r in rows) == ["failed", "ok", "ok", "ok"]
    lost = next(r for r in rows if r["status"] == "failed")
    assert "its worker died" in lost["error"]
    # the lost cell is written like any other, so the tables hold every cell
    assert (tmp_path / "out" / "cells" / f"{lost['config_hash']}.json").is_file()


def test_unknown_backend_and_missing_scheduler_backend_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of local, dask, ray"), open_engine("spark"):
        pass
    with (
        pytest.raises(ValueError, match="--scheduler needs --backend dask or ray"),
        open_engine("local", scheduler="tcp://x:8786"),
    ):
        pass


def test_resume_after_killing_the_whole_cluster_run_completes_it(tmp_path, plugins):
    """The command, its scheduler and its workers all killed mid-run: ``--resume`` runs only the
    cells that did not finish, and the tables are those of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("distributed")
    (plugins / "strategies" / "slow.py").write_text(
        textwrap.dedent("""
        import time
        import numpy as np
        from benchmark.plugins import Strategy

        class Slow(Strategy):
            name = "slow"
            description = "Takes a while per cell."

            def score(self, ctx):
                time.sleep(0.4)
                return np.zeros(ctx.n_samples)
        """)
    )
    seeds = ["--seeds", "0-5"]
    args = [
        *RUN[:-3],
        *seeds,
        "--no-progress",
        "--strategy",
        "random",
        "--strategy",
        "slow",
        "--backend",
        "dask",
    ]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmark.cli", *args, "--jobs", "2", "--out", str(out)]
    proc = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(list((out / "cells").glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list((out / "cells").glob("*.json")))
    assert 3 <= finished < 12 and not (out / "runs.parquet").exists()
    assert main([*args, "--jobs", "2", "--out", str(out), "--resume"]) == 0
    assert main([*args[: args.index("--backend")], "--out", str(tmp_path / "clean")]) == 0
    resumed, clean = _tables(out), _tables(tmp_path / "clean")
    # cells read back from their files list their columns in another order
    pd.testing.assert_frame_equal(resumed[0], clean[0], check_like=True)
    pd.testing.assert_frame_equal(resumed[1], clean[1])
