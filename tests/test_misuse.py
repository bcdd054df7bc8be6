"""The command line under misuse: re-runs, concurrent runs, spellings of one configuration,
bad parameter values, bad output folders, broken plugins and damaged cell files. Nothing may
be silently wrong and nothing written may be lost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import registry
from benchmark.cli import main
from benchmark.params import Param, spec_sort_key
from benchmark.results import tables

DATASET = "cifar10h[temperature=2]"


@pytest.fixture
def task_truth():
    return registry.create("dataset", DATASET).load().true_dist.astype(np.float32)


@pytest.fixture
def truth_file(tmp_path: Path, task_truth) -> Path:
    path = tmp_path / "post.npy"
    np.save(path, task_truth)
    return path


def run(out: Path, posteriors: Path, *strategies: str, seeds: str = "0", extra: tuple[str, ...] = ()) -> int:
    args = ["run", "--dataset", DATASET, "--posteriors", str(posteriors), "--seeds", seeds, "--out", str(out)]
    for s in strategies:
        args += ["--strategy", s]
    return main([*args, "--no-progress", *extra])


def runs_of(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "runs.parquet")


# --- 1. re-running into one folder ----------------------------------------------------------


def test_new_contents_at_the_same_posteriors_path_replace_the_old_rows(
    tmp_path, truth_file, task_truth, capsys
):
    out = tmp_path / "res"
    assert run(out, truth_file, "loss", "random", seeds="0-1") == 0
    first = runs_of(out).set_index(["strategy", "seed"])
    noisy = 0.5 * task_truth + 0.5 / task_truth.shape[1]
    np.save(truth_file, noisy.astype(np.float32))
    assert run(out, truth_file, "loss", "random", seeds="0-1") == 0
    assert "4 rows of earlier runs in" in capsys.readouterr().out
    table = runs_of(out)
    assert len(table) == 4 and not table.duplicated(["dataset", "learner", "strategy", "seed"]).any()
    again = table.set_index(["strategy", "seed"])
    assert (again["posteriors_sha256"] != first["posteriors_sha256"]).all()
    assert main(["report", str(out)]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert board["n_seeds"].tolist() == [2, 2]


def test_a_changed_target_replaces_the_rows_of_the_same_runs(tmp_path, truth_file):
    out = tmp_path / "res"
    assert run(out, truth_file, "loss", extra=("--target", "95")) == 0
    assert run(out, truth_file, "loss", extra=("--target", "97")) == 0
    table = runs_of(out)
    assert table["target"].tolist() == [97.0]


def test_the_summary_counts_this_runs_cells_and_says_what_it_kept(tmp_path, truth_file, capsys):
    out = tmp_path / "res"
    assert run(out, truth_file, "loss", "random") == 0
    capsys.readouterr()
    assert run(out, truth_file, "entropy") == 0
    text = capsys.readouterr().out
    assert text.startswith("1 cells ok, 0 skipped, 0 failed")
    assert "2 rows of earlier runs kept" in text
    assert len(runs_of(out)) == 3


# --- 2. concurrent runs into one folder -----------------------------------------------------

SLOW_MERGE = textwrap.dedent(
    """
    import sys, time
    from benchmark.results import tables
    load = tables.load_tables

    def slow_load(out_dir):
        tables = load(out_dir)
        time.sleep(1.5)  # a window in which the other command also merges
        return tables

    tables.load_tables = slow_load
    from benchmark.cli import main
    raise SystemExit(main(sys.argv[1:]))
    """
)


def test_two_concurrent_runs_into_one_folder_keep_every_row(tmp_path, truth_file):
    out = tmp_path / "res"
    assert run(out, truth_file, "random") == 0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SLOW_MERGE, "run", "--dataset", DATASET, "--posteriors", str(truth_file)]
            + ["--strategy", strategy, "--seeds", "0", "--out", str(out), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for strategy in ("loss", "entropy")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    assert sorted(runs_of(out)["strategy"]) == ["entropy", "loss", "random"]
    assert sorted(pd.read_csv(out / "leaderboard.csv")["strategy"]) == ["entropy", "loss", "random"]


# --- 3. one configuration, one name ---------------------------------------------------------


def test_spellings_of_one_configuration_are_one_row(tmp_path, truth_file):
    out = tmp_path / "res"
    assert run(out, truth_file, "eq2", "eq2[]", "eq2[hinge=None]", "random") == 0
    assert sorted(runs_of(out)["strategy"]) == ["eq2[hinge=None]", "random"]
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 2


def test_a_cell_is_resumed_under_any_spelling(tmp_path, truth_file):
    out = tmp_path / "res"
    assert run(out, truth_file, "eq2") == 0
    cell = next((out / "cells").glob("*.json"))
    stamp = cell.stat().st_mtime_ns
    assert run(out, truth_file, "eq2[hinge=None]", extra=("--resume",)) == 0
    assert cell.stat().st_mtime_ns == stamp


def test_a_parameter_given_twice_is_an_error(tmp_path, truth_file, capsys):
    assert run(tmp_path / "res", truth_file, "eq2[hinge=0.3,hinge=0.5]") == 2
    assert "parameter hinge is given twice" in capsys.readouterr().err


# --- 4. parameter values are checked before any work ----------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "cifar10h[n=2.5]",
            "dataset cifar10h: n=2.5 is not allowed (not an integer): n must be an integer in 1..10000",
        ),
        ("cifar10h[n=true]", "n must be an integer in 1..10000"),
        ("cifar10h[n=0]", "n=0 is not allowed (out of range)"),
        ("cifar10h[n=20000]", "n=20000 is not allowed (out of range)"),
        ("cifar10h[temperature=0]", "temperature must be a number > 0"),
        ("cifar10h[temperature=-1]", "temperature=-1 is not allowed"),
        ("cifar10h[temperature=nan]", "temperature=nan is not allowed (not a finite number)"),
    ],
)
def test_bad_dataset_parameters_are_rejected_before_loading(
    tmp_path, truth_file, capsys, monkeypatch, spec, message
):
    cls = registry.get("dataset", "cifar10h")
    monkeypatch.setattr(cls, "load", lambda self, data_root=None: pytest.fail("loaded a task"))
    args = ["run", "--dataset", spec, "--posteriors", str(truth_file), "--strategy", "loss"]
    assert main([*args, "--out", str(tmp_path / "res"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "eq2[hinge=abc]",
            "strategy eq2: hinge=abc is not allowed (not a number): hinge must be a number in 0..1 or None",
        ),
        (
            "cleanlab[method=margin]",
            "method must be one of self_confidence, normalized_margin, confidence_weighted_entropy",
        ),
    ],
)
def test_bad_strategy_parameters_are_rejected_naming_what_is_allowed(
    tmp_path, truth_file, capsys, spec, message
):
    assert run(tmp_path / "res", truth_file, spec) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res" / "cells").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--jobs", "0", "--jobs takes a number of processes >= 1, or -1"),
        ("--target", "150", "150 is not a label accuracy in %"),
        ("--active-every", "-5", "--active-every takes a number of annotations >= 1, or 0"),
    ],
)
def test_bad_option_values_are_usage_errors(tmp_path, truth_file, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_:
        run(tmp_path / "res", truth_file, "loss", extra=(option, value))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_declared_parameter_converts_values_to_its_type():
    p = Param([5000], type=int, low=1, high=10_000)
    assert p.check(5000.0) == 5000 and isinstance(p.check(5000.0), int)
    assert Param([None, 0.3], type=float).check(1) == 1.0
    assert Param(["a"], choices=("a", "b")).check("b") == "b"
    assert Param.of([1.0, 2.0]).type is float and Param.of([1, 2]).type is int
    with pytest.raises(ValueError):
        Param([1.0], type=float, low=0, low_open=True).check(0)


def test_too_many_seeds_are_refused_before_any_work(tmp_path, truth_file, capsys):
    assert run(tmp_path / "res", truth_file, "loss", seeds="0-100000") == 2
    assert "more than 1,000 seeds" in capsys.readouterr().err


# --- 6. suites over earlier results, damaged cell files -------------------------------------


SUITE = ["suite", "--learners", "truth", "--seeds", "0", "--no-progress", "--no-downstream"]


def test_a_subset_suite_keeps_every_earlier_row(tmp_path, truth_file, capsys):
    out = tmp_path / "res"
    assert run(out, truth_file, "entropy") == 0
    assert main([*SUITE, "--datasets", DATASET, "--strategies", "random", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 rows of earlier runs kept" in text and "dropped" not in text
    assert set(runs_of(out)["strategy"]) == {"entropy", "random"}


def test_a_subset_suite_keeps_the_downstream_rows_of_the_runs_it_did_not_redo(tmp_path, truth_file, capsys):
    # the kept runs' label snapshots (cell files) need not be here: their rows stay as they are
    out = tmp_path / "res"
    assert run(out, truth_file, "entropy") == 0
    training = out / "downstream" / "training.csv"
    training.parent.mkdir()
    text = f"dataset,learner,strategy,seed,fraction,test_accuracy\n{DATASET},file:post.npy,entropy,0,0,50\n"
    training.write_text(text)
    args = [a for a in SUITE if a != "--no-downstream"]
    assert main([*args, "--datasets", DATASET, "--strategies", "random", "--out", str(out)]) == 0
    assert "downstream: up to date (1 runs' rows kept" in capsys.readouterr().out
    assert training.read_text() == text


def test_a_subset_suite_keeps_the_earlier_runs_refit_timings(tmp_path):
    out = tmp_path / "res"
    active = ["--strategies", "loss", "--active-every", "1000", "--out", str(out)]
    assert main([*SUITE, "--datasets", DATASET, "cifar10h[temperature=10]", *active]) == 0
    before = pd.read_csv(out / "refit_timings.csv")
    assert set(before["dataset"]) == {DATASET, "cifar10h[temperature=10]"}
    active[1] = "entropy"
    assert main([*SUITE, "--datasets", DATASET, *active]) == 0
    after = pd.read_csv(out / "refit_timings.csv")
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)
    new = after.iloc[len(before) :]
    assert len(new) and set(new["strategy_spec"]) == {"entropy"} and set(new["dataset"]) == {DATASET}
    # and a suite that re-runs one of them replaces that run's timings (new seconds), keeping the rest
    assert main([*SUITE, "--datasets", DATASET, *active]) == 0
    again = pd.read_csv(out / "refit_timings.csv")
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), after.drop(columns="seconds"))
    pd.testing.assert_frame_equal(again.iloc[: len(before)], before)


def test_prune_lists_the_rows_it_removes_before_removing_them(tmp_path, truth_file, capsys):
    out = tmp_path / "res"
    assert run(out, truth_file, "entropy") == 0
    capsys.readouterr()
    args = [*SUITE, "--datasets", DATASET, "--strategies", "random", "--out", str(out), "--prune"]
    assert main(args) == 0
    text = capsys.readouterr().out
    listed = text.index(f"--prune: removing 1 rows of earlier runs from {out}")
    assert f"{DATASET} / file:post.npy / entropy" in text[listed:]
    assert listed < text.index("cells ok")  # said before the tables are written
    assert set(runs_of(out)["strategy"]) == {"random"}
    assert (out / "cells").is_dir() and len(list((out / "cells").glob("*.json"))) == 2


def test_a_suite_of_one_strategy_and_one_dataset_keeps_the_other_settings(tmp_path, capsys):
    # A suite over two datasets, then one over a new strategy on one of them: the built-in rows,
    # the other dataset's pages and figures and the efficiency against Random all stay.
    out = tmp_path / "res"
    both = ["--datasets", DATASET, "cifar10h[temperature=10]"]
    assert main([*SUITE, *both, "--strategies", "random", "loss", "--out", str(out)]) == 0
    before = runs_of(out)
    t10 = sorted(p.name for p in (out / "plots").glob("cifar10h_temperature_10*"))
    assert t10
    capsys.readouterr()
    args = [*SUITE, "--datasets", DATASET, "--strategies", "entropy", "--out", str(out)]
    assert main(args) == 0
    assert f"{len(before)} rows of earlier runs kept" in capsys.readouterr().out
    after = runs_of(out)
    assert len(after) == len(before) + 1
    cols = ["config_hash", "auc", "final_accuracy"]
    kept = after[after["strategy"] != "entropy"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before[cols].reset_index(drop=True))
    assert sorted(p.name for p in (out / "plots").glob("cifar10h_temperature_10*")) == t10
    board = pd.read_csv(out / "leaderboard.csv").set_index(["dataset", "strategy"])
    assert np.isfinite(board.loc[(DATASET, "entropy"), "efficiency_mean"])
    assert set(board.loc["cifar10h[temperature=10]"].index) == {"random", "loss"}


def test_resume_reruns_a_cell_whose_curve_file_is_truncated(tmp_path, truth_file):
    out = tmp_path / "res"
    assert run(out, truth_file, "loss") == 0
    (out / "runs.parquet").unlink()  # interrupted before the tables: only the cell files
    curve = next((out / "cells").glob("*.curve.parquet"))
    curve.write_bytes(curve.read_bytes()[:100])
    assert run(out, truth_file, "loss", extra=("--resume",)) == 0
    assert len(pd.read_parquet(curve)) > 1
    assert run(out, truth_file, "loss", extra=("--resume",)) == 0


def test_resume_reruns_a_cell_whose_row_is_not_json(tmp_path, truth_file):
    out = tmp_path / "res"
    assert run(out, truth_file, "loss") == 0
    (out / "runs.parquet").unlink()  # interrupted before the tables: only the cell files
    row = next(p for p in (out / "cells").glob("*.json"))
    row.write_text("{not json")
    assert run(out, truth_file, "loss", extra=("--resume",)) == 0
    assert json.loads(row.read_text())["status"] == "ok"


# --- 8. broken plugins ----------------------------------------------------------------------


def test_a_plugin_that_exits_fails_alone(tmp_path, truth_file, plugin_root, capsys):
    (plugin_root / "strategies" / "quits.py").write_text(
        textwrap.dedent("""
        import sys
        from benchmark.plugins import Strategy

        class Quits(Strategy):
            name = "quits"
            description = "Calls sys.exit while scoring."

            def score(self, ctx):
                sys.exit(3)
        """)
    )
    (plugin_root / "strategies" / "quits_on_import.py").write_text("import sys\nsys.exit(4)\n")
    out = tmp_path / "res"
    assert run(out, truth_file, "quits", "random") == 1
    table = runs_of(out).set_index("strategy")
    assert table.loc["random", "status"] == "ok"
    assert table.loc["quits", "status"] == "failed" and "SystemExit: 3" in table.loc["quits", "error"]
    info = registry.discover("strategy")["quits_on_import"]
    assert not info.ok and "SystemExit: 4" in info.error


# --- 9. the output folder is checked first --------------------------------------------------


def test_an_output_that_is_a_file_is_a_one_line_error_before_any_work(
    tmp_path, truth_file, capsys, monkeypatch
):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    cls = registry.get("dataset", "cifar10h")
    monkeypatch.setattr(cls, "load", lambda self, data_root=None: pytest.fail("loaded a task"))
    assert run(target, truth_file, "loss") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err
    assert main(["run", "--dataset", DATASET, "--strategy", "loss", "--out", str(target / "sub")]) == 2
    assert "alcbench: error:" in capsys.readouterr().err


# --- 11. provenance, version, help ----------------------------------------------------------


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("alcbench ")


def test_an_untracked_code_file_makes_the_commit_dirty():
    probe = registry.PROJECT_ROOT / "strategies" / "_provenance_probe.py"
    if subprocess.run(["git", "-C", str(registry.PROJECT_ROOT), "status"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    tables._code_versions.cache_clear()
    clean = tables.provenance()["commit"].endswith("-dirty")
    try:
        probe.write_text("VALUE = 1\n")
        tables._code_versions.cache_clear()
        assert tables.provenance()["commit"].endswith("-dirty")
    finally:
        probe.unlink(missing_ok=True)
        tables._code_versions.cache_clear()
    assert tables.provenance()["commit"].endswith("-dirty") == clean


def test_provenance_records_extra_plugin_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(tmp_path))
    assert tables.provenance()["plugin_path"] == str(tmp_path)


def test_every_option_and_argument_has_help():
    import argparse

    from benchmark.arguments import build_parser

    def check(parser: argparse.ArgumentParser, name: str) -> int:
        checked = 0
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name}: {action.dest} has no help text"
            checked += 1
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    checked += check(sub, f"{name} {sub_name}")
        return checked

    # every level: alcbench's commands and the sub-commands of `alcbench clean`
    assert check(build_parser(), "alcbench") > 80


# --- 12. numeric order ----------------------------------------------------------------------


def test_specs_sort_their_numbers_as_numbers():
    specs = ["cifar10h[temperature=10]", "cifar10h[temperature=2]", "cifar10h[temperature=2.5]"]
    assert sorted(specs, key=spec_sort_key) == [specs[1], specs[2], specs[0]]


def test_tables_and_leaderboard_put_temperature_2_before_10(tmp_path):
    out = tmp_path / "res"
    args = ["suite", "--datasets", "cifar10h[temperature=10]", "cifar10h[temperature=2]"]
    args += [
        "--strategies",
        "random",
        "--learners",
        "truth",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    assert list(dict.fromkeys(runs_of(out)["dataset"])) == [
        "cifar10h[temperature=2]",
        "cifar10h[temperature=10]",
    ]
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(dict.fromkeys(board["dataset"])) == ["cifar10h[temperature=2]", "cifar10h[temperature=10]"]
    md = (out / "leaderboard.md").read_text()
    assert md.index("temperature=2]") < md.index("temperature=10]")
