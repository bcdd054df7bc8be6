"""``alcbench clean``: the command line of :mod:`benchmark.clean.project`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from benchmark.clean.batches import no_image_error, write_csv, write_labelstudio
from benchmark.clean.project import Project
from benchmark.clean.reports import Status
from benchmark.simulation.trajectory import StrategyError


def run_clean(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except StrategyError as exc:  # a strategy plugin that raised: named in the message
        raise ValueError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    command = args.clean_command
    if command == "init":
        return _init(args)
    with Project(args.dir) as project:
        if command == "next":
            return _next(project, args)
        if command == "ingest":
            return _ingest(project, args)
        if command == "status":
            status = project.status()
            print(json.dumps(asdict(status), indent=1) if args.json else format_status(status))
            if args.plot is not None:
                from benchmark.clean.progress import plot_progress

                print(f"wrote {plot_progress(project, args.plot)}")
            return 0
        if command == "export":
            n = project.export(args.out)
            print(f"wrote {args.out}: {n} samples")
            return 0
        if command == "refit":
            generation = project.refit(args.posteriors, progress=not args.no_progress)
            print(f"model generation {generation}: the queue now ranks by it")
            return 0
        if command == "release":
            n = project.release(args.batch)
            print(f"released {n} open question(s)")
            return 0
    raise AssertionError(command)


def _init(args: argparse.Namespace) -> int:
    classes = None if args.classes is None else [c.strip() for c in args.classes.split(",")]
    project = Project.init(
        args.dir,
        labels=args.labels,
        posteriors=args.posteriors,
        learner=args.learner,
        images=args.images,
        classes=classes,
        strategy=args.strategy,
        budget=args.budget,
        seed=args.seed,
        refit_every=args.refit_every,
        image_size=args.image_size,
        progress=not args.no_progress,
    )
    with project:
        status = project.status()
        print(
            f"created {args.dir}: {status.samples} samples, {len(status.classes)} classes "
            f"({', '.join(status.classes)}), strategy {status.strategy}, "
            f"budget {'none' if status.budget is None else status.budget}; "
            f"the model disagrees with {status.estimated_mislabelled_left} label(s)"
        )
    return 0


def _next(project: Project, args: argparse.Namespace) -> int:
    if args.format == "labelstudio" and args.image_url is None:
        missing = next(
            (sid for sid, image in zip(project.ids, project.images, strict=True) if image is None), None
        )
        if missing is not None:  # before a batch is handed out that no file could carry
            raise no_image_error(missing)
    batch = project.next(args.n) if args.again is None else project.batch(args.again)
    if not batch.questions:
        print(batch.why_empty)
        return 0
    suffix = ".json" if args.format == "labelstudio" else ".csv"
    out = args.out or project.folder / "batches" / f"batch-{batch.number:04d}{suffix}"
    if args.format == "labelstudio":
        write_labelstudio(
            Path(out),
            batch.questions,
            image_url=args.image_url,
            model_version=f"alcbench model {batch.generation}",
        )
    else:
        write_csv(Path(out), batch.questions)
    new = sum(q.kind == "new" for q in batch.questions)
    more = len(batch.questions) - new
    print(
        f"batch {batch.number}: {len(batch.questions)} sample(s) ({new} new, {more} needing another answer) "
        f"-> {out}"
    )
    return 0


def _ingest(project: Project, args: argparse.Namespace) -> int:
    for path in args.answers:
        report = project.ingest(path, refit=not args.no_refit, progress=not args.no_progress)
        print(
            f"{path}: {report.added} answer(s) added, {report.duplicates} already in the ledger, "
            f"{report.settled} sample(s) settled"
            + (f", {report.corrected} earlier answer(s) corrected" if report.corrected else "")
            + ("; model re-fitted" if report.refitted else "")
        )
    return 0


def format_status(s: Status) -> str:
    budget = "no limit" if s.budget is None else f"{s.budget} ({s.budget_left} left)"
    lines = [
        f"strategy          {s.strategy}",
        f"samples           {s.samples} ({len(s.classes)} classes)",
        f"answers spent     {s.spent}; budget {budget}",
        f"samples reviewed  {s.selected} ({s.settled} settled, {s.unsettled} waiting for another answer, "
        f"{s.open_questions} open question(s) in {s.batches} batch(es))",
        f"labels changed    {s.labels_changed}",
        f"mislabelled left  about {s.estimated_mislabelled_left} (labels not settled that the model "
        f"disagrees with; model generation {s.model_generation})",
    ]
    return "\n".join(lines)
