"""Throughput benchmark of the built-in image learners (``make perf``, after the simulator one).

For each learner it times, on the device the learner itself would pick (CUDA when
``torch.cuda.is_available()``, else the CPU with the learner's thread and determinism settings,
:func:`benchmark.learners.smallcnn._torch_settings`):

- **train**: images per second through full training steps of the learner's own
  ``train_model`` (augmentation, forward, backward, optimiser and schedule step), one epoch
  over a synthetic dataset of ``1 + batches`` batches. The first step is the warm-up (first
  kernel calls, allocator, optimiser state); the clock starts when it has finished (a global
  optimiser post-step hook, with a device synchronisation) and stops when ``train_model``
  returns (after another synchronisation), so model construction is not counted.
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

    python -m benchmark.perf_learners --out results/perf            # ~1-2 min on a 2-core CPU
    python -m benchmark.perf_learners --out /tmp/perf --quick       # seconds (smoke test)

Writes ``learners.csv`` (one row per learner x phase) and ``learners.md`` (the machine, the
table, and an estimate of what a full default fit costs at the measured rates) and prints the
markdown. Rates depend on the machine, its load and the batch sizes; the estimate is the
measured rate extrapolated, not a measured fit.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from benchmark.learners import resnet50 as rn
from benchmark.learners import smallcnn as sc
from benchmark.perf import machine_info, write_csv

LEARNERS = ("smallcnn", "resnet50")
PHASES = ("train", "inference")
SEED = 2022

#: smallcnn's ``predict`` works in chunks of this many images (fixed in its code).
SMALLCNN_PREDICT_CHUNK = 500
#: Classes of the synthetic labels: CIFAR-10H for smallcnn, NoisyCXR for resnet50.
N_CLASSES = {"smallcnn": 10, "resnet50": 2}
#: Images per sample of the synthetic set: (H, W, channels).
SMALLCNN_IMAGE = (32, 32, 3)

#: Timed batches (after one warm-up batch) per device kind: (train batches, inference batches).
#: Sized for about a minute in all on a 2-core CPU (there resnet50 trains at ~11 images/s, a
#: batch of 32 in ~3 s) and for runs long enough to be steady on a GPU.
BATCHES: dict[str, dict[str, tuple[int, int]]] = {
    "cpu": {"smallcnn": (100, 6), "resnet50": (8, 6)},
    "cuda": {"smallcnn": (200, 20), "resnet50": (100, 50)},
}
#: ``--quick``: tiny sizes, one timed batch of each phase.
QUICK_BATCHES = {"smallcnn": (1, 1), "resnet50": (1, 1)}
QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "smallcnn": {"batch_size": 16, "width": 8, "mc_samples": 2},
    "resnet50": {"batch_size": 4, "image_size": 64, "crop": 56},
}
#: smallcnn's inference set under ``--quick`` (one partial chunk).
QUICK_SMALLCNN_INFERENCE = 32

#: Full default fits the estimate is for: (task, N samples of the cleaning task).
FULL_FIT = {"smallcnn": ("CIFAR-10H-sized", 5_000), "resnet50": ("NoisyCXR", 13_342)}

CSV_COLUMNS = (
    "learner",
    "device",
    "device_name",
    "dtype",
    "image_shape",
    "network_input",
    "batch_size",
    "phase",
    "images_per_second",
    "batches_timed",
    "images_timed",
    "seconds",
    "threads",
)


@dataclass(frozen=True)
class Measurement:
    learner: str
    device: str
    device_name: str
    dtype: str
    image_shape: str  # stored image, H x W x channels
    network_input: str  # what the network sees, H x W x channels
    batch_size: int
    phase: str
    images_timed: int
    batches_timed: int
    seconds: float
    threads: int | None  # torch CPU threads; None on CUDA

    @property
    def images_per_second(self) -> float:
        return self.images_timed / self.seconds if self.seconds > 0 else float("nan")

    def row(self) -> dict[str, object]:
        return {
            "learner": self.learner,
            "device": self.device,
            "device_name": self.device_name,
            "dtype": self.dtype,
            "image_shape": self.image_shape,
            "network_input": self.network_input,
            "batch_size": self.batch_size,
            "phase": self.phase,
            "images_per_second": f"{self.images_per_second:.3f}",
            "batches_timed": self.batches_timed,
            "images_timed": self.images_timed,
            "seconds": f"{self.seconds:.4f}",
            "threads": "" if self.threads is None else self.threads,
        }


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Times the optimiser steps after the first, of whatever optimiser steps while it is active.

    Step 1 is the warm-up: when it ends (device synchronised) the clock starts; :meth:`stop`
    (after another synchronisation) ends it. Work after step 1's ``optimizer.step()`` (its
    schedule step and loss bookkeeping) falls inside the window, as every later step's does.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.steps = 0
        self.start: float | None = None
        self.seconds = float("nan")
        self._handle: Any = None

    def _hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self.steps == 1:
            _sync(self.device)
            self.start = time.perf_counter()

    def __enter__(self) -> StepClock:
        self._handle = register_optimizer_step_post_hook(self._hook)
        return self

    def stop(self) -> None:
        _sync(self.device)
        if self.start is None:
            raise RuntimeError("no optimiser step was taken")
        self.seconds = time.perf_counter() - self.start

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _timed(device: torch.device, fn: Any, *args: Any, **kwargs: Any) -> float:
    _sync(device)
    start = time.perf_counter()
    fn(*args, **kwargs)
    _sync(device)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# The learners
# --------------------------------------------------------------------------------------------


def learner_device() -> torch.device:
    """The device the learners' ``fit_predict`` picks."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device, info: dict[str, str]) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return info["processor"]


def _batches(device: torch.device, learner: str, quick: bool, args: argparse.Namespace) -> tuple[int, int]:
    train, inference = (QUICK_BATCHES if quick else BATCHES.get(device.type, BATCHES["cpu"]))[learner]
    if args.train_batches is not None:
        train = args.train_batches
    if args.inference_batches is not None:
        inference = args.inference_batches
    if train < 1 or inference < 1:
        raise ValueError("--train-batches and --inference-batches must be >= 1")
    return train, inference


def bench_smallcnn(
    device: torch.device, name: str, *, train_batches: int, inference_batches: int, quick: bool, seed: int
) -> list[Measurement]:
    params = sc.SmallCNN(**(QUICK_PARAMS["smallcnn"] if quick else {})).params
    config = sc.TrainConfig.from_params(
        {**params, "epochs": 1}, n_classes=N_CLASSES["smallcnn"], device=device
    )
    n_train = (1 + train_batches) * config.batch_size
    n_inference = QUICK_SMALLCNN_INFERENCE if quick else inference_batches * SMALLCNN_PREDICT_CHUNK
    chunk = min(SMALLCNN_PREDICT_CHUNK, n_inference)
    n = max(n_train, n_inference)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *SMALLCNN_IMAGE), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES["smallcnn"], size=n)
    h, w, ch = SMALLCNN_IMAGE
    common: dict[str, Any] = {
        "learner": "smallcnn",
        "device": device.type,
        "device_name": name,
        "dtype": "bf16" if config.bf16 else "fp32",
        "image_shape": f"{h}x{w}x{ch}",
        "network_input": f"{h}x{w}x{ch}",
    }
    with sc._torch_settings(device):
        threads = torch.get_num_threads() if device.type == "cpu" else None
        torch.manual_seed(seed)
        x = sc._to_tensor(images, device)
        y = torch.as_tensor(labels, device=device)
        with StepClock(device) as clock:
            model, _ = sc.train_model(x[:n_train], y[:n_train], config, seed=seed)
            clock.stop()
        if clock.steps != 1 + train_batches:
            raise RuntimeError(f"smallcnn took {clock.steps} steps, expected {1 + train_batches}")
        sc.predict(model, x[:chunk], config, seed=seed)  # warm-up
        seconds = _timed(device, sc.predict, model, x[:n_inference], config, seed=seed)
    return _train_and_inference(
        common, config.batch_size, train_batches, clock.seconds, chunk, n_inference, seconds, threads
    )


def _train_and_inference(
    common: dict[str, Any],
    train_batch: int,
    train_batches: int,
    train_seconds: float,
    chunk: int,
    n_inference: int,
    inference_seconds: float,
    threads: int | None,
) -> list[Measurement]:
    """The two rows of a learner: timed training steps, and prediction in chunks."""
    return [
        Measurement(
            **common,
            batch_size=train_batch,
            phase="train",
            images_timed=train_batches * train_batch,
            batches_timed=train_batches,
            seconds=train_seconds,
            threads=threads,
        ),
        Measurement(
            **common,
            batch_size=chunk,
            phase="inference",
            images_timed=n_inference,
            batches_timed=math.ceil(n_inference / chunk),
            seconds=inference_seconds,
            threads=threads,
        ),
    ]


def bench_resnet50(
    device: torch.device, name: str, *, train_batches: int, inference_batches: int, quick: bool, seed: int
) -> list[Measurement]:
    params = rn.ResNet50(**(QUICK_PARAMS["resnet50"] if quick else {})).params
    config = rn.ResNetConfig.from_params(
        {**params, "epochs": 1}, n_classes=N_CLASSES["resnet50"], device=device
    )
    # predict() works in chunks of twice the training batch size.
    chunk = 2 * config.batch_size
    n_train = (1 + train_batches) * config.batch_size
    n_inference = inference_batches * chunk
    n = max(n_train, n_inference)
    s = config.image_size
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 1, s, s), dtype=np.uint8))
    labels = rng.integers(0, N_CLASSES["resnet50"], size=n)
    norm_cpu = rn.channel_stats(images)
    common: dict[str, Any] = {
        "learner": "resnet50",
        "device": device.type,
        "device_name": name,
        "dtype": "bf16" if config.bf16 else "fp32",
        "image_shape": f"{s}x{s}x1",
        "network_input": f"{config.crop}x{config.crop}x3",
    }
    with sc._torch_settings(device):
        threads = torch.get_num_threads() if device.type == "cpu" else None
        torch.manual_seed(seed)
        x = images.to(device)
        y = torch.as_tensor(labels, device=device)
        norm = (norm_cpu[0].to(device), norm_cpu[1].to(device))
        with StepClock(device) as clock:
            model, _ = rn.train_model(x, y, np.arange(n_train), config, norm=norm, seed=seed)
            clock.stop()
        if clock.steps != 1 + train_batches:
            raise RuntimeError(f"resnet50 took {clock.steps} steps, expected {1 + train_batches}")
        rn.predict(model, x, np.arange(chunk), config, norm=norm, seed=seed)  # warm-up
        seconds = _timed(device, rn.predict, model, x, np.arange(n_inference), config, norm=norm, seed=seed)
    return _train_and_inference(
        common, config.batch_size, train_batches, clock.seconds, chunk, n_inference, seconds, threads
    )


BENCHES = {"smallcnn": bench_smallcnn, "resnet50": bench_resnet50}


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
    cls = sc.SmallCNN if learner == "smallcnn" else rn.ResNet50
    p = cls().params
    task, n = FULL_FIT[learner]
    folds, epochs, bs = int(p["folds"]), int(p["epochs"]), int(p["batch_size"])
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
            "affinity": str(sc._cpu_count()),
            "omp": os.environ.get("OMP_NUM_THREADS", "unset"),
            "machine": platform.machine(),
        }
    )
    return info


def render_markdown(
    measurements: Sequence[Measurement], info: dict[str, str], *, command: str, quick: bool
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
        " `train_model` (augmentation + forward + backward + optimiser step, one warm-up step"
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
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf_learners", description="Learner training/inference throughput."
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    device = learner_device()
    if device.type == "cuda":
        # As resnet50's fit does: cuBLAS is deterministic only with a fixed workspace.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    info = hardware_info()
    name = device_name(device, info)

    measurements: list[Measurement] = []
    for learner in args.learners:
        train_batches, inference_batches = _batches(device, learner, args.quick, args)
        print(
            f"[perf_learners] {learner} on {device.type}: {train_batches} training and"
            f" {inference_batches} inference batches ...",
            file=sys.stderr,
            flush=True,
        )
        results = BENCHES[learner](
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

    command = "python -m benchmark.perf_learners " + " ".join(sys.argv[1:] if argv is None else list(argv))
    markdown = render_markdown(measurements, info, command=command.strip(), quick=args.quick)
    write_csv(args.out / "learners.csv", CSV_COLUMNS, (m.row() for m in measurements))
    (args.out / "learners.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
