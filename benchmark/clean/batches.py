"""Batch files: what ``alcbench clean next`` hands to the experts.

- CSV: one row per question, with what the queue knows of the sample (current label and votes,
  the model's top classes, the strategy's score and its parts) and empty ``label``,
  ``annotator`` and ``time`` columns. Filled in, the file itself is an answers file for
  ``alcbench clean ingest`` (its ``request`` column ties each answer to its question).
- Label Studio: a tasks JSON that Label Studio imports, one task per question, with the model's
  guess as a pre-annotation (``predictions``); the labelling interface for it is the project's
  ``labelstudio.xml``. Label Studio's JSON export of the annotated tasks is an answers file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.atomic import write_bytes
from benchmark.clean.inputs import LS_CONTROL, write_rows
from benchmark.clean.labelstudio import LS_TO_NAME
from benchmark.clean.reports import Question

#: The columns experts fill in (the rest is for reading).
ANSWER_COLUMNS = ("label", "annotator", "time")
#: Label Studio serves files below its LOCAL_FILES_DOCUMENT_ROOT at this URL.
LS_LOCAL_FILES = "/data/local-files/?d={file}"


def csv_rows(questions: Sequence[Question]) -> list[dict[str, Any]]:
    rows = []
    for q in questions:
        row: dict[str, Any] = {
            "request": q.request,
            "batch": q.batch,
            "id": q.sample_id,
            "kind": q.kind,
            "current_label": q.current_label,
            "votes": ";".join(f"{c}:{n}" for c, n in q.votes.items()),
        }
        for k in range(3):
            name, p = q.top[k] if k < len(q.top) else ("", None)
            row[f"model_{k + 1}"] = name
            row[f"p_{k + 1}"] = "" if p is None else f"{p:.4f}"
        row.update(
            {
                "score": "" if q.score is None else f"{q.score:.6g}",
                "correctness": f"{q.correctness:.4f}",
                "difficulty": f"{q.difficulty:.4f}",
                "image": q.image or "",
            }
        )
        row.update({c: "" for c in ANSWER_COLUMNS})
        rows.append(row)
    return rows


def write_csv(path: Path, questions: Sequence[Question]) -> None:
    write_rows(path, csv_rows(questions))


def labelstudio_tasks(
    questions: Sequence[Question], *, image_url: str | None = None, model_version: str = ""
) -> list[dict[str, Any]]:
    """Label Studio tasks: ``data`` holds the sample (its ``sample_id`` and our ``request``,
    which come back in Label Studio's export) and its ``image`` (``image_url`` with ``{id}`` and
    ``{file}`` filled in; by default Label Studio's local-files URL of the image file),
    ``predictions`` the model's top class.

    Raises:
        ValueError: a sample has no image file and no ``image_url`` says where its image is
            (Label Studio refuses a task without the image its interface shows).
    """
    tasks = []
    for q in questions:
        data: dict[str, Any] = {
            "sample_id": q.sample_id,
            "request": q.request,
            "batch": q.batch,
            "current_label": q.current_label,
            "votes": ", ".join(f"{c}: {n}" for c, n in q.votes.items()),
            "model": ", ".join(f"{c} {p:.2f}" for c, p in q.top),
            "score": q.score,
        }
        if q.image is not None:
            template = image_url or LS_LOCAL_FILES
            file = str(Path(q.image).resolve())
            if template == LS_LOCAL_FILES:
                file = file.lstrip("/")
            data["image"] = template.format(id=q.sample_id, file=file)
        elif image_url is not None:
            data["image"] = image_url.format(id=q.sample_id, file="")
        else:
            raise no_image_error(q.sample_id)
        guess, p = q.top[0]
        tasks.append(
            {
                "data": data,
                "predictions": [
                    {
                        "model_version": model_version,
                        "score": p,
                        "result": [
                            {
                                "from_name": LS_CONTROL,
                                "to_name": LS_TO_NAME,
                                "type": "choices",
                                "value": {"choices": [guess]},
                            }
                        ],
                    }
                ],
            }
        )
    return tasks


def no_image_error(sample_id: str) -> ValueError:
    """Label Studio refuses a task without the image its interface shows."""
    return ValueError(
        f"Label Studio shows each task's image, and sample {sample_id!r} has none (the project was "
        "created without --images): pass --image-url with the images' address, e.g. "
        "'https://host/images/{id}.png'"
    )


def write_labelstudio(path: Path, questions: Sequence[Question], **kwargs: Any) -> None:
    write_bytes(path, json.dumps(labelstudio_tasks(questions, **kwargs), indent=1).encode())
