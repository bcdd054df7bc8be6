"""The downstream stage (benchmark.downstream): models re-trained on the labels part-way
through each run, and candidate models evaluated and selected with noisy, cleaned and true
validation labels; its cache and its report."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from benchmark import registry
from benchmark.cli import main
from benchmark.downstream.features import feature_inputs
from benchmark.downstream.fits import decode_predictions, fit_inputs, fit_key
from benchmark.downstream.models import Model, knn_predict
from benchmark.downstream.report import render, training_summary, write_downstream
from benchmark.downstream.selection import NOISY, TRUE, selection_metrics, validation_split
from benchmark.downstream.training import run_downstream
from benchmark.plugins import ScoringContext
from benchmark.results.tables import cell_snapshots, write_cell
from benchmark.simulation.simulator import initial_counts, simulate
from benchmark.simulation.snapshots import FRACTIONS, budgets_at, labels_at
from benchmark.task import CleaningTask

# --------------------------------------------------------------------------- hand-computed cases


def test_knn_majority_and_tie_to_the_nearer_class():
    # columns with mean 0 and standard deviation 1: standardising changes nothing
    x = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=np.float32)
    y = np.array([1, 0, 0, 2])
    # cosine similarity of the target to the samples: 0.95, 0.32, -0.32, -0.95
    targets = np.array([[1.0, 0.5]], dtype=np.float32)
    assert knn_predict(x, y, 3, targets, 1)[0] == 1
    # k=2: one vote each for classes 1 and 0; the nearer neighbour's class wins the tie
    assert knn_predict(x, y, 3, targets, 2)[0] == 1
    # k=3: class 0 has two of the three nearest
    assert knn_predict(x, y, 3, targets, 3)[0] == 0
    # k larger than the training set: every sample votes
    assert knn_predict(x, y, 3, targets, 10)[0] == 0


def test_selection_metrics_by_hand():
    # three candidates scored on four validation samples
    predictions = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    truth_labels = np.array([0, 0, 1, 1])
    true_acc = 100.0 * (predictions == truth_labels).mean(axis=1)
    assert list(true_acc) == [50.0, 100.0, 50.0]
    noisy = np.array([1, 1, 1, 1])  # measured: 50, 50, 100 -> candidate 2 is picked
    test_acc = np.array([70.0, 80.0, 60.0])
    m = selection_metrics(predictions, noisy, true_acc, test_acc)
    assert m["bias"] == pytest.approx(((50 - 50) + (50 - 100) + (100 - 50)) / 3)
    assert m["right_pick"] == 0.0
    assert m["picked"] == 2.0
    assert m["pick_cost"] == pytest.approx(80.0 - 60.0)
    # tau-b of measured (50, 50, 100) against true (50, 100, 50): pair (0, 1) tied in measured,
    # (0, 2) tied in true, (1, 2) discordant: (C - D) / sqrt((3 - 1)(3 - 1)) = (0 - 1) / 2
    assert m["tau"] == pytest.approx(-0.5)
    # the true labels themselves: no bias, the same order, the right pick at no cost
    m = selection_metrics(predictions, truth_labels, true_acc, test_acc)
    assert (m["bias"], m["right_pick"], m["pick_cost"]) == (0.0, 1.0, 0.0)
    assert m["tau"] == pytest.approx(1.0)


def test_validation_split_is_seeded_disjoint_and_a_fifth():
    train, val = validation_split(500, seed=3)
    assert val.size == 100 and train.size == 400
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(500))
    np.testing.assert_array_equal(validation_split(500, seed=3)[1], val)
    assert not np.array_equal(validation_split(500, seed=4)[1], val)


def test_fit_key_follows_labels_model_seed_and_rows_but_not_the_name():
    task = _toy_task()[0]
    model = Model("a", kind="knn", k=3)
    base = fit_key(fit_inputs(task, model, task.noisy_labels, None, 0))
    assert fit_key(fit_inputs(task, Model("renamed", kind="knn", k=3), task.noisy_labels, None, 0)) == base
    assert fit_key(fit_inputs(task, Model("a", kind="knn", k=5), task.noisy_labels, None, 0)) != base
    assert fit_key(fit_inputs(task, model, task.true_labels, None, 0)) != base
    assert fit_key(fit_inputs(task, model, task.noisy_labels, None, 1)) != base
    assert fit_key(fit_inputs(task, model, task.noisy_labels, np.arange(10), 0)) != base


def test_predictions_round_trip():
    values = np.array([0, 9, 3, 11, 35])
    from benchmark.downstream.fits import _digit

    np.testing.assert_array_equal(decode_predictions("".join(_digit(int(v)) for v in values)), values)


# --------------------------------------------------------------------------- the stage end to end


def _toy_task(n: int = 300, noise: float = 0.3, seed: int = 0) -> tuple[CleaningTask, np.ndarray, tuple]:
    """Three separable Gaussian classes: features for the task and a clean evaluation set."""
    rng = np.random.default_rng(seed)
    centres = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, m)
        return (centres[y] + rng.normal(size=(m, 2))).astype(np.float32), y

    x, y = draw(n)
    ex, ey = draw(600)
    flip = rng.random(n) < noise
    noisy = np.where(flip, (y + rng.integers(1, 3, n)) % 3, y)
    task = CleaningTask(
        name="toy[downstream]",
        true_dist=np.eye(3)[y],
        noisy_labels=noisy,
        class_names=("a", "b", "c"),
        sample_ids=np.arange(n),
        load_eval=lambda: (np.zeros((600, 4, 4, 3), np.uint8), ey),
        info={"eval_set": "toy evaluation set"},
    )
    return task, x, (ex, ey)


def _write_features(out: Path, task: CleaningTask, x: np.ndarray, evaluation: tuple) -> Path:
    import hashlib

    from benchmark.posteriors.cache_entry import canonical_json

    key = hashlib.sha256(canonical_json(feature_inputs(task)).encode()).hexdigest()[:20]
    path = out / "downstream" / "features" / f"{key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, train=x, eval=evaluation[0], eval_labels=evaluation[1])
    path.write_bytes(buffer.getvalue())
    return path


def _simulated_runs(
    out: Path, task: CleaningTask, strategies=("random", "oracle"), seeds=(0, 1)
) -> pd.DataFrame:
    """Runs of ``strategies`` on ``task`` whose label snapshots are stored as cells store them."""
    rows = []
    for strategy in strategies:
        plugin = registry.create("strategy", strategy)
        for seed in seeds:
            ctx = ScoringContext(
                label_counts=initial_counts(task),
                posteriors=None,
                stochastic=None,
                true_dist=task.true_dist,
                seed=seed,
            )
            traj = simulate(task, plugin, ctx, seed=seed)
            budgets = budgets_at(traj.budget)
            labels = labels_at(
                task,
                traj,
                budgets.tolist(),
                resimulate=lambda b, p=plugin, c=ctx, s=seed: simulate(task, p, c, seed=s, budget=b),
            )
            config_hash = f"{strategy}-{seed}"
            row = {
                "dataset": task.name,
                "learner": "truth",
                "strategy": strategy,
                "seed": seed,
                "status": "ok",
                "config_hash": config_hash,
            }
            snap = {"fractions": np.asarray(FRACTIONS), "budgets": budgets, "labels": labels.astype(np.int16)}
            write_cell(out, SimpleNamespace(hash=config_hash), row, None, (), snap)  # type: ignore[arg-type]
            rows.append(row)
    return pd.DataFrame(rows)


CANDS = (
    Model("1-NN", kind="knn", k=1),
    Model("9-NN", kind="knn", k=9),
    Model("head", epochs=15),
    Model("short head", epochs=1, lr=0.001),
)


def test_stage_trains_on_the_labels_part_way_and_scores_candidates(tmp_path):
    task, x, evaluation = _toy_task()
    _write_features(tmp_path, task, x, evaluation)
    runs = _simulated_runs(tmp_path, task)
    one_nn = Model("1-NN", kind="knn", k=1)  # memorises the noise: the noisy labels hurt it
    result = run_downstream(
        tmp_path,
        runs,
        {task.name: task},
        {task.name: "truth"},
        model=one_nn,
        candidates=CANDS,
        read_dirs=(),
        progress=False,
    )
    assert not result.notes
    t = result.training
    assert t["test_accuracy"].notna().all()
    per_seed = t[t["strategy"].isin([NOISY, TRUE])].pivot(
        index="seed", columns="strategy", values="test_accuracy"
    )
    assert (per_seed[TRUE] > per_seed[NOISY] + 10).all()  # 30 % noise costs a 1-NN dearly
    # at 0 % every strategy has the noisy labels: the very same fit as the noisy reference
    zero = t[t["fraction"] == 0.0]
    noisy_keys = t[t["strategy"] == NOISY].set_index("seed")["fit_key"]
    assert (zero["fit_key"].to_numpy() == noisy_keys.loc[zero["seed"]].to_numpy()).all()
    # the oracle's final labels are the true ones here (one-hot truth): the true-label model
    oracle_end = t[(t["strategy"] == "oracle") & (t["fraction"] == 1.0)].set_index("seed")
    assert (oracle_end["label_accuracy"] == 100.0).all()
    true_keys = t[t["strategy"] == TRUE].set_index("seed")["fit_key"]
    assert (oracle_end["fit_key"] == true_keys.loc[oracle_end.index]).all()
    # label accuracy grows along each run, and so does the summary's gap closed for the oracle
    summary = training_summary(t)
    oracle = summary[summary["strategy"] == "oracle"].sort_values("fraction")
    assert oracle["label_accuracy"].is_monotonic_increasing
    assert oracle["gap_closed"].iloc[-1] == pytest.approx(100.0)

    s = result.selection
    assert set(s["strategy"]) == {NOISY, TRUE, "random", "oracle"}
    true_rows = s[s["strategy"] == TRUE]
    assert np.allclose(true_rows["tau"], 1.0) and (true_rows["bias"] == 0.0).all()
    oracle_full = s[(s["strategy"] == "oracle") & (s["fraction"] == 1.0)]
    assert np.allclose(oracle_full["tau"], 1.0)
    noisy_rows = s[s["strategy"] == NOISY]
    assert (noisy_rows["bias"] < 0).all()  # noisy labels make every candidate look worse
    assert len(result.candidates) == len(CANDS) * 2


def test_second_run_reads_every_fit_from_the_cache_without_features(tmp_path):
    task, x, evaluation = _toy_task()
    features = _write_features(tmp_path, task, x, evaluation)
    runs = _simulated_runs(tmp_path, task, seeds=(0,))
    args = ({task.name: task}, {task.name: "truth"})
    kwargs = dict(model=Model("3-NN", kind="knn", k=3), candidates=CANDS, read_dirs=(), progress=False)
    first = run_downstream(tmp_path, runs, *args, **kwargs)  # type: ignore[arg-type]
    features.unlink()  # no features, no images: only the cached fits remain
    second = run_downstream(tmp_path, runs, *args, **kwargs)  # type: ignore[arg-type]
    assert not second.notes
    pd.testing.assert_frame_equal(first.training, second.training)
    pd.testing.assert_frame_equal(first.selection, second.selection)
    # the shipped-fits folder is read too: a fresh results folder needs no features either
    other = tmp_path / "other"
    _simulated_runs(other, task, seeds=(0,))
    third = run_downstream(other, runs, *args, **{**kwargs, "read_dirs": [tmp_path / "downstream" / "fits"]})  # type: ignore[arg-type]
    assert not third.notes
    pd.testing.assert_frame_equal(first.training, third.training)


def test_missing_features_and_images_are_reported_not_fatal(tmp_path):
    task, _, _ = _toy_task()
    runs = _simulated_runs(tmp_path, task, seeds=(0,))
    result = run_downstream(
        tmp_path,
        runs,
        {task.name: task},
        {task.name: "truth"},
        candidates=CANDS,
        read_dirs=(),
        progress=False,
    )
    assert result.training["test_accuracy"].isna().all()
    assert any("cannot be made here" in n and "no images" in n for n in result.notes)
    # the report still renders, listing what was not done
    write_downstream(tmp_path, result)
    secs, notes, _ = render(tmp_path)
    assert notes and not secs


def test_report_pages_show_the_downstream_tables(tmp_path):
    task, x, evaluation = _toy_task()
    _write_features(tmp_path, task, x, evaluation)
    runs = _simulated_runs(tmp_path, task)
    result = run_downstream(
        tmp_path,
        runs,
        {task.name: task},
        {task.name: "truth"},
        model=Model("5-NN", kind="knn", k=5),
        candidates=CANDS,
        read_dirs=(),
        progress=False,
    )
    write_downstream(tmp_path, result)
    secs, notes, written = render(tmp_path)
    assert [s.dataset for s in secs] == [task.name]
    assert all(p.is_file() for p in written)
    table = secs[0].training
    assert list(table.columns) == ["strategy", "0 %", "25 %", "50 %", "75 %", "100 %", "gap closed at 100 %"]
    assert list(table["strategy"]) == ["random", "oracle"]
    assert list(secs[0].selection["labels"][:2]) == [NOISY, TRUE]
    text = (tmp_path / "downstream" / "downstream.md").read_text()
    assert "5-NN" in text and "toy evaluation set" in text


# --------------------------------------------------------------------------- cells and data


def test_cells_store_their_labels_part_way(tmp_path):
    task = registry.create("dataset", "cifar10h[n=300]").load()
    probs = tmp_path / "probs.npy"
    np.save(probs, (0.5 * task.true_dist + 0.05).astype(np.float32))  # rows sum to 1
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--dataset",
                "cifar10h[n=300]",
                "--posteriors",
                str(probs),
                "--strategy",
                "loss",
                "--strategy",
                "oracle",
                "--seeds",
                "0",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    runs = pd.read_parquet(out / "runs.parquet")
    for row in runs.itertuples():
        snap = cell_snapshots(out, row.config_hash)
        assert snap is not None
        np.testing.assert_array_equal(snap["fractions"], FRACTIONS)
        np.testing.assert_array_equal(snap["budgets"], budgets_at(int(row.budget)))
        np.testing.assert_array_equal(snap["labels"][0], task.noisy_labels)
        final = 100.0 * np.mean(snap["labels"][-1] == task.true_labels)
        assert final == pytest.approx(row.final_accuracy)


def test_cifar10_training_set_is_the_evaluation_set(data_root):
    task = registry.create("dataset", "cifar10h").load(data_root)
    assert task.load_eval is not None and "CIFAR-10 training set" in task.info["eval_set"]
    images, labels = task.load_eval()
    assert images.shape == (50_000, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels[:5], [6, 9, 9, 4, 1])  # the official first labels
    assert np.bincount(labels).tolist() == [5000] * 10


def test_training_batch_that_is_not_the_official_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = tmp_path / "root" / "cifar-10-batches-py" / "data_batch_1"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the official batch")
    with pytest.raises(ValueError, match="not the official CIFAR-10 data_batch_1") as err:
        task = registry.create("dataset", "cifar10h").load(tmp_path / "root")
        assert task.load_eval is not None
        task.load_eval()
    assert str(fake) in str(err.value)


def test_missing_evaluation_set_offline_says_where_it_looked_and_that_the_download_failed(
    tmp_path, monkeypatch
):
    import sys
    import types

    from benchmark.dataroot import DataNotFoundError

    root, cache = tmp_path / "root", tmp_path / "xdg-cache"
    root.mkdir()
    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    calls = []

    def offline_download(*args, **kwargs):
        calls.append(kwargs)
        raise OSError("network unreachable")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=offline_download)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    task = registry.create("dataset", "cifar10h").load(root)
    assert task.load_eval is not None
    with pytest.raises(DataNotFoundError) as err:
        task.load_eval()
    message = str(err.value)
    assert str(root / "cifar-10-batches-py" / "data_batch_1") in message
    assert str(root / "cifar10" / "cifar10_train_jpeg_packed.npz") in message
    assert "network unreachable" in message and "train=True" in message
    assert calls and calls[0]["train"] is True


def test_model_choices_of_the_command_line_are_the_known_models():
    from benchmark.arguments import build_parser
    from benchmark.downstream.models import RETRAIN_MODELS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    down = sub.choices["downstream"]  # type: ignore[attr-defined]
    model = next(a for a in down._actions if a.dest == "model")
    assert set(model.choices) == set(RETRAIN_MODELS)


def test_downstream_command_without_images_reports_what_it_could_not_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALCBENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("benchmark.downstream.fits.SHIPPED_FITS", tmp_path / "none")
    task = registry.create("dataset", "cifar10h[n=300]").load()
    probs = tmp_path / "probs.npy"
    np.save(probs, (0.5 * task.true_dist + 0.05).astype(np.float32))
    out = tmp_path / "out"
    run = ["run", "--dataset", "cifar10h[n=300]", "--posteriors", str(probs), "--strategy", "loss"]
    assert main([*run, "--seeds", "0", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["downstream", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "not done" in printed and "cannot be made here" in printed
    page = (out / "leaderboard.md").read_text()
    assert "## What cleaning buys downstream" in page and "Not done:" in page
