"""Timing the built-in image learners' own training and prediction code on synthetic images.

See :mod:`benchmark.perf.learners` for what is measured and how it is reported.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from benchmark.learners._torch import TorchLearner, default_device
from benchmark.learners.resnet50 import ResNet50
from benchmark.learners.smallcnn import PREDICT_CHUNK, SmallCNN
from benchmark.task import CleaningTask

LEARNERS = ("smallcnn", "resnet50")
PHASES = ("train", "inference")
SEED = 2022

#: smallcnn's ``predict`` works in chunks of this many images (fixed in its code).
SMALLCNN_PREDICT_CHUNK = PREDICT_CHUNK
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
        row: dict[str, object] = {column: getattr(self, column) for column in CSV_COLUMNS}
        row["images_per_second"] = f"{self.images_per_second:.3f}"
        row["seconds"] = f"{self.seconds:.4f}"
        row["threads"] = "" if self.threads is None else self.threads
        return row


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
    return default_device()


def device_name(device: torch.device, info: dict[str, str]) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return info["processor"]


def planned_batches(
    device: torch.device, learner: str, quick: bool, args: argparse.Namespace
) -> tuple[int, int]:
    train, inference = (QUICK_BATCHES if quick else BATCHES.get(device.type, BATCHES["cpu"]))[learner]
    if args.train_batches is not None:
        train = args.train_batches
    if args.inference_batches is not None:
        inference = args.inference_batches
    if train < 1 or inference < 1:
        raise ValueError("--train-batches and --inference-batches must be >= 1")
    return train, inference


def bench(
    learner_name: str,
    device: torch.device,
    name: str,
    *,
    train_batches: int,
    inference_batches: int,
    quick: bool,
    seed: int,
) -> list[Measurement]:
    """The train and inference rows of one learner, run inside its own ``session()``."""
    cls: type[TorchLearner] = SmallCNN if learner_name == "smallcnn" else ResNet50
    learner = cls(**{**(QUICK_PARAMS[learner_name] if quick else {}), "epochs": 1})
    config = learner.config
    n_train = (1 + train_batches) * config.batch_size
    if isinstance(learner, SmallCNN):
        n_inference = QUICK_SMALLCNN_INFERENCE if quick else inference_batches * SMALLCNN_PREDICT_CHUNK
        chunk = min(SMALLCNN_PREDICT_CHUNK, n_inference)
        image, network = SMALLCNN_IMAGE, SMALLCNN_IMAGE
    else:
        chunk = 2 * config.batch_size  # predict() works in chunks of twice the training batch size
        n_inference = inference_batches * chunk
        image, network = (config.image_size, config.image_size, 1), (config.crop, config.crop, 3)
    n = max(n_train, n_inference)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *image), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES[learner_name], size=n)
    task = CleaningTask(
        name=f"perf-{learner_name}",
        true_dist=np.eye(N_CLASSES[learner_name])[labels],
        noisy_labels=labels,
        class_names=tuple(f"c{c}" for c in range(N_CLASSES[learner_name])),
        load_images=lambda: images,
    )
    with learner.session():
        threads = torch.get_num_threads() if device.type == "cpu" else None
        torch.manual_seed(seed)
        x = learner.prepare(images, task)
        with StepClock(device) as clock:
            model = learner.train(x[:n_train], labels[:n_train], seed=seed)
            clock.stop()
        if clock.steps != 1 + train_batches:
            raise RuntimeError(f"{learner_name} took {clock.steps} steps, expected {1 + train_batches}")
        learner.predict(model, x[:chunk], seed=seed)  # warm-up
        seconds = _timed(device, learner.predict, model, x[:n_inference], seed=seed)
        common: dict[str, Any] = {
            "learner": learner_name,
            "device": device.type,
            "device_name": name,
            "dtype": "bf16" if learner.bf16 else "fp32",
            "image_shape": "x".join(map(str, image)),
            "network_input": "x".join(map(str, network)),
            "threads": threads,
        }
    return [
        Measurement(
            **common,
            batch_size=config.batch_size,
            phase="train",
            images_timed=train_batches * config.batch_size,
            batches_timed=train_batches,
            seconds=clock.seconds,
        ),
        Measurement(
            **common,
            batch_size=chunk,
            phase="inference",
            images_timed=n_inference,
            batches_timed=math.ceil(n_inference / chunk),
            seconds=seconds,
        ),
    ]
