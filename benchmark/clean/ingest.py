"""Expert answers into a cleaning project's ledger: validated, told apart from answers it already
holds (or corrects), and added all together or not at all."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import benchmark.clean.ledger as lg
from benchmark.clean.inputs import Vote, problems_error
from benchmark.clean.refit import refit_due, refit_model
from benchmark.clean.reports import IngestReport
from benchmark.clean.state import ProjectLedger, now

#: Test hook: seconds to sleep after each answer an ingest writes (inside its transaction), and
#: a line on stderr per answer, so a test can kill an ingest between rows.
PAUSE_ENV = "ALCBENCH_INGEST_PAUSE"


def add_answers(
    project: ProjectLedger, votes: Sequence[Vote], file: str, digest: str, refit: bool, progress: bool
) -> IngestReport:
    """Adds ``votes`` (read from ``file``, whose SHA-256 is ``digest``) in one transaction, after
    checking every one names a known sample, class and request; then re-fits the model where
    ``refit`` allows and the project's ``refit_every`` is due."""
    problems = []
    for v in votes:
        where = v.where or f"answer for {v.sample_id!r}"
        if v.sample_id not in project.index:
            problems.append(f"{where}: unknown id {v.sample_id!r}")
        elif v.label not in project.class_index:
            problems.append(f"{where}: unknown class {v.label!r} (classes: {', '.join(project.classes)})")
    if problems:
        raise problems_error(Path(file), problems)
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    with lg.transaction(project.conn) as conn:
        before = project.read_state(conn)
        requests = {
            r: (idx, state) for r, idx, state in conn.execute("SELECT request, idx, state FROM requests")
        }
        bad = []
        for v in votes:
            if v.request is not None:
                found = requests.get(v.request)
                if found is None:
                    bad.append(f"{v.where}: request {v.request} was never handed out by this project")
                elif found[0] != project.index[v.sample_id]:
                    bad.append(
                        f"{v.where}: request {v.request} asked about "
                        f"{project.ids[found[0]]!r}, not {v.sample_id!r}"
                    )
        if bad:
            raise problems_error(Path(file), bad)
        ingest_id = int(
            conn.execute(
                "INSERT INTO ingests (file, sha256, created, added, duplicates) VALUES (?, ?, ?, 0, 0)",
                (file, digest, now()),
            ).lastrowid
            or 0
        )
        next_position = int(before.position.max(initial=-1)) + 1
        added = duplicates = corrected = 0
        for v in votes:
            i, label = project.index[v.sample_id], project.class_index[v.label]
            known = conn.execute("SELECT vote, label FROM votes WHERE key = ?", (v.key,)).fetchone()
            if known is not None:
                if known[1] == label:
                    duplicates += 1
                else:  # the same answer with another label: the annotator corrected it
                    conn.execute(
                        "UPDATE votes SET label = ?, time = ?, ingest = ? WHERE vote = ?",
                        (label, v.time, ingest_id, known[0]),
                    )
                    corrected += 1
                continue
            conn.execute(
                "INSERT INTO votes (idx, label, annotator, time, source, request, key, ingest) "
                "VALUES (?, ?, ?, ?, 'answer', ?, ?, ?)",
                (i, label, v.annotator, v.time, v.request, v.key or None, ingest_id),
            )
            added += 1
            if v.request is not None:
                conn.execute(
                    "UPDATE requests SET state = 'answered' WHERE request = ? AND state = 'open'",
                    (v.request,),
                )
            else:  # the oldest open question about the sample, if any
                conn.execute(
                    "UPDATE requests SET state = 'answered' WHERE request = (SELECT MIN(request) FROM "
                    "requests WHERE idx = ? AND state = 'open')",
                    (i,),
                )
            # an answer nobody asked for still counts, and selects its sample
            cur = conn.execute("INSERT OR IGNORE INTO selections VALUES (?, ?)", (i, next_position))
            next_position += cur.rowcount
            if pause:
                print(f"ingest: answer {added} written", flush=True)
                time.sleep(pause)
        conn.execute(
            "UPDATE ingests SET added = ?, duplicates = ? WHERE ingest = ?",
            (added, duplicates, ingest_id),
        )
        after = project.read_state(conn)
    settled = int((after.settled & ~before.settled).sum())
    refitted = False
    if refit and refit_due(project.refit_every, after):
        refit_model(project, progress=progress)
        refitted = True
    return IngestReport(file, added, duplicates, settled, refitted, corrected)


__all__ = ["PAUSE_ENV", "add_answers"]
