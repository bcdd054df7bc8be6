"""The learner throughput benchmark (benchmark/perf/learners.py): what it writes.

No wall-clock assertions: rates depend on the machine. A ``--quick`` run (tiny sizes, one timed
batch per phase, a few seconds on a CPU) must write both files with every learner and phase.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmark.perf import learners as perf_learners  # noqa: E402 (a developer tool that needs torch)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("perf_learners")
    threads = torch.get_num_threads()
    rc = perf_learners.main(["--out", str(out), "--quick"])
    assert torch.get_num_threads() == threads  # the learners' settings are restored
    return rc, out


def test_quick_run_writes_csv(quick_run) -> None:
    rc, out = quick_run
    assert rc == 0
    with (out / "learners.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == perf_learners.CSV_COLUMNS
        rows = list(reader)
    cells = {(r["learner"], r["phase"]) for r in rows}
    assert cells == {
        (learner, phase) for learner in ("smallcnn", "resnet50") for phase in ("train", "inference")
    }
    assert len(rows) == len(cells)
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    for r in rows:
        rate = float(r["images_per_second"])
        assert math.isfinite(rate) and rate > 0
        assert float(r["seconds"]) > 0
        assert int(r["batches_timed"]) >= 1
        assert int(r["batch_size"]) >= 1
        assert int(r["images_timed"]) >= 1
        assert r["device"] == expected_device
        assert r["device_name"]
        assert r["dtype"] in ("bf16", "fp32")
        assert r["image_shape"] and r["network_input"]
    shapes = {r["learner"]: r["image_shape"] for r in rows}
    assert shapes["smallcnn"] == "32x32x3"
    assert shapes["resnet50"].endswith("x1")  # greyscale radiographs


def test_quick_run_writes_markdown(quick_run) -> None:
    _, out = quick_run
    md = (out / "learners.md").read_text()
    assert md.startswith("# Learner throughput benchmark")
    assert "torch " + torch.__version__ in md
    for learner in ("smallcnn", "resnet50"):
        assert f"| {learner} |" in md
    assert "| train |" in md and "| inference |" in md
    assert "estimate" in md.lower()
    assert "not representative" in md  # --quick rates are flagged


def test_quick_run_times_the_ssl_refit_against_its_baseline(quick_run) -> None:
    _, out = quick_run
    with (out / "ssl_refit.csv").open() as fh:
        rows = {r["mode"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"warm start", "from scratch"}
    assert (rows["warm start"]["epochs"], rows["from scratch"]["epochs"]) == ("10", "120")
    assert all(float(r["median_seconds"]) > 0 for r in rows.values())
    assert float(rows["from scratch"]["ratio"]) == 1.0 and float(rows["warm start"]["ratio"]) > 0
    md = (out / "learners.md").read_text()
    assert "## ssl re-fit, warm start vs from scratch" in md and "| warm start |" in md


def test_full_fit_estimate_counts_default_fit() -> None:
    est = perf_learners.full_fit_estimate("smallcnn", train_rate=1000.0, inference_rate=500.0)
    # 2 folds of 2,500; each trains 24 epochs on the other fold, 2,500 // 64 = 39 batches of 64.
    assert (est.n, est.folds, est.epochs, est.batch_size) == (5_000, 2, 24, 64)
    assert est.train_images == 2 * 24 * 39 * 64
    assert est.seconds == pytest.approx(est.train_images / 1000.0 + 5_000 / 500.0)
    est = perf_learners.full_fit_estimate("resnet50", train_rate=10.0, inference_rate=40.0)
    assert (est.n, est.folds, est.epochs, est.batch_size) == (13_342, 2, 20, 32)
    assert est.train_images == 2 * 20 * (6_671 // 32) * 32
    assert np.isfinite(est.seconds)
