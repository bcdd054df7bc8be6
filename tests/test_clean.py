"""``alcbench clean``: the relabelling queue and its ledger on a team's own data."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import TOY_CLASSES, TOY_LABELS, TOY_POSTERIORS

from benchmark.clean import InputError, Project, ProjectError, Vote
from benchmark.clean.batches import labelstudio_tasks
from benchmark.clean.example import answer_rows, load_task, prepare, sample_ids
from benchmark.clean.ingest import PAUSE_ENV
from benchmark.clean.inputs import read_labelstudio_export
from benchmark.cli import main
from benchmark.posteriors.files import PosteriorsError
from benchmark.simulation.metrics import curve_points
from benchmark.simulation.trajectory import build_trajectory

FIXTURES = Path(__file__).parent / "data" / "labelstudio"
CLASSES = TOY_CLASSES


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def toy(tmp_path: Path) -> dict[str, Path]:
    """Six samples, three classes; the model doubts s2 and s4 most."""
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in TOY_LABELS.items()))
    np.save(tmp_path / "p.npy", np.array(TOY_POSTERIORS))
    return {"labels": labels, "posteriors": tmp_path / "p.npy", "dir": tmp_path / "project"}


def init_toy(toy: dict[str, Path], **kwargs: Any) -> Project:
    return Project.init(
        toy["dir"], labels=toy["labels"], posteriors=toy["posteriors"], strategy="loss", **kwargs
    )


# ----------------------------------------------------------------------------- consistency


def test_a_project_answered_by_the_simulated_expert_ends_where_alcbench_run_ends(
    tmp_path: Path, data_root: Path
) -> None:
    spec, strategy, seed = "cifar10h[n=2000]", "eq2[hinge=0.3]", 3
    task = load_task(spec, data_root)
    rng = np.random.default_rng(0)
    posteriors = 0.5 * task.true_dist + 0.5 * rng.dirichlet(np.ones(task.n_classes), size=task.n_samples)
    np.save(tmp_path / "p.npy", posteriors)
    labels = prepare(tmp_path, task.n_samples, spec=spec, data_root=data_root, images=False)

    run_dir = tmp_path / "run"
    argv = ["run", "--dataset", spec, "--strategy", strategy, "--posteriors", str(tmp_path / "p.npy")]
    argv += ["--seeds", str(seed), "--out", str(run_dir), "--data-root", str(data_root), "--no-progress"]
    assert main(argv) == 0

    project = tmp_path / "project"
    argv = ["clean", "init", str(project), "--labels", str(labels), "--posteriors", str(tmp_path / "p.npy")]
    argv += ["--classes", ",".join(task.class_names), "--strategy", strategy]
    argv += ["--budget", str(task.budget), "--seed", str(seed)]
    assert main(argv) == 0
    drawn: dict[str, int] = {}
    batches = 0
    while True:
        batch = tmp_path / f"batch-{batches}.csv"
        assert main(["clean", "next", str(project), "--n", "40", "--out", str(batch)]) == 0
        if not batch.exists():
            break
        rows = read_csv(batch)
        answer_rows(rows, task, seed, drawn)
        write_csv(batch, rows)  # type: ignore[arg-type]
        assert main(["clean", "ingest", str(project), str(batch)]) == 0
        batches += 1
    assert batches > 10  # answered batch after batch, not in one go
    assert main(["clean", "export", str(project), str(tmp_path / "cleaned.csv")]) == 0

    runs = pd.read_parquet(run_dir / "runs.parquet")
    (config_hash,) = runs["config_hash"]
    snapshots = np.load(run_dir / "cells" / f"{config_hash}.labels.npz")
    cleaned = pd.read_csv(tmp_path / "cleaned.csv")
    assert cleaned["id"].tolist() == sample_ids(task)
    ours = np.array([task.class_names.index(c) for c in cleaned["label"]])
    np.testing.assert_array_equal(ours, snapshots["labels"][-1])
    with Project(project) as p:
        status = p.status()
        selected, answers, counts = p.episodes()
    assert status.spent == sum(drawn.values()) == int(runs["annotations_spent"].iloc[0])
    assert status.spent > task.budget - 5  # the budget bound the run, not the data

    truth = task.true_labels
    traj = build_trajectory(
        task,
        selected,
        answers,
        np.argmax(counts[selected], axis=1) == truth[selected],
        task.noisy_labels == truth,
        task.budget,
        counts,
        np.zeros(0, dtype=np.int64),
        reselect=False,
    )
    x, y = curve_points(traj)
    curve = pd.read_parquet(run_dir / "curves.parquet").sort_values("step")
    np.testing.assert_array_equal(x, curve["annotations"].to_numpy())
    np.testing.assert_allclose(y, curve["accuracy"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(selected, curve["sample"].to_numpy()[1:])


# ----------------------------------------------------------------------------- the queue


def test_next_hands_out_samples_in_the_strategy_s_order_and_skips_open_ones(toy: dict[str, Path]) -> None:
    with init_toy(toy) as p:
        first = p.next(2)
        assert [q.sample_id for q in first.questions] == ["s2", "s4"]  # highest loss first
        q = first.questions[0]
        assert (q.kind, q.current_label, q.votes) == ("new", "cat", {"cat": 1})
        assert q.top[0] == ("dog", pytest.approx(0.9))
        assert q.correctness == pytest.approx(0.05)
        assert q.score == pytest.approx(-np.log(0.05) / np.log(3))  # cross-entropy in units of log C
        second = p.next(2)  # s2 and s4 are open: the next two in order
        assert [q.sample_id for q in second.questions] == ["s5", "s1"]
        assert p.status().open_questions == 4


def test_an_unsettled_sample_comes_back_first_and_a_settled_one_never(toy: dict[str, Path]) -> None:
    with init_toy(toy) as p:
        batch = p.next(2)
        r2, r4 = (q.request for q in batch.questions)
        answers = toy["dir"] / "a.csv"
        write_csv(
            answers,
            [
                {"id": "s2", "label": "dog", "annotator": "ann", "request": r2},  # 1:1 tie, not settled
                {"id": "s4", "label": "dog", "annotator": "ann", "request": r4},  # 2:0, settled
            ],
        )
        report = p.ingest(answers)
        assert (report.added, report.duplicates, report.settled) == (2, 0, 1)
        again = p.next(3)
        assert [(q.sample_id, q.kind) for q in again.questions] == [
            ("s2", "more"),
            ("s5", "new"),
            ("s1", "new"),
        ]
        assert again.questions[0].votes == {"cat": 1, "dog": 1}


def test_the_budget_stops_new_samples_and_the_last_one_may_finish_past_it(toy: dict[str, Path]) -> None:
    with init_toy(toy, budget=2) as p:
        # 0 spent + 2 presumed for the open sample: one fits; the next waits for it to settle
        assert [q.sample_id for q in p.next(5).questions] == ["s2"]
        assert p.next(5).why_empty.startswith("nothing new to hand out: 1 question(s) of earlier batches")
        p.add_answers([_vote("s2", "dog")])  # 1:1, s2 goes on
        assert [(q.sample_id, q.kind) for q in p.next(5).questions] == [("s2", "more")]
        p.add_answers([_vote("s2", "dog", "b")])  # settled; 2 spent, at most the budget: one more
        assert [(q.sample_id, q.kind) for q in p.next(5).questions] == [("s4", "new")]
        for k, label in enumerate(["cat", "fox", "dog"]):  # 1:1, 1:1:1, then settled
            p.add_answers([_vote("s4", label, f"r{k}")])
            batch = p.next(5)
            assert [(q.sample_id, q.kind) for q in batch.questions] == ([("s4", "more")] if k < 2 else [])
        assert batch.why_empty == "the budget is spent: 5 answers of 2"
        assert p.status().over_budget == 3


def test_a_lost_batch_file_is_written_again_with_its_open_questions(
    toy: dict[str, Path], tmp_path: Path
) -> None:
    with init_toy(toy) as p:
        first = p.next(2)
        p.add_answers([_vote("s4", "dog")])
    out = tmp_path / "again.csv"
    assert main(["clean", "next", str(toy["dir"]), "--again", str(first.number), "--out", str(out)]) == 0
    rows = read_csv(out)
    assert [(r["id"], r["request"]) for r in rows] == [("s2", str(first.questions[0].request))]
    with (
        Project(toy["dir"]) as p,
        pytest.raises(ProjectError, match="no batch 7 \\(batches 1..1 were handed out\\)"),
    ):
        p.batch(7)


def test_release_returns_unanswered_samples_to_the_queue(toy: dict[str, Path]) -> None:
    with init_toy(toy) as p:
        first = p.next(2)
        assert p.release(first.number) == 2
        assert [q.sample_id for q in p.next(2).questions] == ["s2", "s4"]


def _vote(sid: str, label: str, annotator: str = "a") -> Vote:
    return Vote(sid, label, annotator, key=f"test:{sid}:{annotator}:{label}")


# ----------------------------------------------------------------------------- ingest


def test_ingesting_the_same_file_twice_adds_nothing(toy: dict[str, Path]) -> None:
    with init_toy(toy) as p:
        batch = p.next(3)
        path = toy["dir"] / "answers.csv"
        rows = [
            {"id": q.sample_id, "label": "dog", "annotator": "ann", "time": "t1"} for q in batch.questions
        ]
        write_csv(path, rows)  # type: ignore[arg-type]
        assert p.ingest(path).added == 3
        table = p.table()
        again = p.ingest(path)
        assert (again.added, again.duplicates) == (0, 3)
        assert p.table() == table
        assert p.status().spent == 3


def test_answers_without_request_or_time_are_told_apart_by_their_order_in_the_file(
    toy: dict[str, Path],
) -> None:
    with init_toy(toy) as p:
        path = toy["dir"] / "answers.csv"
        write_csv(
            path,
            [
                {"id": "s2", "label": "dog", "annotator": "ann"},
                {"id": "s2", "label": "dog", "annotator": "ann"},
            ],
        )
        assert p.ingest(path).added == 2
        assert p.ingest(path).added == 0


def test_a_file_with_one_bad_answer_applies_none(toy: dict[str, Path]) -> None:
    with init_toy(toy) as p:
        path = toy["dir"] / "answers.csv"
        write_csv(
            path,
            [
                {"id": "s2", "label": "dog", "annotator": "ann"},
                {"id": "s9", "label": "dog", "annotator": "ann"},
                {"id": "s4", "label": "wolf", "annotator": "ann"},
            ],
        )
        with pytest.raises(InputError) as err:
            p.ingest(path)
        assert str(err.value) == (
            f"{path}: 2 problems, nothing applied:\n"
            "  line 3: unknown id 's9'\n"
            "  line 4: unknown class 'wolf' (classes: cat, dog, fox)"
        )
        assert p.status().spent == 0


def test_an_answer_to_another_sample_s_request_is_refused(toy: dict[str, Path]) -> None:
    with init_toy(toy) as p:
        request = p.next(1).questions[0].request
        path = write_csv(
            toy["dir"] / "a.csv", [{"id": "s0", "label": "cat", "annotator": "x", "request": request}]
        )
        with pytest.raises(InputError, match=rf"line 2: request {request} asked about 's2', not 's0'"):
            p.ingest(path)
        path = write_csv(
            toy["dir"] / "b.csv", [{"id": "s0", "label": "cat", "annotator": "x", "request": 99}]
        )
        with pytest.raises(InputError, match="line 2: request 99 was never handed out by this project"):
            p.ingest(path)


def _ledger_rows(folder: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / "ledger.sqlite") as conn:
        return conn.execute(
            "SELECT idx, label, annotator, time, key FROM votes WHERE source = 'answer' ORDER BY key"
        ).fetchall()


def _answers_file(path: Path, ids: list[str], label: str, annotator: str) -> Path:
    return write_csv(
        path, [{"id": i, "label": label, "annotator": annotator, "time": f"t{k}"} for k, i in enumerate(ids)]
    )


def _ingest_process(folder: Path, answers: Path, pause: float) -> subprocess.Popen[str]:
    env = dict(os.environ, **{PAUSE_ENV: str(pause)})
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmark.cli",
            "clean",
            "ingest",
            str(folder),
            str(answers),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_an_ingest_killed_mid_file_leaves_all_or_nothing_and_a_rerun_equals_one_clean_ingest(
    toy: dict[str, Path], tmp_path: Path
) -> None:
    init_toy(toy).close()
    answers = _answers_file(tmp_path / "answers.csv", ["s0", "s1", "s2", "s3", "s4", "s5"], "dog", "ann")
    proc = _ingest_process(toy["dir"], answers, pause=0.5)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]  # three answers written, inside the transaction
    assert lines[-1].startswith("ingest: answer 3 written")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Project(toy["dir"]) as p:
        assert p.status().spent == 0  # none of the file
    assert _ledger_rows(toy["dir"]) == []

    assert main(["clean", "ingest", str(toy["dir"]), str(answers)]) == 0
    clean_dir = tmp_path / "clean"
    Project.init(clean_dir, labels=toy["labels"], posteriors=toy["posteriors"], strategy="loss").close()
    assert main(["clean", "ingest", str(clean_dir), str(answers)]) == 0
    assert _ledger_rows(toy["dir"]) == _ledger_rows(clean_dir)
    with Project(toy["dir"]) as a, Project(clean_dir) as b:
        assert a.table() == b.table()
        assert a.status().spent == 6


def test_two_concurrent_ingests_lose_nothing(toy: dict[str, Path], tmp_path: Path) -> None:
    init_toy(toy).close()
    first = _answers_file(tmp_path / "first.csv", ["s0", "s1", "s2"], "dog", "ann")
    second = _answers_file(tmp_path / "second.csv", ["s2", "s3", "s4", "s5"], "fox", "bob")
    procs = [_ingest_process(toy["dir"], path, pause=0.2) for path in (first, second)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Project(toy["dir"]) as p:
        assert p.status().spent == 7
        votes = {row["id"]: (row["votes_dog"], row["votes_fox"]) for row in p.table()}
    assert votes["s2"] == (1, 1)
    assert votes["s5"] == (0, 2)


def test_api_ingests_from_threads_lose_nothing(toy: dict[str, Path], tmp_path: Path) -> None:
    init_toy(toy).close()
    files = [_answers_file(tmp_path / f"{k}.csv", ["s0", "s1", "s2", "s3"], "cat", f"a{k}") for k in range(4)]

    def ingest(path: Path) -> None:
        with Project(toy["dir"]) as p:
            p.ingest(path)

    threads = [threading.Thread(target=ingest, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Project(toy["dir"]) as p:
        assert p.status().spent == 16


# ----------------------------------------------------------------------------- Label Studio


def test_label_studio_round_trip_through_our_tasks_and_its_export_format(
    toy: dict[str, Path], tmp_path: Path
) -> None:
    with init_toy(toy) as p:
        batch = p.next(2)
        tasks = labelstudio_tasks(batch.questions, model_version="m0", image_url="https://host/{id}.png")
        assert tasks[1]["data"]["image"] == "https://host/s4.png"
        assert tasks[0]["data"]["sample_id"] == "s2"
        assert tasks[0]["predictions"][0]["result"][0]["value"] == {"choices": ["dog"]}
        # Label Studio keeps the task data, adds its ids and the annotations (the documented
        # export format); one annotation was skipped, one task has two annotators.
        export = json.loads((FIXTURES / "export.json").read_text())
        for exported, ours in zip(export, tasks, strict=True):
            exported["data"] = ours["data"]
        path = tmp_path / "export.json"
        path.write_text(json.dumps(export))
        report = p.ingest(path)
        assert (report.added, report.duplicates) == (3, 0)
        table = {row["id"]: row for row in p.table()}
        assert (table["s2"]["label"], table["s2"]["votes_dog"], table["s2"]["annotators"]) == (
            "dog",
            2,
            "user 1;ana@example.org",
        )
        assert (table["s4"]["votes_cat"], table["s4"]["votes_dog"], table["s4"]["settled"]) == (1, 1, False)
        assert p.ingest(path).added == 0  # an export repeats what was ingested before
        assert p.status().open_questions == 0


def test_an_answer_edited_in_label_studio_replaces_its_label(toy: dict[str, Path], tmp_path: Path) -> None:
    with init_toy(toy) as p:
        tasks = labelstudio_tasks(p.next(2).questions, image_url="https://host/{id}.png")
        export = json.loads((FIXTURES / "export.json").read_text())
        for exported, ours in zip(export, tasks, strict=True):
            exported["data"] = ours["data"]
        path = tmp_path / "export.json"
        path.write_text(json.dumps(export))
        p.ingest(path)
        export[1]["annotations"][0]["result"][0]["value"]["choices"] = ["fox"]  # s4: cat -> fox
        export[1]["annotations"][0]["updated_at"] = "2026-11-30T10:02:00.000000Z"
        path.write_text(json.dumps(export))
        report = p.ingest(path)
        assert (report.added, report.duplicates, report.corrected) == (0, 2, 1)
        row = next(r for r in p.table() if r["id"] == "s4")
        assert (row["votes_cat"], row["votes_fox"], row["answers"]) == (0, 1, 1)
        assert p.status().spent == 3


def test_label_studio_export_fixture_reads_as_documented() -> None:
    votes = read_labelstudio_export(FIXTURES / "export.json")
    assert [(v.sample_id, v.label, v.annotator) for v in votes] == [
        ("s2", "dog", "user 1"),
        ("s2", "dog", "ana@example.org"),
        ("s4", "cat", "user 1"),
    ]
    assert votes[0].key == "labelstudio:1:1001"


def test_label_studio_export_without_our_sample_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 7, "data": {"image": "x.png"}, "annotations": []}]))
    with pytest.raises(InputError) as err:
        read_labelstudio_export(path)
    assert str(err.value) == (
        f"{path}: 1 problem, nothing applied:\n  task 7: data has no `sample_id` (import the tasks "
        "`alcbench clean next --format labelstudio` wrote)"
    )


def test_next_writes_label_studio_tasks_and_the_labelling_interface(
    toy: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_toy(toy).close()
    out = tmp_path / "tasks.json"
    assert (
        main(["clean", "next", str(toy["dir"]), "--n", "2", "--format", "labelstudio", "--out", str(out)])
        == 2  # the project has no images, and no --image-url says where they are
    )
    assert capsys.readouterr().err == (
        "alcbench: error: Label Studio shows each task's image, and sample 's0' has none (the project "
        "was created without --images): pass --image-url with the images' address, e.g. "
        "'https://host/images/{id}.png'\n"
    )
    assert not out.exists()
    with Project(toy["dir"]) as p:
        assert p.status().batches == 0  # nothing was handed out
    argv = ["clean", "next", str(toy["dir"]), "--n", "2", "--format", "labelstudio", "--out", str(out)]
    assert main([*argv, "--image-url", "https://host/{id}.png"]) == 0
    tasks = json.loads(out.read_text())
    assert [t["data"]["sample_id"] for t in tasks] == ["s2", "s4"]
    assert tasks[1]["predictions"][0]["score"] == pytest.approx(0.7)
    xml = (toy["dir"] / "labelstudio.xml").read_text()
    assert '<Choices name="label" toName="image"' in xml and '<Choice value="fox"/>' in xml


# ----------------------------------------------------------------------------- status, export


def test_status_and_export_report_what_the_ledger_holds(toy: dict[str, Path], tmp_path: Path) -> None:
    with init_toy(toy, budget=10) as p:
        p.next(3)
        p.add_answers(
            [
                _vote("s2", "dog", "a"),
                _vote("s2", "dog", "a2"),
                _vote("s4", "dog", "b"),
                _vote("s5", "cat", "c"),
            ]
        )
        s = p.status()
        assert (s.spent, s.budget_left, s.selected, s.settled, s.unsettled, s.open_questions) == (
            4,
            6,
            3,
            2,
            1,
            0,
        )
        assert s.labels_changed == 2  # s2: cat -> dog (1:2); s5: fox -> cat (1:1, the first class)
        # of the samples not settled, the model disagrees with s5's label only (cat; it says fox)
        assert s.estimated_mislabelled_left == 1
    out = tmp_path / "cleaned.csv"
    assert main(["clean", "export", str(toy["dir"]), str(out)]) == 0
    rows = {r["id"]: r for r in read_csv(out)}
    assert rows["s2"] == {
        "id": "s2",
        "label": "dog",
        "initial_label": "cat",
        "changed": "True",
        "reviewed": "True",
        "settled": "True",
        "answers": "2",
        "agreement": "0.6667",
        "annotators": "a;a2",
        "votes_cat": "1",
        "votes_dog": "2",
        "votes_fox": "0",
    }
    assert (rows["s5"]["label"], rows["s5"]["settled"]) == ("cat", "False")
    assert (rows["s0"]["reviewed"], rows["s0"]["label"], rows["s0"]["annotators"]) == ("False", "cat", "")


def test_history_replays_the_answers_and_status_draws_it(toy: dict[str, Path], tmp_path: Path) -> None:
    with init_toy(toy, budget=10) as p:
        p.next(3)
        p.add_answers([_vote("s2", "dog", "a"), _vote("s4", "dog", "b"), _vote("s2", "dog", "a2")])
        p.add_answers([_vote("s5", "cat", "c")])
        history = p.history()
    assert history["spent"].tolist() == [1, 2, 3, 4]
    assert history["changed"].tolist() == [0, 0, 1, 2]  # s2 1:1 (cat first), then 1:2; s5 1:1 -> cat
    assert history["settled"].tolist() == [0, 1, 2, 2]
    png = tmp_path / "progress.png"
    assert main(["clean", "status", str(toy["dir"]), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.with_suffix(".svg").is_file()


def test_several_initial_labels_per_sample_are_votes(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label,annotator\na,x,r1\na,y,r2\na,y,r3\nb,x,r1\n")
    np.save(tmp_path / "p.npy", np.array([[0.5, 0.5], [0.9, 0.1]]))
    with Project.init(tmp_path / "p", labels=labels, posteriors=tmp_path / "p.npy", strategy="loss") as p:
        row = p.table()[0]
        assert (row["label"], row["votes_x"], row["votes_y"], row["agreement"]) == (
            "y",
            1,
            2,
            round(2 / 3, 4),
        )


def test_posteriors_as_a_csv_are_matched_by_id(toy: dict[str, Path], tmp_path: Path) -> None:
    probs = np.load(toy["posteriors"])
    table = pd.DataFrame(probs[::-1], columns=list(CLASSES))
    table.insert(0, "id", [f"s{i}" for i in range(5, -1, -1)])
    table.to_csv(tmp_path / "p.csv", index=False)
    with Project.init(toy["dir"], labels=toy["labels"], posteriors=tmp_path / "p.csv", strategy="loss") as p:
        assert [q.sample_id for q in p.next(2).questions] == ["s2", "s4"]


# ----------------------------------------------------------------------------- refit


LEARNER_PLUGIN = '''
import numpy as np
from benchmark.plugins import Learner, Posteriors

class Echo(Learner):
    """Posteriors that follow the labels it is fitted on (and count its fits)."""
    name = "echo"
    description = "test learner"
    cache = False

    def fit_predict(self, task, *, seed, progress=True):
        images = task.load_images()
        assert images.shape[1:] == (8, 8, 3)
        probs = np.full((task.n_samples, task.n_classes), 0.1 / (task.n_classes - 1))
        probs[np.arange(task.n_samples), task.noisy_labels] = 0.9
        probs[0] = [0.05, 0.05, 0.9]  # sample 0 always looks like the third class
        return Posteriors(probs=probs.astype(np.float32))
'''


@pytest.fixture
def echo_learner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The ``echo`` learner registered from a plugin folder; yields an images folder of six
    12x12 PNG files ``x0`` .. ``x5`` and ``labels.csv`` beside it (labels a, b, c, a, b, c)."""
    from PIL import Image

    from benchmark import registry

    root = tmp_path / "plugins"
    (root / "learners").mkdir(parents=True)
    (root / "learners" / "echo.py").write_text(LEARNER_PLUGIN)
    monkeypatch.setenv("ALCBENCH_PLUGIN_PATH", str(root))
    registry.refresh()
    images = tmp_path / "images"
    images.mkdir()
    for k in range(6):
        Image.fromarray(np.full((12, 12, 3), 40 * k, dtype=np.uint8)).save(images / f"x{k}.png")
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"x{k},{'abc'[k % 3]}\n" for k in range(6)))
    yield images
    monkeypatch.delenv("ALCBENCH_PLUGIN_PATH")
    registry.refresh()


def test_refit_every_b_answers_refits_the_learner_and_reranks(echo_learner: Path, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    argv = ["clean", "init", str(folder), "--labels", str(tmp_path / "labels.csv"), "--learner", "echo"]
    argv += ["--images", str(echo_learner), "--image-size", "8", "--strategy", "loss", "--refit-every", "2"]
    assert main(argv) == 0
    with Project(folder) as p:
        assert [q.sample_id for q in p.next(1).questions] == ["x0"]  # labelled a, looks like c
        p.add_answers([_vote("x0", "b", "r1")])  # 1:1, the learner now sees label a (first max)
        assert p.status().model_generation == 0
        batch = p.next(1)
        assert [(q.sample_id, q.kind) for q in batch.questions] == [("x0", "more")]
        report = p.add_answers([_vote("x0", "b", "r2")])
        assert report.refitted and p.status().model_generation == 1
        # the re-fitted model agrees with every current label
        assert p.scores()[1:].tolist() == pytest.approx([-np.log(0.9) / np.log(3)] * 5)


def test_dicom_images_are_read_as_the_chest_x_ray_datasets_read_them(echo_learner: Path) -> None:
    from test_radiograph import gradient, write_dicom

    from benchmark.clean.images import load_images
    from benchmark.radiographs import read_radiograph

    (echo_learner / "x1.png").unlink()
    dicom = write_dicom(echo_learner / "x1.dcm", gradient(4095, (24, 24)), bits_stored=12)
    images = load_images([str(echo_learner / "x0.png"), str(dicom)], 8)
    assert images.shape == (2, 8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(images[1, :, :, channel], read_radiograph(dicom, 8))
    row = images[1, 0, :, 0].astype(int)  # the 12-bit gradient, on the 0..255 range, still rising
    assert (np.diff(row) > 0).all() and row[0] < 32 and row[-1] > 223


def test_a_corrupt_image_is_named_and_no_project_is_left(echo_learner: Path, tmp_path: Path) -> None:
    (echo_learner / "x3.png").write_bytes(b"not a png at all")
    with pytest.raises(ProjectError) as err:
        Project.init(tmp_path / "p", labels=tmp_path / "labels.csv", learner="echo", images=echo_learner)
    assert str(err.value).startswith(f"{echo_learner / 'x3.png'}: cannot be read as an image (")
    assert not (tmp_path / "p" / "ledger.sqlite").exists()


def test_refit_with_new_posteriors_reranks(toy: dict[str, Path], tmp_path: Path) -> None:
    with init_toy(toy) as p:
        flipped = np.load(toy["posteriors"])[:, ::-1].copy()
        np.save(tmp_path / "q.npy", flipped)
        assert p.refit(tmp_path / "q.npy") == 1
        assert p.next(1).questions[0].sample_id == "s0"  # cat, now p(cat) = 0.05
        with pytest.raises(ProjectError, match="has no learner to re-fit"):
            p.refit()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,label\na,x\nb,y\na,y\n",
            "1 problem, nothing applied:\n  line 4: duplicate sample 'a' (first on line 2)",
        ),
        (
            "id,label\na,x\n,y\nb,\n",
            "2 problems, nothing applied:\n  line 3: empty id\n  line 4: sample 'b' has an empty label",
        ),
        ("id,lab\na,x\n", "header 'id,lab' lacks column(s) label; expected id,label[,annotator]"),
        ("", "the file is empty; expected a header line id,label"),
        (
            "id,label,annotator\na,x,r\na,y,r\n",
            "1 problem, nothing applied:\n"
            "  line 3: duplicate sample 'a' labelled twice by 'r' (first on line 2)",
        ),
    ],
)
def test_bad_labels_files_are_refused_with_their_lines(tmp_path: Path, text: str, message: str) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    np.save(tmp_path / "p.npy", np.full((2, 2), 0.5))
    with pytest.raises(InputError) as err:
        Project.init(tmp_path / "p", labels=labels, posteriors=tmp_path / "p.npy")
    assert str(err.value) == f"{labels}: {message}"
    assert not (tmp_path / "p" / "ledger.sqlite").exists()


def test_an_unknown_class_in_the_labels_is_refused(toy: dict[str, Path]) -> None:
    with pytest.raises(InputError) as err:
        Project.init(toy["dir"], labels=toy["labels"], posteriors=toy["posteriors"], classes=["cat", "dog"])
    assert (
        str(err.value)
        == f"{toy['labels']}: line 5: unknown class 'fox' (classes: cat, dog); 2 label(s) name no class"
    )


def test_posteriors_that_do_not_match_the_samples_are_refused(toy: dict[str, Path], tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.full((5, 3), 1 / 3))
    with pytest.raises(PosteriorsError) as err:
        Project.init(toy["dir"], labels=toy["labels"], posteriors=tmp_path / "short.npy")
    assert str(err.value) == (
        f"{tmp_path / 'short.npy'}: expected (N, C) = (6, 3) or (T, 6, 3), got (5, 3) (rows: the 6 samples "
        "of the labels file, in its order; columns: the classes cat, dog, fox)"
    )
    bad = np.load(toy["posteriors"])
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(PosteriorsError, match=r"found 1 NaN or inf entry \(first in row 3\)"):
        Project.init(toy["dir"], labels=toy["labels"], posteriors=tmp_path / "nan.npy")
    table = pd.DataFrame(np.full((6, 3), 1 / 3), columns=list(CLASSES))
    table.insert(0, "id", ["s0", "s1", "s2", "s3", "s4", "zz"])
    table.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(PosteriorsError) as err:
        Project.init(toy["dir"], labels=toy["labels"], posteriors=tmp_path / "p.csv")
    assert str(err.value) == f"{tmp_path / 'p.csv'}: 1 id(s) are not in the labels file (first: 'zz')"
    assert not (toy["dir"] / "ledger.sqlite").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"strategy": "oracle"},
            "strategy oracle needs the true label distribution, which a cleaning project does not have",
        ),
        ({"refit_every": 10}, "--refit-every needs --learner (the model re-fitted on the current labels)"),
    ],
)
def test_init_refuses_what_a_project_cannot_do(
    toy: dict[str, Path], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ProjectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Project.init(toy["dir"], labels=toy["labels"], posteriors=toy["posteriors"], **kwargs)  # type: ignore[arg-type]


def test_a_project_is_never_created_twice(toy: dict[str, Path]) -> None:
    init_toy(toy).close()
    with pytest.raises(ProjectError, match="already a cleaning project"):
        init_toy(toy)


def test_commands_on_a_folder_without_a_ledger_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clean", "status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"alcbench: error: {tmp_path}: not a cleaning project (no ledger.sqlite); create one with "
        f"`alcbench clean init {tmp_path} ...`\n"
    )


def test_missing_images_are_named(toy: dict[str, Path], tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(ProjectError) as err:
        Project.init(toy["dir"], labels=toy["labels"], learner="smallcnn", images=images)
    assert str(err.value).startswith(f"{images}: no image for 6 sample(s) (first: 's0'")
