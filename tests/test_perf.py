"""The simulator speed benchmark (benchmark/perf.py): outputs and the reference loop.

No wall-clock assertions: timings depend on the machine. What is checked is that the benchmark
writes what it promises and that its reference loop simulates the same process as the
simulator (exactly where the expert is deterministic, statistically where it is not).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmark import registry
from benchmark.perf import simulator as perf
from benchmark.task import CleaningTask


@pytest.fixture(scope="module")
def perf_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("perf")
    rc = perf.main(
        [
            "--out",
            str(out),
            "--quick",
            "--sizes",
            "400",
            "1500",
            "--reference-sizes",
            "400",
            "--repeats",
            "1",
            "--sanity-n",
            "1000",
            "--sanity-seeds",
            "8",
        ]
    )
    return rc, out


def test_main_writes_csv_with_expected_columns(perf_run) -> None:
    rc, out = perf_run
    assert rc == 0  # non-zero when the sanity check finds the implementations incompatible
    with (out / "simulator.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == perf.CSV_COLUMNS
        rows = list(reader)
    cells = {(r["implementation"], r["strategy"], int(r["n"])) for r in rows}
    expected = {("alcbench", s, n) for s in perf.TIMED_STRATEGIES for n in (400, 1500)} | {
        ("reference", s, 400) for s in perf.TIMED_STRATEGIES
    }
    assert cells == expected
    for r in rows:
        assert float(r["seconds"]) > 0
        assert float(r["peak_mib"]) > 0
        annotations, selections = int(r["annotations"]), int(r["selections"])
        assert 1 <= selections <= annotations


def test_main_writes_markdown_report(perf_run) -> None:
    _, out = perf_run
    md = (out / "simulator.md").read_text()
    for needed in (
        "# Simulator speed benchmark",
        "Machine:",
        "NumPy",
        "## Speed-up",
        "| loss | 400 |",
        "| oracle | 400 |",
        "## Sanity check",
    ):
        assert needed in md
    sanity_rows = [line for line in md.splitlines() if "| final_accuracy |" in line]
    assert len(sanity_rows) == len(perf.SANITY_STRATEGIES)
    assert all(line.rstrip().endswith("| yes |") for line in sanity_rows)


def test_size_plan_full_and_quick(tmp_path) -> None:
    full = perf.planned_sizes(perf.parse_args(["--out", str(tmp_path)]))
    assert full == ([1_000, 5_000, 10_000, 100_000, 1_000_000], [1_000, 5_000, 10_000])
    quick = perf.planned_sizes(perf.parse_args(["--out", str(tmp_path), "--quick"]))
    assert quick == ([1_000, 5_000, 10_000], [1_000, 5_000, 10_000])


def test_synthetic_task_is_seeded_and_cifar10h_like() -> None:
    task, post = perf.synthetic_task(20_000)
    again, post2 = perf.synthetic_task(20_000)
    np.testing.assert_array_equal(task.true_dist, again.true_dist)
    np.testing.assert_array_equal(task.noisy_labels, again.noisy_labels)
    np.testing.assert_array_equal(post, post2)
    assert 0.12 < task.noise_rate < 0.18
    assert 0.07 < task.ambiguous.mean() < 0.14
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    assert task.budget == round(4 * task.initially_mislabelled)


def test_reference_loop_statistically_matches_simulator() -> None:
    results = perf.sanity_check(1_000, seeds=tuple(range(8)), strategies=("random", "loss"))
    assert {r.strategy for r in results} == {"random", "loss"}
    for r in results:
        assert r.compatible, r
        if r.metric == "final_accuracy":
            # both improve on the ~85 % initial accuracy
            assert r.ours_mean > 87 and r.ref_mean > 87


def _one_hot_task(n: int = 600, seed: int = 3) -> tuple[CleaningTask, np.ndarray]:
    """A deterministic expert: every true distribution is one-hot."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, n)
    p = np.eye(4)[truth]
    noisy = np.where(rng.random(n) < 0.2, (truth + rng.integers(1, 4, n)) % 4, truth)
    post = rng.dirichlet(np.ones(4), n) * 0.5 + 0.5 * np.eye(4)[truth]
    task = CleaningTask("onehot", p, noisy, ("a", "b", "c", "d"), budget_multiplier=3.0)
    return task, post


@pytest.mark.parametrize("name", ["random", "loss", "oracle"])
def test_reference_loop_matches_simulator_exactly_with_deterministic_expert(name: str) -> None:
    # With one-hot truths every expert draw is the true class, so the random streams no longer
    # matter: both implementations must select the same samples in the same order (including
    # the seeded tie-breaking of the oracle's many equal scores) and spend the same draws.
    task, post = _one_hot_task()
    strategy = registry.create("strategy", name)
    ctx = perf.context_for(task, post, strategy, seed=5)
    ours = perf.ours_simulate(task, strategy, ctx, seed=5)
    ref = perf.reference_simulate(task, strategy, ctx, seed=5)
    np.testing.assert_array_equal(ours.selected, ref.selected)
    np.testing.assert_array_equal(ours.draws, ref.draws)
    assert ours.final_accuracy == ref.final_accuracy
    assert ours.auc == pytest.approx(ref.auc)
