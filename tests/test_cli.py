"""The command line end to end: list, run, report, and what bad input does."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import registry
from benchmark.cli import main

DATASET = "cifar10h[temperature=2]"


@pytest.fixture
def truth_posteriors(tmp_path: Path) -> Path:
    """The paper's CIFAR-10H task's true distribution saved as a posteriors file."""
    task = registry.create("dataset", DATASET).load()
    path = tmp_path / "truth.npy"
    np.save(path, task.true_dist.astype(np.float32))
    return path


def _run(out: Path, posteriors: Path, *strategies: str, seeds: str = "0-1") -> int:
    args = [
        "run",
        "--dataset",
        DATASET,
        "--posteriors",
        str(posteriors),
        "--seeds",
        seeds,
        "--out",
        str(out),
        "--no-progress",
    ]
    for s in strategies:
        args += ["--strategy", s]
    return main(args)


def test_list_shows_every_builtin_plugin_with_description_and_origin(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [
        "cifar10h",
        "random",
        "oracle",
        "loss",
        "entropy",
        "eq2",
        "bald",
        "cleanlab",
        "truth",
        "smallcnn",
    ]:
        assert f"  {name} " in out
    assert "strategies/eq2.py" in out
    assert "Cross-entropy of the current label" in out


def test_list_filters_by_pattern(capsys):
    assert main(["list", "strategies", "e*"]) == 0
    out = capsys.readouterr().out
    assert "  eq2 " in out and "  entropy " in out
    assert "  random " not in out


def test_run_writes_tables_leaderboard_and_plots(tmp_path, truth_posteriors):
    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "random", "oracle", "eq2") == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 6 and set(runs["status"]) == {"ok"}
    assert set(runs["learner"]) == {"file:truth.npy"}
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["config_hash"]) == set(runs["config_hash"])
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.csv").is_file()
    assert list((out / "plots").glob("*.png"))
    board = pd.read_csv(out / "leaderboard.csv")
    # the oracle beats eq2, which beats random, with perfect posteriors
    order = list(board.sort_values("rank")["strategy"])
    assert order.index("oracle") < order.index("eq2[hinge=None]") < order.index("random")


def test_same_seeds_give_identical_result_tables(tmp_path, truth_posteriors):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a, truth_posteriors, "random", "loss", "oracle") == 0
    assert _run(b, truth_posteriors, "random", "loss", "oracle") == 0
    assert (a / "runs.csv").read_bytes() == (b / "runs.csv").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "curves.parquet"), pd.read_parquet(b / "curves.parquet")
    )
    assert (a / "leaderboard.csv").read_bytes() == (b / "leaderboard.csv").read_bytes()


def test_different_seeds_give_different_random_runs(tmp_path, truth_posteriors):
    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "random", seeds="0-1") == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["auc"].iloc[0] != runs["auc"].iloc[1]


def test_report_rebuilds_from_tables_alone(tmp_path, truth_posteriors):
    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "random", "loss") == 0
    first = (out / "leaderboard.md").read_text()
    for path in list((out / "cells").iterdir()):
        path.unlink()
    (out / "cells").rmdir()
    (out / "leaderboard.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "leaderboard.md").read_text() == first


def test_runs_into_one_folder_accumulate(tmp_path, truth_posteriors):
    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "random") == 0
    assert _run(out, truth_posteriors, "loss") == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(set(runs["strategy"])) == ["loss", "random"]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((5000, 9), 1 / 9, dtype=np.float32), "(5000, 10)"),
        (np.full((10, 10), 0.1, dtype=np.float32), "(5000, 10)"),
        (np.where(np.eye(10)[np.zeros(5000, int)] > 0, np.nan, 0.0), "NaN"),
        (np.tile(np.r_[-0.1, 1.1, np.zeros(8)], (5000, 1)), "negative"),
        (np.full((5000, 10), 0.2), "sum"),
    ],
    ids=["wrong-classes", "wrong-samples", "nan", "negative", "not-normalised"],
)
def test_bad_posteriors_file_is_a_clear_error_naming_the_file(tmp_path, capsys, array, expected):
    path = tmp_path / "bad_posteriors.npy"
    np.save(path, array)
    code = _run(tmp_path / "res", path, "loss")
    err = capsys.readouterr()
    text = err.out + err.err
    assert code != 0
    assert "bad_posteriors.npy" in text
    assert expected.lower() in text.lower()


def test_unknown_strategy_suggests_close_names(tmp_path, truth_posteriors, capsys):
    assert _run(tmp_path / "res", truth_posteriors, "eq3") == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'eq3'" in err and "'eq2'" in err


def test_unknown_dataset_suggests_close_names(tmp_path, truth_posteriors, capsys):
    code = main(
        [
            "run",
            "--dataset",
            "cifar10",
            "--strategy",
            "loss",
            "--posteriors",
            str(truth_posteriors),
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr()
    assert code != 0
    assert "cifar10h" in out.out + out.err


def test_strategy_that_raises_fails_its_cell_and_the_others_finish(
    tmp_path, truth_posteriors, plugin_root, capsys
):
    (plugin_root / "strategies" / "explodes.py").write_text(
        textwrap.dedent("""
        from benchmark.plugins import Strategy

        class Explodes(Strategy):
            name = "explodes"
            description = "Raises while scoring."

            def score(self, ctx):
                raise RuntimeError("boom")
    """)
    )
    (plugin_root / "strategies" / "wrongshape.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from benchmark.plugins import Strategy

        class WrongShape(Strategy):
            name = "wrongshape"
            description = "Returns one score too few."

            def score(self, ctx):
                return np.zeros(ctx.n_samples - 1)
    """)
    )
    out = tmp_path / "res"
    code = _run(out, truth_posteriors, "random", "explodes", "wrongshape", "loss")
    text = capsys.readouterr().out
    assert code == 1
    runs = pd.read_parquet(out / "runs.parquet").set_index(["strategy", "seed"])
    assert runs.loc[("random", 0), "status"] == "ok" and runs.loc[("loss", 1), "status"] == "ok"
    assert runs.loc[("explodes", 0), "status"] == "failed"
    assert "boom" in runs.loc[("explodes", 0), "error"]
    assert "shape (4999,)" in runs.loc[("wrongshape", 0), "error"]
    assert "FAILED" in text and "explodes" in text
    assert "failed" in (out / "leaderboard.md").read_text().lower()


def test_plugin_file_that_fails_to_import_is_listed_as_failed(plugin_root, capsys):
    (plugin_root / "strategies" / "broken.py").write_text("import not_a_module_anywhere\n")
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "FAILED TO LOAD" in out and "not_a_module_anywhere" in out
    assert "  loss " in out


def test_stochastic_strategy_without_stochastic_posteriors_is_skipped_not_failed(tmp_path, truth_posteriors):
    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "bald", "random") == 0
    runs = pd.read_parquet(out / "runs.parquet")
    bald = runs[runs["strategy"] == "bald"]
    assert set(bald["status"]) == {"skipped"}
    assert "stochastic" in bald["error"].iloc[0]


def test_stochastic_posteriors_file_feeds_bald(tmp_path):
    task = registry.create("dataset", DATASET).load()
    rng = np.random.default_rng(0)
    noisy = rng.dirichlet(np.ones(10), size=(4, task.n_samples)) * 0.3 + task.true_dist * 0.7
    path = tmp_path / "stochastic.npy"
    np.save(path, noisy.astype(np.float32))
    out = tmp_path / "res"
    assert _run(out, path, "bald", "loss", seeds="0") == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["status"]) == {"ok"}


def test_seed_ranges(tmp_path):
    from benchmark.config import parse_seeds

    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,1,2-3") == [1, 2, 3]
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("4-1")


def test_learner_that_raises_fails_its_cells_and_the_others_finish(tmp_path, plugin_root, capsys):
    (plugin_root / "learners").mkdir()
    (plugin_root / "learners" / "boom.py").write_text(
        textwrap.dedent("""
        from benchmark.plugins import Learner

        class Boom(Learner):
            name = "boom"
            description = "Raises while fitting."
            needs_images = False

            def fit_predict(self, task, *, seed, progress=True):
                raise RuntimeError("out of memory, say")
    """)
    )
    out = tmp_path / "res"
    code = main(
        [
            "suite",
            "--out",
            str(out),
            "--datasets",
            DATASET,
            "--learners",
            "boom",
            "truth",
            "--strategies",
            "random",
            "loss",
            "--seeds",
            "0",
            "--cache",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == 1
    runs = pd.read_parquet(out / "runs.parquet").set_index(["learner", "strategy"])
    assert set(runs.loc["truth", "status"]) == {"ok"}
    assert set(runs.loc["boom", "status"]) == {"failed"}
    assert "out of memory, say" in runs.loc[("boom", "loss"), "error"]
    assert "out of memory, say" in capsys.readouterr().out


def test_interrupted_benchmark_keeps_finished_cells_and_resumes(tmp_path, truth_posteriors, monkeypatch):
    from benchmark.run import runner

    out = tmp_path / "res"
    real = runner.run_cell
    calls = {"n": 0}

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", interrupt_on_third)
    assert _run(out, truth_posteriors, "random", "loss", seeds="0-1") == 130
    assert len(list((out / "cells").glob("*.json"))) == 2
    monkeypatch.setattr(runner, "run_cell", real)
    done = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    args = [
        "run",
        "--dataset",
        DATASET,
        "--posteriors",
        str(truth_posteriors),
        "--seeds",
        "0-1",
        "--out",
        str(out),
        "--no-progress",
        "--strategy",
        "random",
        "--strategy",
        "loss",
        "--resume",
    ]
    assert main(args) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(after) == 4
    assert all(after[name] == mtime for name, mtime in done.items())  # reused, not rerun
    assert len(pd.read_parquet(out / "runs.parquet")) == 4


def test_result_files_get_ordinary_permissions(tmp_path, truth_posteriors):
    import os

    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "random", seeds="0") == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ["runs.parquet", "runs.csv", "curves.parquet", "leaderboard.md"]:
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_parallel_cells_give_the_same_tables_as_sequential_ones(tmp_path, truth_posteriors):
    base = [
        "run",
        "--dataset",
        DATASET,
        "--posteriors",
        str(truth_posteriors),
        "--seeds",
        "0-1",
        "--no-progress",
        "--strategy",
        "random",
        "--strategy",
        "oracle",
        "--strategy",
        "eq2",
    ]
    assert main([*base, "--out", str(tmp_path / "seq"), "--jobs", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "par"), "--jobs", "2"]) == 0
    assert (tmp_path / "seq" / "runs.csv").read_bytes() == (tmp_path / "par" / "runs.csv").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "seq" / "curves.parquet"),
        pd.read_parquet(tmp_path / "par" / "curves.parquet"),
    )


def test_active_runs_sit_beside_static_ones_and_record_their_refits(tmp_path, plugin_root, capsys):
    """Algorithm 1 through the CLI: a learner whose re-fit sees the current labels."""
    (plugin_root / "learners").mkdir()
    (plugin_root / "learners" / "noisy_truth.py").write_text(
        textwrap.dedent('''
        import numpy as np
        from benchmark.plugins import Learner, Posteriors

        class NoisyTruth(Learner):
            """Posteriors that blend the truth with the class frequencies of the training labels."""
            name = "noisy_truth"
            description = "Half the true distribution, half the label frequencies it is fitted on."
            needs_images = False
            cache = False

            def fit_predict(self, task, *, seed, progress=True):
                prior = np.bincount(task.noisy_labels, minlength=task.n_classes) / task.n_samples
                return Posteriors(probs=(0.5 * task.true_dist + 0.5 * prior).astype(np.float32))
    ''')
    )
    out = tmp_path / "res"
    args = [
        "suite",
        "--out",
        str(out),
        "--datasets",
        DATASET,
        "--learners",
        "noisy_truth",
        "--strategies",
        "random",
        "loss",
        "--seeds",
        "0-1",
        "--active-every",
        "1000",
        "--no-progress",
    ]
    assert main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet").set_index(["strategy", "seed"])
    active = "loss (active, re-fit every 1000)"
    # random reads no posteriors: it gets no active twin
    assert set(runs.index.get_level_values(0)) == {"random", "loss", active}
    assert runs.loc[(active, 0), "n_refits"] == 3 and runs.loc[("loss", 0), "n_refits"] == 0
    assert json.loads(runs.loc[(active, 0), "refit_at"])[0] >= 1000
    # re-fitting on the corrected labels changes the ranking, so the runs differ
    assert runs.loc[(active, 0), "auc"] != runs.loc[("loss", 0), "auc"]
    timings = pd.read_csv(out / "refit_timings.csv")
    assert len(timings) == 6 and (timings["seconds"] >= 0).all()
    board = pd.read_csv(out / "leaderboard.csv")
    assert active in set(board["strategy"])
    assert "learner re-fits in active runs" in capsys.readouterr().out


def test_a_strategy_returning_infinite_scores_fails_its_cell_naming_it(
    tmp_path, truth_posteriors, plugin_root
):
    (plugin_root / "strategies" / "unbounded.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from benchmark.plugins import Strategy

        class Unbounded(Strategy):
            name = "unbounded"
            description = "Puts one sample at +inf."

            def score(self, ctx):
                scores = ctx.posteriors.max(axis=1)
                scores[0] = np.inf
                return scores
    """)
    )
    out = tmp_path / "res"
    assert _run(out, truth_posteriors, "random", "unbounded", seeds="0") == 1
    runs = pd.read_parquet(out / "runs.parquet").set_index("strategy")
    assert runs.loc["random", "status"] == "ok"
    assert runs.loc["unbounded", "status"] == "failed"
    assert "strategy unbounded returned non-finite scores (1 +inf" in runs.loc["unbounded", "error"]


# --------------------------------------------------------------------------- posterior caches


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No images anywhere, an empty user cache, and a torchvision download that fails."""
    import sys
    import types

    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def offline_download(*args, **kwargs):
        raise OSError("network unreachable")

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=offline_download)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)


@pytest.fixture
def no_smallcnn_fit(monkeypatch):
    """smallcnn's fit raises: whatever runs must come from the shipped posteriors."""

    def explode(*args, **kwargs):
        raise AssertionError("smallcnn was fitted")

    monkeypatch.setattr(registry.get("learner", "smallcnn"), "fit_predict", explode)


def test_suite_into_any_folder_reads_the_shipped_posteriors(tmp_path, offline, no_smallcnn_fit, capsys):
    out = tmp_path / "elsewhere"
    args = ["suite", "--out", str(out), "--datasets", DATASET, "--learners", "smallcnn"]
    args += ["--strategies", "loss", "bald", "--seeds", "0-1", "--no-progress"]
    assert main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs["status"]) == ["ok"] * 4, runs["error"].tolist()
    shipped = {p.stem for p in (registry.PROJECT_ROOT / "results" / "posteriors" / "smallcnn").glob("*.npz")}
    assert set(runs["posteriors_id"]) <= shipped
    assert not (out / "posteriors").exists()  # read, not copied
    assert "4 cells ok, 0 skipped, 0 failed" in capsys.readouterr().out


def test_fit_exports_shipped_posteriors_offline(tmp_path, offline, no_smallcnn_fit, capsys):
    export = tmp_path / "exported" / "smallcnn.npy"
    args = ["fit", "--dataset", DATASET, "--seeds", "3", "--export", str(export)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cached in " + str(registry.PROJECT_ROOT / "results" / "posteriors" / "smallcnn") in out
    array = np.load(export)
    assert array.shape == (10, 5000, 10) and np.isfinite(array).all()
    assert not (tmp_path / "xdg-cache" / "alcbench" / "posteriors").exists()  # nothing fitted
    # the export is a valid posteriors file of the same task, stochastic samples included
    assert _run(tmp_path / "res", export, "bald", "loss", seeds="0") == 0
    assert set(pd.read_parquet(tmp_path / "res" / "runs.parquet")["status"]) == {"ok"}


def test_cache_dirs_write_where_asked_and_always_read_the_shipped_posteriors(tmp_path, monkeypatch):
    import argparse

    from benchmark import commands

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "xdg" / "alcbench" / "posteriors"
    shipped = commands.SHIPPED_POSTERIORS
    out = tmp_path / "out"
    for cache, suite, expected in [
        (None, True, out / "posteriors"),
        (None, False, user),
        (tmp_path / "mine", True, tmp_path / "mine"),
        (tmp_path / "mine", False, tmp_path / "mine"),
    ]:
        args = argparse.Namespace(cache=cache, out=out)
        assert commands.cache_dirs(args, suite=suite) == (expected, [shipped])
    args = argparse.Namespace(cache=None, out=shipped.parent)
    assert commands.cache_dirs(args, suite=True) == (shipped, [])


def test_bad_cache_entry_without_images_skips_naming_the_entry_and_the_images(
    tmp_path, offline, monkeypatch, capsys
):
    from benchmark import commands
    from benchmark.posteriors.cache import cache_key

    monkeypatch.setattr(commands, "SHIPPED_POSTERIORS", tmp_path / "nothing-shipped")
    task = registry.create("dataset", DATASET).load()
    key = cache_key(task, registry.create("learner", "smallcnn"), 0)
    cache = tmp_path / "cache"
    (cache / "smallcnn").mkdir(parents=True)
    source = registry.PROJECT_ROOT / "results" / "posteriors" / "smallcnn" / key
    for suffix in (".json", ".npz"):
        (cache / "smallcnn" / f"{key}{suffix}").write_bytes(source.with_suffix(suffix).read_bytes())
    bad = cache / "smallcnn" / f"{key}.npz"
    with np.load(bad) as z:
        arrays = dict(z)
    arrays["probs"] = arrays["probs"].copy()
    arrays["probs"][7] = -arrays["probs"][7]
    np.savez(bad, **arrays)

    args = ["run", "--dataset", DATASET, "--learner", "smallcnn", "--strategy", "loss"]
    args += ["--seeds", "0", "--cache", str(cache), "--out", str(tmp_path / "res"), "--no-progress"]
    assert main(args) == 0
    runs = pd.read_parquet(tmp_path / "res" / "runs.parquet")
    assert list(runs["status"]) == ["skipped"]
    error = runs["error"].iloc[0]
    assert str(bad) in error and "negative" in error and "row 7" in error
    assert "CIFAR-10 test images not found" in error
    captured = capsys.readouterr()
    assert f"{bad}: bad cache entry" in captured.err


def _versioned_learner(plugin_root: Path) -> None:
    (plugin_root / "learners").mkdir()
    (plugin_root / "learners" / "versioned.py").write_text(
        textwrap.dedent('''
        import numpy as np
        from benchmark.plugins import Learner, Posteriors

        class Versioned(Learner):
            """The truth, softened by an amount that a new version may change."""
            name = "versioned"
            description = "The true distribution mixed with the uniform one."
            needs_images = False
            version = "1"
            fits = []

            def fit_predict(self, task, *, seed, progress=True):
                type(self).fits.append(seed)
                return Posteriors(probs=(0.8 * task.true_dist + 0.2 / task.n_classes).astype(np.float32))
    ''')
    )
    registry.refresh()


def test_resume_reruns_cells_whose_learner_version_changed(tmp_path, plugin_root, monkeypatch):
    _versioned_learner(plugin_root)
    out = tmp_path / "res"
    args = ["run", "--dataset", DATASET, "--learner", "versioned", "--strategy", "loss"]
    args += ["--strategy", "random", "--seeds", "0", "--out", str(out), "--cache", str(tmp_path / "cache")]
    args += ["--no-progress", "--resume"]
    assert main(args) == 0
    first = pd.read_parquet(out / "runs.parquet").set_index("strategy")
    cells = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}

    assert main(args) == 0  # nothing changed: every cell is reused
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == cells

    cls = registry.get("learner", "versioned")
    monkeypatch.setattr(cls, "version", "2")
    assert main(args) == 0
    again = pd.read_parquet(out / "runs.parquet").set_index("strategy")
    # same cells (the config hash does not name the version), run again on the new posteriors
    assert list(again["config_hash"].sort_index()) == list(first["config_hash"].sort_index())
    for strategy in ("loss", "random"):
        assert again.loc[strategy, "posteriors_id"] != first.loc[strategy, "posteriors_id"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} != cells
    assert cls.fits == [0, 0]
