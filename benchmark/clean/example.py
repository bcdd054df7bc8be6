"""A worked example of ``alcbench clean`` on real data: a CIFAR-10H subset, and an expert that
answers from CIFAR-10H's human annotations.

``python -m benchmark.clean.example prepare DIR --n 200`` writes ``DIR/labels.csv`` (the first
``n`` images of the benchmark's ``cifar10h`` task, with its noisy labels) and ``DIR/images/``
(those images as PNG files). ``python -m benchmark.clean.example answer BATCH.csv`` fills in a
batch file the way the benchmark's simulated expert would (each answer a draw from the image's
human annotation counts, keyed by sample and draw as in :mod:`benchmark.simulation.expert`), so a project
driven by it ends where ``alcbench run`` ends on the same task.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import registry
from benchmark.atomic import write_bytes
from benchmark.clean.inputs import write_rows
from benchmark.simulation.expert import cumulative, draw_labels, uniforms
from benchmark.task import CleaningTask

#: The dataset spec the example takes its samples from.
DATASET = "cifar10h"
#: Where the answering expert keeps the number of draws it made per sample.
EXPERT_STATE = ".expert.json"


def load_task(spec: str = DATASET, data_root: Path | None = None) -> CleaningTask:
    task: CleaningTask = registry.create("dataset", spec).load(data_root)
    return task


def sample_ids(task: CleaningTask) -> list[str]:
    ids = task.sample_ids if task.sample_ids is not None else np.arange(task.n_samples)
    return [f"cifar10h-{int(i):05d}" for i in ids]


def prepare(
    out: Path,
    n: int,
    *,
    spec: str = DATASET,
    data_root: Path | None = None,
    images: bool = True,
    posteriors: Path | None = None,
) -> Path:
    """Writes ``labels.csv`` (id,label), with ``images`` also ``images/<id>.png``, and with
    ``posteriors`` (a file of the whole task's posteriors, ``alcbench fit --export``) the first
    ``n`` rows of it as ``posteriors.npy``."""
    from PIL import Image

    from benchmark.posteriors.files import load_posteriors_file

    task = load_task(spec, data_root)
    if not 0 < n <= task.n_samples:
        raise ValueError(f"--n must be in 1..{task.n_samples}, got {n}")
    if posteriors is not None:
        post = load_posteriors_file(posteriors, task.n_samples, task.n_classes)
        buffer = io.BytesIO()
        np.save(buffer, post.probs[:n])
        write_bytes(out / "posteriors.npy", buffer.getvalue())
    ids = sample_ids(task)[:n]
    lines = ["id,label"] + [
        f"{sid},{task.class_names[y]}" for sid, y in zip(ids, task.noisy_labels[:n], strict=True)
    ]
    write_bytes(out / "labels.csv", ("\n".join(lines) + "\n").encode())
    if images:
        assert task.load_images is not None
        pixels = task.load_images()[:n]
        (out / "images").mkdir(parents=True, exist_ok=True)
        for sid, image in zip(ids, pixels, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            write_bytes(out / "images" / f"{sid}.png", buffer.getvalue())
    return out / "labels.csv"


def answer_rows(
    rows: Sequence[dict[str, Any]],
    task: CleaningTask,
    seed: int,
    drawn: dict[str, int],
    annotator: str = "cifar10h",
) -> None:
    """Fills ``label`` and ``annotator`` of batch rows with the simulated expert's draws;
    ``drawn`` (draws made so far per id) is updated."""
    index = {sid: i for i, sid in enumerate(sample_ids(task))}
    cdf = cumulative(task.true_dist)
    for row in rows:
        if row.get("label"):
            continue
        i = index[row["id"]]
        k = drawn.get(row["id"], 0)
        label = int(draw_labels(cdf[i : i + 1], uniforms(seed, np.array([i]), np.array([k])))[0])
        row["label"] = task.class_names[label]
        row["annotator"] = annotator
        drawn[row["id"]] = k + 1


def answer_file(batch: Path, *, seed: int = 0, spec: str = DATASET, data_root: Path | None = None) -> int:
    """Fills in a batch CSV in place; returns the answers written. The draws made per sample
    are kept in ``.expert.json`` beside the batch, so later batches continue each sample's draws."""
    task = load_task(spec, data_root)
    with open(batch, newline="") as f:
        rows = list(csv.DictReader(f))
    state_path = batch.parent / EXPERT_STATE
    drawn: dict[str, int] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    before = sum(drawn.values())
    answer_rows(rows, task, seed, drawn)
    write_rows(batch, rows)
    write_bytes(state_path, json.dumps(drawn).encode())
    return sum(drawn.values()) - before


def score(cleaned: Path, *, spec: str = DATASET, data_root: Path | None = None) -> dict[str, int]:
    """How an exported ``cleaned.csv`` compares with CIFAR-10H's plurality labels: the samples
    mislabelled before and after, and how many labels were changed."""
    import pandas as pd

    task = load_task(spec, data_root)
    table = pd.read_csv(cleaned, dtype={"id": str})
    index = {sid: i for i, sid in enumerate(sample_ids(task))}
    unknown = [sid for sid in table["id"] if sid not in index]
    if unknown:
        raise ValueError(f"{cleaned}: {len(unknown)} id(s) are not {spec} samples (first: {unknown[0]!r})")
    rows = np.array([index[sid] for sid in table["id"]])
    classes = list(task.class_names)
    truth = task.true_labels[rows]
    before = np.array([classes.index(c) for c in table["initial_label"]])
    after = np.array([classes.index(c) for c in table["label"]])
    return {
        "samples": len(rows),
        "mislabelled_before": int((before != truth).sum()),
        "mislabelled_after": int((after != truth).sum()),
        "changed": int((before != after).sum()),
        "changed_to_right": int(((before != after) & (after == truth)).sum()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.clean.example", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write labels.csv and images/ for the first N samples")
    prep.add_argument("dir", type=Path)
    prep.add_argument("--n", type=int, default=200)
    prep.add_argument("--dataset", default=DATASET)
    prep.add_argument("--posteriors", type=Path, default=None, help="the whole task's posteriors (.npy)")
    prep.add_argument("--data-root", type=Path, default=None)
    ans = sub.add_parser("answer", help="fill in a batch CSV from CIFAR-10H's human annotations")
    ans.add_argument("batch", type=Path)
    ans.add_argument("--seed", type=int, default=0)
    ans.add_argument("--dataset", default=DATASET)
    ans.add_argument("--data-root", type=Path, default=None)
    sc = sub.add_parser("score", help="compare an exported cleaned.csv with CIFAR-10H's plurality labels")
    sc.add_argument("cleaned", type=Path)
    sc.add_argument("--dataset", default=DATASET)
    sc.add_argument("--data-root", type=Path, default=None)
    args = p.parse_args(argv)
    if args.command == "prepare":
        path = prepare(
            args.dir, args.n, spec=args.dataset, data_root=args.data_root, posteriors=args.posteriors
        )
        extra = " and posteriors.npy" if args.posteriors is not None else ""
        print(f"wrote {path}, {args.dir / 'images'}{extra}: {args.n} samples")
    elif args.command == "score":
        r = score(args.cleaned, spec=args.dataset, data_root=args.data_root)
        print(
            f"{r['samples']} samples: {r['mislabelled_before']} mislabelled before, "
            f"{r['mislabelled_after']} after; "
            f"{r['changed']} labels changed, {r['changed_to_right']} of them to the right class"
        )
    else:
        n = answer_file(args.batch, seed=args.seed, spec=args.dataset, data_root=args.data_root)
        print(f"{args.batch}: {n} answers filled in")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
