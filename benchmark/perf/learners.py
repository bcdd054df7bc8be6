"""Throughput benchmark of the built-in image learners (``make perf``, after the simulator one).

Each learner runs inside its own ``session()``, so on the device it would pick itself (CUDA
when ``torch.cuda.is_available()``, else the CPU with its thread and determinism settings, see
:mod:`benchmark.learners._torch`); its ``prepare`` normalises the synthetic images, then it times:

- **train**: images per second through full training steps of the learner's own ``train``
  (augmentation, forward, backward, optimiser and schedule step), one epoch over a synthetic
  dataset of ``1 + batches`` batches. The first step is the warm-up (first kernel calls,
  allocator, optimiser state); the clock starts when it has finished (a global optimiser
  post-step hook, with a device synchronisation) and stops when ``train`` returns (after
  another synchronisation), so model construction is not counted.
- **inference**: images per second through the learner's own ``predict`` (smallcnn: image and
  mirror image plus ``mc_samples`` MC-dropout passes of the tail; resnet50: centre crop, and
  ``mc_samples`` = 0 by default), after one untimed warm-up call on one inference batch.

Inputs are random uint8 images with random labels, seeded (NumPy generator and
``torch.manual_seed``): smallcnn at 32x32x3 (CIFAR-10H, 10 classes), resnet50 at its default
``image_size`` (256x256 greyscale, cropped to 224, 2 classes as in NoisyCXR). Precision (bf16
autocast or fp32) is what the learner's config decides for the device. Learner parameters are
the defaults, except ``epochs`` = 1 (one pass over the synthetic set) and, with ``--quick``,
tiny sizes for a smoke test.

Usage::

    python -m benchmark.perf.learners --out results/perf            # ~1-2 min on a 2-core CPU
    python -m benchmark.perf.learners --out /tmp/perf --quick       # seconds (smoke test)

Writes ``learners.csv`` (one row per learner x phase) and ``learners.md`` (the machine, the
table, and an estimate of what a full default fit costs at the measured rates) and prints the
markdown. It also times the ``ssl`` learner's active re-fit, warm start vs from scratch
(:mod:`benchmark.perf.ssl_refit`: ``ssl_refit.csv`` and a section of ``learners.md``; on
CIFAR-10H's shipped encoder features when the data is found, ``--ssl-refit synthetic`` for a
stand-in of the same shape, ``off`` to skip). Rates depend on the machine, its load and the
batch sizes; the estimate is the measured rate extrapolated, not a measured fit.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.learners.resnet50 import ResNet50
from benchmark.learners.smallcnn import SmallCNN
from benchmark.perf.learner_timing import (
    CSV_COLUMNS,
    FULL_FIT,
    LEARNERS,
    SEED,
    Measurement,
    bench,
    device_name,
    learner_device,
    planned_batches,
)
from benchmark.perf.machine import machine_info, write_csv
from benchmark.perf.ssl_refit import CSV_COLUMNS as SSL_REFIT_COLUMNS
from benchmark.perf.ssl_refit import RefitTiming, bench_ssl_refit, render_section
from benchmark.threads import available_cores

# --------------------------------------------------------------------------------------------
# Full-fit estimate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitEstimate:
    learner: str
    task: str
    n: int
    folds: int
    epochs: int
    batch_size: int
    train_images: int
    predict_images: int
    seconds: float


def full_fit_estimate(learner: str, train_rate: float, inference_rate: float) -> FitEstimate:
    """What a default ``fit_predict`` on the learner's full task costs at the measured rates.

    Training images: per fold, ``epochs`` x (its training samples // batch_size) x batch_size
    (both learners drop the last partial batch); predicted images: every sample once (by the
    fold model that did not see it). Data loading, resizing and normalisation are not counted.
    """
    config = (SmallCNN if learner == "smallcnn" else ResNet50)().config
    task, n = FULL_FIT[learner]
    folds, epochs, bs = config.folds, config.epochs, config.batch_size
    fold_sizes = [len(a) for a in np.array_split(np.arange(n), folds)]
    train_images = sum(epochs * max(1, (n - size) // bs) * bs for size in fold_sizes)
    seconds = train_images / train_rate + n / inference_rate
    return FitEstimate(learner, task, n, folds, epochs, bs, train_images, n, seconds)


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def hardware_info() -> dict[str, str]:
    info = machine_info()
    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:  # pragma: no cover - a dependency
        tv = "not installed"
    info.update(
        {
            "torch": torch.__version__,
            "torchvision": tv,
            "cuda": (
                f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda},"
                f" {torch.cuda.device_count()} device(s))"
                if torch.cuda.is_available()
                else "not available"
            ),
            "affinity": str(available_cores()),
            "omp": os.environ.get("OMP_NUM_THREADS", "unset"),
            "machine": platform.machine(),
        }
    )
    return info


def render_markdown(
    measurements: Sequence[Measurement],
    info: dict[str, str],
    *,
    command: str,
    quick: bool,
    ssl_refit: Sequence[RefitTiming] = (),
) -> str:
    lines = [
        "# Learner throughput benchmark",
        "",
        f"Generated by `{command}` on {info['date']}.",
        "",
        f"- Platform: {info['platform']}",
        f"- CPU: {info['processor']}; {info['cpu_count']} logical CPUs ({info['affinity']} usable by"
        f" this process); {info['ram']} RAM; OMP_NUM_THREADS={info['omp']}",
        f"- GPU: {info['cuda']}",
        f"- Python {info['python']}, torch {info['torch']}, torchvision {info['torchvision']}",
        "- Method: synthetic random uint8 images and labels (seeded); the learners' own"
        " `train` (augmentation + forward + backward + optimiser step, one warm-up step"
        " untimed) and `predict` (one warm-up batch untimed), on the device and with the"
        " precision and thread settings the learner picks. Default parameters"
        + (" except the tiny `--quick` sizes." if quick else "."),
        "",
        "## Throughput",
        "",
        "| learner | device | device name | dtype | image | network input | phase | batch |"
        " batches timed | images | seconds | images/s |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        dev = m.device if m.threads is None else f"{m.device} ({m.threads} threads)"
        lines.append(
            f"| {m.learner} | {dev} | {m.device_name} | {m.dtype} | {m.image_shape} |"
            f" {m.network_input} | {m.phase} | {m.batch_size} | {m.batches_timed} |"
            f" {m.images_timed:,} | {m.seconds:.3f} | {m.images_per_second:,.1f} |"
        )
    lines += [
        "",
        "Inference: smallcnn's `predict` runs the network on each image and its mirror image and"
        " re-runs the tail `mc_samples` times (MC dropout); resnet50's runs the centre crop once"
        " (`mc_samples` = 0 by default).",
        "",
        "## Estimated cost of a full default fit (extrapolated from the measured rates)",
        "",
    ]
    if quick:
        lines += [
            "**`--quick` run: tiny sizes, so these rates and the estimate below are not representative.**",
            "",
        ]
    lines += [
        "| learner | task | N | folds x epochs | batch | training images | predicted images |"
        " estimated time |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rates = {(m.learner, m.phase): m for m in measurements}
    for learner in LEARNERS:
        if (learner, "train") not in rates or (learner, "inference") not in rates:
            continue
        train = rates[learner, "train"]
        est = full_fit_estimate(
            learner, train.images_per_second, rates[learner, "inference"].images_per_second
        )
        lines.append(
            f"| {learner} | {est.task} | {est.n:,} | {est.folds} x {est.epochs} | {est.batch_size} |"
            f" {est.train_images:,} | {est.predict_images:,} |"
            f" **~{_fmt_duration(est.seconds)}** ({train.device}, {train.dtype}) |"
        )
    lines += [
        "",
        "Estimate = training images / measured training rate + N / measured inference rate, at"
        " the default parameters (each fold trains on the other folds' samples, drop-last"
        " batches; every sample is predicted once). It leaves out image loading, resizing and"
        " normalisation, and assumes the rate of a few batches holds for the whole fit. It is"
        " an estimate from the measured rate, not a measured fit.",
    ]
    if ssl_refit:
        lines += ["", *render_section(list(ssl_refit))]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf.learners", description="Learner training/inference throughput."
    )
    parser.add_argument("--out", type=Path, default=Path("results/perf"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one timed batch (smoke test)")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS))
    parser.add_argument(
        "--train-batches", type=int, default=None, help="timed training batches (default: by device)"
    )
    parser.add_argument(
        "--inference-batches", type=int, default=None, help="timed inference batches (default: by device)"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--ssl-refit",
        choices=("real", "synthetic", "off"),
        default="real",
        help="time the ssl re-fit on CIFAR-10H's shipped features (synthetic ones if its data is"
        " not found), on synthetic ones, or not at all (default: real)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    device = learner_device()
    info = hardware_info()
    name = device_name(device, info)

    measurements: list[Measurement] = []
    for learner in args.learners:
        train_batches, inference_batches = planned_batches(device, learner, args.quick, args)
        print(
            f"[perf_learners] {learner} on {device.type}: {train_batches} training and"
            f" {inference_batches} inference batches ...",
            file=sys.stderr,
            flush=True,
        )
        results = bench(
            learner,
            device,
            name,
            train_batches=train_batches,
            inference_batches=inference_batches,
            quick=args.quick,
            seed=args.seed,
        )
        for m in results:
            print(
                f"[perf_learners] {learner:8s} {m.phase:9s} {m.dtype} batch {m.batch_size:4d}"
                f"  {m.images_per_second:10.1f} images/s  ({m.images_timed} images, {m.seconds:.2f} s)",
                file=sys.stderr,
                flush=True,
            )
        measurements += results

    ssl_refit: list[RefitTiming] = []
    if args.ssl_refit != "off":
        ssl_refit = bench_ssl_refit(use_real=args.ssl_refit == "real", quick=args.quick)
        for t in ssl_refit:
            print(
                f"[perf_learners] ssl re-fit {t.mode:12s} {t.task} ({t.epochs} epochs)"
                f"  median {t.median_seconds:.3f} s  {t.ratio:.1f}x",
                file=sys.stderr,
                flush=True,
            )
        write_csv(args.out / "ssl_refit.csv", SSL_REFIT_COLUMNS, (t.row() for t in ssl_refit))

    command = "python -m benchmark.perf.learners " + " ".join(sys.argv[1:] if argv is None else list(argv))
    markdown = render_markdown(
        measurements, info, command=command.strip(), quick=args.quick, ssl_refit=ssl_refit
    )
    write_csv(args.out / "learners.csv", CSV_COLUMNS, (m.row() for m in measurements))
    (args.out / "learners.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
