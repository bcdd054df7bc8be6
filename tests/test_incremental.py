"""`make benchmark` brings results up to date: a cell whose identity (data, posteriors, code,
parameters) is unchanged keeps its committed row; only new or changed cells run; and
`alcbench reproduce` re-runs everything and proves it equal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import registry
from benchmark.cli import main
from benchmark.config import CellConfig
from benchmark.downstream.report import CANDIDATES_CSV, SELECTION_CSV, TRAINING_CSV, merge_downstream
from benchmark.downstream.training import DownstreamResult
from benchmark.plugins import Posteriors
from benchmark.run import identity, reproduce

DATASET = "cifar10h[temperature=2]"
SUITE = [
    "suite",
    "--datasets",
    DATASET,
    "--learners",
    "truth",
    "--seeds",
    "0-1",
    "--no-progress",
    "--no-downstream",
]

MINE = """
import numpy as np
from benchmark.plugins import Strategy

class Mine(Strategy):
    name = "mine"
    description = "a user's strategy: prefers samples whose label has few votes"
    requires = frozenset()

    def score(self, ctx):
        return {score}
"""


def write_mine(root: Path, score: str) -> None:
    (root / "strategies" / "mine.py").write_text(textwrap.dedent(MINE.format(score=score)))
    registry.refresh()


def files_of(out: Path) -> dict[str, tuple[int, bytes]]:
    """Every table and report file of a results folder (not the cell files): mtime and bytes."""
    return {
        str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and "cells" not in p.parts
        and p.suffix in {".parquet", ".csv", ".md", ".html", ".json"}
    }


def test_a_second_suite_runs_nothing_and_writes_no_table(tmp_path, capsys):
    out = tmp_path / "res"
    args = [*SUITE, "--strategies", "random", "loss", "--out", str(out)]
    assert main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["cell_id"].str.len().eq(20).all() and runs["cell_id"].is_unique
    tables = {name: (out / name).read_bytes() for name in ("runs.parquet", "runs.csv", "curves.parquet")}
    mtimes = {name: (out / name).stat().st_mtime_ns for name in tables}
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "0 run, 4 kept (identity unchanged)" in text and "was up to date" in text
    assert {name: (out / name).read_bytes() for name in tables} == tables
    assert {name: (out / name).stat().st_mtime_ns for name in tables} == mtimes


def test_kept_rows_need_no_cell_files(tmp_path, capsys):
    # a fresh clone has the tables but no cells/ folder: the rows are kept all the same
    out = tmp_path / "res"
    args = [*SUITE, "--strategies", "random", "--out", str(out)]
    assert main(args) == 0
    for path in (out / "cells").iterdir():
        path.unlink()
    (out / "cells").rmdir()
    before = pd.read_parquet(out / "curves.parquet")
    capsys.readouterr()
    assert main([*SUITE, "--strategies", "random", "entropy", "--out", str(out)]) == 0
    assert "2 run, 2 kept" in capsys.readouterr().out
    after = pd.read_parquet(out / "curves.parquet")
    kept = after[after["config_hash"].isin(before["config_hash"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)


def test_a_new_strategy_runs_alone_and_an_edit_reruns_only_its_cells(tmp_path, plugin_root, capsys):
    out = tmp_path / "res"
    args = [*SUITE, "--out", str(out)]
    assert main([*args, "--strategies", "random", "loss"]) == 0
    write_mine(plugin_root, "-ctx.label_counts.sum(axis=1).astype(float)")
    capsys.readouterr()
    assert main([*args, "--strategies", "random", "loss", "mine"]) == 0
    assert "2 run, 4 kept (identity unchanged)" in capsys.readouterr().out
    first = pd.read_parquet(out / "runs.parquet").set_index("strategy")
    assert set(first.index) == {"random", "loss", "mine"}

    # any change to the file changes its cells' identity, and only theirs
    write_mine(plugin_root, "-ctx.label_counts.sum(axis=1).astype(float)  # edited")
    assert main([*args, "--strategies", "random", "loss", "mine"]) == 0
    assert "2 run, 4 kept (identity unchanged)" in capsys.readouterr().out
    second = pd.read_parquet(out / "runs.parquet").set_index("strategy")
    assert (second.loc["mine", "cell_id"] != first.loc["mine", "cell_id"]).all()
    assert (second.loc["random", "cell_id"] == first.loc["random", "cell_id"]).all()
    # the same score: the same numbers
    assert np.array_equal(second.loc["mine", "auc"], first.loc["mine", "auc"])


def test_rows_of_a_removed_plugin_leave_and_the_summary_names_it(tmp_path, plugin_root, capsys):
    out = tmp_path / "res"
    write_mine(plugin_root, "np.zeros(ctx.n_samples)")
    args = [*SUITE, "--out", str(out)]
    assert main([*SUITE, "--strategies", "random", "mine", "--out", str(out)]) == 0
    (plugin_root / "strategies" / "mine.py").unlink()
    registry.refresh()
    capsys.readouterr()
    assert main([*args, "--strategies", "random"]) == 0
    text = capsys.readouterr().out
    assert "0 run, 2 kept" in text
    assert "their strategy plugins no longer exist: mine" in text
    assert set(pd.read_parquet(out / "runs.parquet")["strategy"]) == {"random"}


def test_a_changed_simulation_code_changes_every_identity():
    config = CellConfig(DATASET, "truth", "random", 0)
    base = dict(task="t", posteriors="p", posteriors_id="k")
    a = identity.cell_id(config, simulation=identity.simulation_fingerprint("def run_cell(): pass"), **base)
    b = identity.cell_id(
        config, simulation=identity.simulation_fingerprint("def run_cell(): return 1"), **base
    )
    c = identity.cell_id(config, simulation=identity.simulation_fingerprint("def run_cell(): pass"), **base)
    assert a != b and a == c
    assert identity.cell_id(config, simulation="s", **{**base, "posteriors": "q"}) != identity.cell_id(
        config, simulation="s", **base
    )


def test_fingerprints_follow_content():
    task = registry.create("dataset", DATASET).load()
    probs = task.true_dist.astype(np.float32)
    fp = identity.posteriors_fingerprint(Posteriors(probs))
    assert fp == identity.posteriors_fingerprint(Posteriors(probs.copy()))
    changed = probs.copy()
    changed[0, 0] = np.nextafter(changed[0, 0], np.float32(1))
    assert fp != identity.posteriors_fingerprint(Posteriors(changed))
    assert identity.task_fingerprint(task) != identity.task_fingerprint(
        registry.create("dataset", "cifar10h[temperature=10]").load()
    )


def test_reproduce_finds_equal_cells_equal_and_names_a_changed_one(tmp_path, capsys):
    out = tmp_path / "res"
    assert main([*SUITE, "--strategies", "random", "loss", "--out", str(out)]) == 0
    runs, curves = pd.read_parquet(out / "runs.parquet"), pd.read_parquet(out / "curves.parquet")
    same = reproduce.compare(runs, curves, runs.copy(), curves.copy(), not_here=set())
    assert same.equal == 4 and not same.differ
    assert reproduce.summary(same)[0] == "4 cells re-run, all equal to the committed results"
    edited = runs.copy()
    edited.loc[0, "auc"] = np.nextafter(edited.loc[0, "auc"], 2.0)  # one ulp
    moved = curves.copy()
    moved.loc[moved.index[-1], "accuracy"] += 1e-9
    found = reproduce.compare(runs, curves, edited, moved, not_here=set())
    assert len(found.differ) == 2 and found.equal == 2
    assert "auc" in found.differ[0] and any("curve differs" in d for d in found.differ)
    assert reproduce.summary(found)[0] == "4 cells re-run, 2 differ from the committed results:"
    # a cell whose inputs are absent is counted apart, never equal
    apart = reproduce.compare(runs, curves, runs, curves, not_here={runs.loc[0, "config_hash"]})
    assert apart.equal == 3 and len(apart.not_here) == 1


def test_merged_downstream_tables_keep_the_rows_of_runs_not_redone(tmp_path):
    down = tmp_path / "downstream"
    down.mkdir()

    def training(strategies, seeds, accuracy):
        rows = [
            {
                "dataset": "d",
                "learner": "l",
                "strategy": s,
                "seed": k,
                "fraction": f,
                "test_accuracy": accuracy,
            }
            for s in strategies
            for k in seeds
            for f in (0.0, 1.0)
        ]
        rows += [
            {
                "dataset": "d",
                "learner": "l",
                "strategy": r,
                "seed": k,
                "fraction": np.nan,
                "test_accuracy": 1.0,
            }
            for r in ("noisy labels", "true labels")
            for k in seeds
        ]
        return pd.DataFrame(rows)

    old = training(["a", "gone"], [0, 1], 50.0)
    old.to_csv(tmp_path / TRAINING_CSV, index=False)
    old.to_csv(tmp_path / SELECTION_CSV, index=False)
    cand = pd.DataFrame(
        {"dataset": ["d", "d"], "seed": [0, 1], "candidate": ["m", "m"], "test_accuracy": [1.0, 2.0]}
    )
    cand.to_csv(tmp_path / CANDIDATES_CSV, index=False)
    new = training(["b"], [0], 60.0)
    result = DownstreamResult(new, new.copy(), cand.iloc[:1].assign(test_accuracy=9.0), ["note"])
    merged = merge_downstream(tmp_path, result, keep={("d", "l", "a", 0), ("d", "l", "a", 1)})
    t = merged.training
    assert set(t["strategy"]) == {"a", "b", "noisy labels", "true labels"}  # "gone" left
    assert len(t[t["strategy"] == "a"]) == 4 and (t.loc[t["strategy"] == "b", "test_accuracy"] == 60).all()
    # references: seed 0 from the new result, seed 1 (only kept runs) from the old table
    refs = t[t["strategy"] == "noisy labels"].sort_values("seed")
    assert refs["seed"].tolist() == [0, 1]
    assert merged.candidates.sort_values("seed")["test_accuracy"].tolist() == [9.0, 2.0]
    assert merged.notes == ["note"]


def test_active_runs_are_byte_identical_whatever_jobs(tmp_path):
    # ssl's active cells re-fit its head on the stored features; --jobs changes the threads and
    # processes each re-fit runs in, never its numbers
    tables = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        args = ["suite", "--datasets", DATASET, "--learners", "ssl", "--strategies", "loss", "entropy"]
        assert (
            main(
                [*args, "--seeds", "0", "--jobs", jobs, "--no-progress", "--no-downstream", "--out", str(out)]
            )
            == 0
        )
        runs = pd.read_parquet(out / "runs.parquet")
        assert runs["strategy"].str.contains("active").sum() == 2  # both read the posteriors
        tables[jobs] = [(out / name).read_bytes() for name in ("runs.csv", "curves.parquet")]
    assert tables["1"] == tables["2"]


def test_the_committed_results_reproduce_on_a_sample(data_root, capsys):
    # every dataset x learner group, every strategy, seed 0, re-run from scratch: the numbers
    # must equal the committed ones bit for bit (a change of code that moves a number without
    # regenerating results/ fails here)
    results = Path(__file__).resolve().parent.parent / "results"
    code = main(
        ["reproduce", str(results), "--sample", "--data-root", str(data_root), "--jobs", "2", "--no-progress"]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    first = text.splitlines()[0]
    assert first.endswith("cells re-run, all equal to the committed results"), text
    assert int(first.split()[0]) >= 150  # the CIFAR-10H groups at least
