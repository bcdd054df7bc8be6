"""A round trip through a real Label Studio server: the tasks ``alcbench clean next --format
labelstudio`` writes are imported, answered through Label Studio's REST API, exported in its
JSON format, and ingested into the project's ledger.

Optional and slow: it needs a ``label-studio`` executable (``$ALCBENCH_LABEL_STUDIO``, else
``label-studio`` on PATH) and is skipped without one. The server runs in a temporary data
folder on a free local port, with a known user and API token, and is stopped (its whole
process group) when the test ends, whether it passed or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TOY_CLASSES, TOY_LABELS, TOY_POSTERIORS
from PIL import Image

from benchmark.clean import Project
from benchmark.clean.batches import write_labelstudio
from benchmark.clean.labelstudio import LABEL_CONFIG

#: The ``label-studio`` executable to test against (else the one on PATH).
EXECUTABLE_ENV = "ALCBENCH_LABEL_STUDIO"
#: Seconds Label Studio may take to migrate its fresh database and answer (slow machines).
STARTUP_TIMEOUT = 180.0
#: Seconds one API request may take.
REQUEST_TIMEOUT = 60.0
#: Seconds the server has to exit on SIGTERM before it is killed.
STOP_TIMEOUT = 30.0
#: The line of the server's log that says where it listens.
STARTED = re.compile(r"Starting development server at (http://\S+?)/?\s")

ADMIN = "admin@example.org"
PASSWORD = "alcbench-test-password"
TOKEN = "alcbench-test-token-0123456789"
SECOND_ANNOTATOR = "ana@example.org"

CLASSES, LABELS, POSTERIORS = TOY_CLASSES, TOY_LABELS, TOY_POSTERIORS


class LabelStudioError(RuntimeError):
    """The server did not start, or answered a request with an error."""


@dataclass(frozen=True)
class LabelStudio:
    """A running Label Studio server and the API token of its admin user."""

    url: str
    token: str
    log: Path

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer to ``method path`` (``body`` sent as JSON)."""
        return json.loads(self.fetch(method, path, body))

    def fetch(self, method: str, path: str, body: Any = None) -> bytes:
        """The raw answer to ``method path``, raising LabelStudioError on an HTTP error."""
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise LabelStudioError(f"{method} {path}: HTTP {exc.code}: {detail}") from None


def _executable() -> str:
    configured = os.environ.get(EXECUTABLE_ENV)
    if configured:
        if not (Path(configured).is_file() and os.access(configured, os.X_OK)):
            pytest.fail(f"{EXECUTABLE_ENV}={configured} is not an executable file")
        return configured
    found = shutil.which("label-studio")
    if found is None:
        pytest.skip(
            f"no Label Studio: set {EXECUTABLE_ENV} to a label-studio executable, or put label-studio on PATH"
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(home: Path, data: Path) -> dict[str, str]:
    """A clean environment: Label Studio also reads unprefixed variables (HOST, PORT, USERNAME,
    DEBUG, ...), so nothing of the caller's environment but the basics is passed on."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT") if k in os.environ}
    env.update(
        {
            "HOME": str(home),
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            # the admin user, created at start-up, with a fixed (legacy) API token
            "LABEL_STUDIO_USERNAME": ADMIN,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # the tasks name their images by Label Studio's local-files URL of the absolute path
            # (benchmark.clean.batches.LS_LOCAL_FILES), which resolves below the root folder
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": "/",
            # offline: no version check against PyPI, no analytics, no error reporting
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL if it outlives STOP_TIMEOUT."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _wait_until_up(process: subprocess.Popen[bytes], log: Path) -> str:
    """The server's URL once it answers /health (Label Studio moves to the next port when the
    one asked for is taken, so the URL is the one its log announces)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabelStudioError(f"Label Studio exited with {process.returncode}:\n{_tail(log)}")
        if url is None:
            found = STARTED.search(log.read_text(errors="replace"))
            url = found.group(1) if found else None
        if url is not None:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as response:
                    if json.loads(response.read()).get("status") == "UP":
                        return url
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
    raise LabelStudioError(f"Label Studio did not answer within {STARTUP_TIMEOUT:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """A fresh Label Studio server on 127.0.0.1, stopped when the test ends."""
    executable = _executable()
    root = tmp_path_factory.mktemp("label-studio")
    data, home = root / "data", root / "home"
    data.mkdir()
    home.mkdir()
    log = root / "server.log"
    command = [executable, "start", "--no-browser", "--internal-host", "127.0.0.1"]
    command += ["--port", str(_free_port()), "--data-dir", str(data)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=_server_env(home, data),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = _wait_until_up(process, log)
        yield LabelStudio(url, TOKEN, log)
    finally:
        _stop(process)


def _toy_project(folder: Path) -> Project:
    """Six samples, three classes (as in test_clean.py), each with a small image: Label Studio
    refuses to import a task without the data its labelling interface shows (``$image``)."""
    folder.mkdir()
    (folder / "labels.csv").write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in LABELS.items()))
    np.save(folder / "p.npy", np.array(POSTERIORS))
    images = folder / "images"
    images.mkdir()
    for k, sample in enumerate(LABELS):
        Image.new("RGB", (8, 8), (40 * k, 120, 200 - 30 * k)).save(images / f"{sample}.png")
    return Project.init(
        folder / "project",
        labels=folder / "labels.csv",
        posteriors=folder / "p.npy",
        images=images,
        strategy="loss",
    )


def _choice(label: str) -> list[dict[str, Any]]:
    """An annotation's result: the class picked in the project's interface."""
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.mark.slow
def test_tasks_annotated_and_exported_by_label_studio_are_ingested_once(
    label_studio: LabelStudio, tmp_path: Path
) -> None:
    ls = label_studio
    with _toy_project(tmp_path / "toy") as project:
        batch = project.next(len(LABELS))
        assert sorted(q.sample_id for q in batch.questions) == sorted(LABELS)
        tasks_file = tmp_path / "tasks.json"
        write_labelstudio(tasks_file, batch.questions, model_version="alcbench model 0")
        ours = {t["data"]["sample_id"]: t["data"] for t in json.loads(tasks_file.read_text())}

        # the project, with our labelling interface; the images folder as a local-files storage
        # so that Label Studio serves the images our tasks point at
        config = (project.folder / LABEL_CONFIG).read_text()
        ls_project = ls.call("POST", "/api/projects", {"title": "alcbench clean", "label_config": config})
        pid = ls_project["id"]
        images = str((tmp_path / "toy" / "images").resolve())
        ls.call("POST", "/api/storages/localfiles", {"project": pid, "path": images, "title": "images"})
        imported = ls.call("POST", f"/api/projects/{pid}/import", json.loads(tasks_file.read_text()))
        assert (imported["task_count"], imported["prediction_count"]) == (len(LABELS), len(LABELS))

        listed = ls.call("GET", f"/api/tasks?project={pid}&page_size=100")["tasks"]
        task = {t["data"]["sample_id"]: t["id"] for t in listed}
        assert {t["data"]["sample_id"]: t["data"] for t in listed} == ours  # our data, unchanged
        image = ls.fetch("GET", ours["s2"]["image"])
        assert image == (tmp_path / "toy" / "images" / "s2.png").read_bytes()

        # two annotators: the admin (the token's user) and Ana, whose answers are recorded as
        # hers (`completed_by`), as Label Studio's API allows an administrator to
        admin = ls.call("GET", "/api/current-user/whoami")["id"]
        ana = ls.call("POST", "/api/users/", {"email": SECOND_ANNOTATOR, "username": "ana"})["id"]
        answers = [("s2", "dog", admin), ("s2", "dog", ana), ("s4", "cat", admin), ("s5", "fox", ana)]
        for sample, label, user in answers:
            body: dict[str, Any] = {"result": _choice(label), "lead_time": 3.5}
            if user != admin:
                body["completed_by"] = user
            ls.call("POST", f"/api/tasks/{task[sample]}/annotations/", body)
        # not answers: a skipped task, and a draft never submitted
        ls.call("POST", f"/api/tasks/{task['s1']}/annotations/", {"result": [], "was_cancelled": True})
        ls.call("POST", f"/api/tasks/{task['s5']}/drafts", {"result": _choice("cat"), "lead_time": 1.0})

        export = ls.fetch("GET", f"/api/projects/{pid}/export?exportType=JSON")
        export_file = tmp_path / "export.json"
        export_file.write_bytes(export)
        exported = json.loads(export)
        # the tasks with an annotation (the skip included), our data as we wrote it
        assert {t["data"]["sample_id"] for t in exported} == {"s1", "s2", "s4", "s5"}
        assert all(t["data"] == ours[t["data"]["sample_id"]] for t in exported)
        assert [len(t["drafts"]) for t in exported if t["data"]["sample_id"] == "s5"] == [1]

        report = project.ingest(export_file)
        assert (report.added, report.duplicates, report.settled) == (len(answers), 0, 2)

        expected = {sample: Counter({label: 1}) for sample, label in LABELS.items()}
        for sample, label, _ in answers:
            expected[sample][label] += 1
        table = {row["id"]: row for row in project.table()}
        votes = {sample: {c: row[f"votes_{c}"] for c in CLASSES} for sample, row in table.items()}
        assert votes == {sample: {c: n[c] for c in CLASSES} for sample, n in expected.items()}
        assert {sample: row["label"] for sample, row in table.items()} == {
            **LABELS,
            "s2": "dog",  # two answers against the initial label
            "s4": "cat",  # one against one: the first class on ties
        }
        assert [sample for sample, row in table.items() if row["settled"]] == ["s2", "s5"]
        assert [sample for sample, row in table.items() if row["reviewed"]] == ["s2", "s4", "s5"]
        # Label Studio's export names the annotator by user id
        assert table["s2"]["annotators"] == f"user {admin};user {ana}"
        assert (table["s4"]["annotators"], table["s5"]["annotators"]) == (f"user {admin}", f"user {ana}")
        status = project.status()
        assert (status.spent, status.open_questions) == (len(answers), 3)  # s0, s1 (skipped), s3

        again = project.ingest(export_file)
        assert (again.added, again.duplicates) == (0, len(answers))
        assert project.table() == list(table.values())
