"""The simulator speed benchmark (benchmark/perf/): outputs, and agreement with the reference.

No wall-clock assertions: timings depend on the machine. What is checked is that the benchmark
writes what it promises and that the two implementations it times give identical runs.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmark import registry
from benchmark.perf import runs, synthetic
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
            "--agreement-n",
            "1000",
            "--agreement-seeds",
            "8",
        ]
    )
    return rc, out


def test_main_writes_csv_with_expected_columns(perf_run) -> None:
    rc, out = perf_run
    assert rc == 0  # non-zero when the two implementations disagree on a run
    with (out / "simulator.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == runs.CSV_COLUMNS
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
        "## Agreement",
    ):
        assert needed in md
    agreement_rows = [line for line in md.splitlines() if "| 1,000 | 8 | 8 |" in line]
    assert len(agreement_rows) == len(runs.AGREEMENT_STRATEGIES)
    assert all(line.rstrip().endswith("| yes |") for line in agreement_rows)


def test_size_plan_full_and_quick(tmp_path) -> None:
    full = perf.planned_sizes(perf.parse_args(["--out", str(tmp_path)]))
    assert full == ([1_000, 5_000, 10_000, 100_000, 1_000_000], [1_000, 5_000, 10_000])
    quick = perf.planned_sizes(perf.parse_args(["--out", str(tmp_path), "--quick"]))
    assert quick == ([1_000, 5_000, 10_000], [1_000, 5_000, 10_000])


def test_synthetic_task_is_seeded_and_cifar10h_like() -> None:
    task, post = synthetic.synthetic_task(20_000)
    again, post2 = synthetic.synthetic_task(20_000)
    np.testing.assert_array_equal(task.true_dist, again.true_dist)
    np.testing.assert_array_equal(task.noisy_labels, again.noisy_labels)
    np.testing.assert_array_equal(post, post2)
    assert 0.12 < task.noise_rate < 0.18
    assert 0.07 < task.ambiguous.mean() < 0.14
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    assert task.budget == round(4 * task.initially_mislabelled)


def test_agreement_check_finds_identical_runs_on_a_noisy_expert() -> None:
    results = runs.agreement_check(1_000, seeds=tuple(range(4)), strategies=("random", "loss", "oracle"))
    assert [r.strategy for r in results] == ["random", "loss", "oracle"]
    for r in results:
        assert r.agree and r.identical == 4, r
        assert r.ours_accuracy == r.ref_accuracy and r.ours_auc == r.ref_auc
        assert r.ours_accuracy > 87  # both improve on the ~85 % initial accuracy


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
    # With one-hot truths the oracle's scores tie massively: both implementations must break
    # the ties the same way, select the same samples in the same order and spend the same draws.
    task, post = _one_hot_task()
    strategy = registry.create("strategy", name)
    ctx = synthetic.context_for(task, post, strategy, seed=5)
    ours = runs.ours_simulate(task, strategy, ctx, seed=5)
    ref = runs.reference_summary(task, strategy, ctx, seed=5)
    np.testing.assert_array_equal(ours.selected, ref.selected)
    np.testing.assert_array_equal(ours.draws, ref.draws)
    assert ours.final_accuracy == ref.final_accuracy
    assert ours.auc == pytest.approx(ref.auc)
