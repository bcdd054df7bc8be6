"""Reading a cleaning project's input files: initial labels, and expert answers (CSV or Label
Studio's JSON export). Everything is checked before anything is applied; every message names
the file and, for a bad row, its line (CSV) or task (JSON)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The name of the class choice in the project's Label Studio interface (``labelstudio.xml``).
LS_CONTROL = "label"
#: At most this many bad rows are listed in one error (the count says how many there were).
MAX_LISTED = 10


class InputError(ValueError):
    """An input file that cannot be used as it is; nothing of it has been applied."""


@dataclass(frozen=True)
class Vote:
    """One label given to one sample: initial (labels.csv) or an expert's answer."""

    sample_id: str
    label: str
    annotator: str = ""
    time: str = ""
    #: the queue's request this answers (the ``request`` column of a batch we wrote), if known
    request: int | None = None
    #: what identifies this answer across files, so that ingesting it twice adds it once
    key: str = ""
    #: where in its file it was read: ``line N`` (CSV) or ``task N`` (Label Studio)
    where: str = ""


def problems_error(path: Path, problems: Sequence[str]) -> InputError:
    """One error listing a file's problems (at most :data:`MAX_LISTED`); nothing was applied."""
    listed = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    what = "problem" if len(problems) == 1 else "problems"
    return InputError(f"{path}: {len(problems)} {what}, nothing applied:\n  {listed}{more}")


def _read_csv(
    path: Path, required: Sequence[str], optional: Sequence[str]
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row; header checked against the columns named."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file ({exc})") from exc
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{path}: the file is empty; expected a header line {','.join(required)}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{path}: header {','.join(header)!r} lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(required)}" + (f"[,{','.join(optional)}]" if optional else "")
        )
    rows = []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            raise InputError(f"{path}: line {line} has {len(values)} fields, the header {len(header)}")
        row = {h: v.strip() for h, v in zip(header, values, strict=False)}
        rows.append((line, row))
    return rows


def read_labels(path: Path) -> tuple[list[Vote], bool]:
    """The initial labels: ``id,label`` (one per sample) or ``id,label,annotator`` (several).

    Returns the votes in file order, and whether the file had an annotator column.

    Raises:
        InputError: listing every empty id or label, and every duplicate id (without an
            annotator column) or duplicate (id, annotator) pair, with their lines.
    """
    rows = _read_csv(path, ("id", "label"), ("annotator",))
    has_annotator = bool(rows) and "annotator" in rows[0][1]
    if not rows:
        raise InputError(f"{path}: no labels (only a header)")
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    votes = []
    for line, row in rows:
        sid, label, annotator = row.get("id", ""), row.get("label", ""), row.get("annotator", "")
        if not sid:
            problems.append(f"line {line}: empty id")
            continue
        if not label:
            problems.append(f"line {line}: sample {sid!r} has an empty label")
            continue
        key = (sid, annotator if has_annotator else "")
        if key in seen:
            what = f"sample {sid!r}" + (f" labelled twice by {annotator!r}" if has_annotator else "")
            problems.append(f"line {line}: duplicate {what} (first on line {seen[key]})")
            continue
        seen[key] = line
        votes.append(Vote(sid, label, annotator, where=f"line {line}"))
    if problems:
        raise problems_error(path, problems)
    return votes, has_annotator


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_answers(path: Path) -> list[Vote]:
    """Expert answers from a CSV or a Label Studio JSON export (told apart by the suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_labelstudio_export(path)
    return read_answers_csv(path)


def read_answers_csv(path: Path) -> list[Vote]:
    """Answers from ``id,label,annotator[,time][,request]``: our batch CSV filled in, or any
    table with those columns. Rows with an empty label are questions not answered yet and are
    skipped.

    An answer's identity (what makes ingesting a file twice add nothing): the request and the
    annotator when the row names a request; else the id, annotator and time; without a time,
    the id, annotator, label and how many times that triple occurred before in the file.
    """
    rows = _read_csv(path, ("id", "label", "annotator"), ("time", "request"))
    problems: list[str] = []
    votes: list[Vote] = []
    occurrences: dict[tuple[str, str, str], int] = {}
    for line, row in rows:
        sid, label = row.get("id", ""), row.get("label", "")
        annotator, time = row.get("annotator", ""), row.get("time", "")
        if not label:
            continue
        if not sid:
            problems.append(f"line {line}: empty id")
            continue
        if not annotator:
            problems.append(f"line {line}: sample {sid!r}: empty annotator (say who answered)")
            continue
        request = None
        if row.get("request"):
            try:
                request = int(row["request"])
            except ValueError:
                problems.append(f"line {line}: request {row['request']!r} is not a number")
                continue
        if request is not None:
            key = f"request:{request}:{annotator}"
        elif time:
            key = f"csv:{sid}:{annotator}:{time}"
        else:
            triple = (sid, annotator, label)
            occurrences[triple] = occurrences.get(triple, 0) + 1
            key = f"csv:{sid}:{annotator}:{label}:{occurrences[triple]}"
        votes.append(Vote(sid, label, annotator, time, request, key, f"line {line}"))
    if problems:
        raise problems_error(path, problems)
    return votes


def read_labelstudio_export(path: Path) -> list[Vote]:
    """Answers from Label Studio's JSON export: a list of tasks, each with ``data`` (our
    ``sample_id`` and ``request``, as the tasks we wrote carry them) and ``annotations``, each
    annotation a ``result`` list whose ``choices`` result holds the label. Cancelled (skipped)
    annotations and annotations without a choice are not answers. An answer's identity is the
    task's and the annotation's Label Studio ids."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(tasks, list):
        raise InputError(
            f"{path}: expected Label Studio's JSON export (a list of tasks), got {type(tasks).__name__}"
        )
    problems: list[str] = []
    votes: list[Vote] = []
    for n, task in enumerate(tasks):
        where = f"task {task.get('id', n) if isinstance(task, dict) else n}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(f"{where}: not a task with a `data` object")
            continue
        data = task["data"]
        sid = data.get("sample_id")
        if sid is None:
            problems.append(
                f"{where}: data has no `sample_id` "
                "(import the tasks `alcbench clean next --format labelstudio` wrote)"
            )
            continue
        request = data.get("request")
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            label = _choice(annotation.get("result"))
            if label is None:
                continue
            votes.append(
                Vote(
                    str(sid),
                    label,
                    _annotator(annotation.get("completed_by")),
                    str(annotation.get("created_at") or ""),
                    int(request) if request is not None else None,
                    f"labelstudio:{task.get('id')}:{annotation.get('id')}",
                    where,
                )
            )
    if problems:
        raise problems_error(path, problems)
    return votes


def _choice(result: Any) -> str | None:
    """The chosen class of an annotation's ``result`` list: its ``choices`` region from our
    labelling interface's control (``from_name`` "label"), else its first ``choices`` region."""
    found = []
    for item in result or []:
        if isinstance(item, dict) and item.get("type") == "choices":
            choices = (item.get("value") or {}).get("choices") or []
            if choices:
                found.append((item.get("from_name") == LS_CONTROL, str(choices[0])))
    return next((c for ours, c in found if ours), found[0][1]) if found else None


def _annotator(completed_by: Any) -> str:
    """Label Studio writes the annotator as a user id, or an object with an email."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id") or "")
    return "" if completed_by is None else f"user {completed_by}"


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` as a CSV with a header (the first row's keys), written atomically."""
    import io

    from benchmark.atomic import write_bytes

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(Path(path), buffer.getvalue().encode())
