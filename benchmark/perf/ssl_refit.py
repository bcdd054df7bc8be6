"""The ``ssl`` learner's active re-fit timed: warm start from the base heads vs from scratch.

Part of the learner benchmark (:mod:`benchmark.perf.learners`, which writes ``ssl_refit.csv``
and a section of ``learners.md``). Both re-fits run in the same process on the same labels,
alternating, after one untimed re-fit that loads the features and reads or trains the base
heads (:meth:`benchmark.learners.ssl.SelfSupervised.base_heads`):

- **warm start**: :meth:`~benchmark.learners.ssl.SelfSupervised.refit`, the base heads
  fine-tuned for ``refit_epochs`` (what an active run does);
- **from scratch**: ``refit(..., from_scratch=True)``, new heads trained for ``head_epochs``
  (what an active run's re-fit did before), the baseline of the ratio.

The task is CIFAR-10H at temperature 2 on the shipped encoder's features (N = 5,000, D = 128)
when its data is found and its encoder is stored; else a synthetic stand-in of the same
shape, whose features are written to a temporary encoder store (the timing depends on the
shapes only). Labels: the noisy ones with 1,000, 2,000, ... samples set to their true class,
as after that many annotations. Base heads are written to a temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import registry
from benchmark.dataroot import DataNotFoundError
from benchmark.learners._ssl_encoder import encoder_dirs, encoder_inputs, find_encoder, write_encoder
from benchmark.learners.ssl import SelfSupervised
from benchmark.posteriors.cache import CACHE_DIRS_ENV, SHIPPED_POSTERIORS, use_cache_dirs
from benchmark.posteriors.cache_entry import canonical_json
from benchmark.task import CleaningTask

#: The real task timed when its data is found.
DATASET = "cifar10h[temperature=2]"
#: Re-fits of each kind timed (the median is reported); ``--quick``: one, on a small task.
REPEATS = 7
QUICK_N = 600
MODES = ("warm start", "from scratch")
CSV_COLUMNS = ("task", "n", "mode", "epochs", "repeats", "median_seconds", "min_seconds", "ratio")


@dataclass(frozen=True)
class RefitTiming:
    task: str
    n: int
    mode: str  # one of MODES
    epochs: int
    repeats: int
    median_seconds: float
    min_seconds: float
    ratio: float  # the from-scratch median over this median (1 for from scratch itself)

    def row(self) -> dict[str, object]:
        row: dict[str, object] = {column: getattr(self, column) for column in CSV_COLUMNS}
        row.update(median_seconds=f"{self.median_seconds:.4f}", min_seconds=f"{self.min_seconds:.4f}")
        row["ratio"] = f"{self.ratio:.2f}"
        return row


@contextmanager
def _artifact_dirs(folder: Path) -> Iterator[None]:
    """``folder`` the artifact folder written, the shipped posteriors read, for the duration."""
    previous = os.environ.get(CACHE_DIRS_ENV)
    use_cache_dirs(folder, [SHIPPED_POSTERIORS])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CACHE_DIRS_ENV, None)
        else:
            os.environ[CACHE_DIRS_ENV] = previous


def real_task(learner: SelfSupervised) -> CleaningTask | None:
    """CIFAR-10H (:data:`DATASET`) when its data is found and its encoder is stored, else None."""
    try:
        task = registry.create("dataset", DATASET).load()
        assert task.load_images is not None
        images = np.asarray(task.load_images())
    except (DataNotFoundError, OSError):
        return None
    settings = learner.pretrain_settings()
    inputs = encoder_inputs(images, settings)
    key = hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()[:20]
    write, read = encoder_dirs()
    found = find_encoder(key, inputs, (task.n_samples, settings.feature_dim), [write, *read], quiet=True)
    return task if found is not None else None


def synthetic_task(learner: SelfSupervised, n: int) -> CleaningTask:
    """A task of ``n`` samples, 10 classes and ~15% label noise whose encoder features (Gaussian
    classes, the learner's feature width) are written to the encoder store's write folder."""
    rng = np.random.default_rng(0)
    n_classes, d = 10, learner.pretrain_settings().feature_dim
    true = rng.integers(0, n_classes, n)
    features = rng.normal(size=(n_classes, d))[true] * 0.6 + rng.normal(size=(n, d))
    noisy = true.copy()
    flipped = rng.random(n) < 0.15
    noisy[flipped] = (noisy[flipped] + rng.integers(1, n_classes, int(flipped.sum()))) % n_classes
    images = rng.integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
    inputs = encoder_inputs(images, learner.pretrain_settings())
    key = hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()[:20]
    write, _ = encoder_dirs()
    write_encoder(write / f"{key}.npz", features, {}, {}, {"key": key, "inputs": inputs})
    return CleaningTask(
        name=f"synthetic (N={n:,}, D={d})",
        true_dist=np.eye(n_classes)[true],
        noisy_labels=noisy,
        class_names=tuple(f"class {c}" for c in range(n_classes)),
        load_images=lambda: images,
    )


def bench_ssl_refit(*, use_real: bool = True, quick: bool = False, seed: int = 0) -> list[RefitTiming]:
    """Times the warm-start and the from-scratch re-fit (see the module doc), one row each."""
    repeats = 1 if quick else REPEATS
    with tempfile.TemporaryDirectory(prefix="alcbench-ssl-refit-") as folder, _artifact_dirs(Path(folder)):
        learner = SelfSupervised()
        task = real_task(learner) if use_real and not quick else None
        if task is None:
            task = synthetic_task(learner, QUICK_N if quick else 5_000)
        rng = np.random.default_rng(seed)
        step = max(1, task.n_samples // 5)

        def labels(k: int) -> np.ndarray:
            annotated = rng.choice(task.n_samples, step * (1 + k % 3), replace=False)
            out = task.noisy_labels.copy()
            out[annotated] = task.true_labels[annotated]
            return out

        learner.refit(task, labels(0), seed=seed)  # untimed: features loaded, base heads made
        seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
        for k in range(repeats):
            current = labels(k)
            for mode in MODES:
                started = time.perf_counter()
                learner.refit(task, current, seed=seed, from_scratch=mode == "from scratch")
                seconds[mode].append(time.perf_counter() - started)
    c = learner.config
    medians = {mode: statistics.median(s) for mode, s in seconds.items()}
    epochs = {"warm start": c.refit_epochs, "from scratch": c.head_epochs}
    return [
        RefitTiming(
            task=task.name,
            n=task.n_samples,
            mode=mode,
            epochs=epochs[mode],
            repeats=repeats,
            median_seconds=medians[mode],
            min_seconds=min(seconds[mode]),
            ratio=medians["from scratch"] / medians[mode] if medians[mode] > 0 else float("nan"),
        )
        for mode in MODES
    ]


def render_section(timings: list[RefitTiming]) -> list[str]:
    """The ``learners.md`` section: the table and the speed-up of the warm start."""
    lines = [
        "## ssl re-fit, warm start vs from scratch",
        "",
        "The `ssl` learner's re-fit in an active run (linear heads over the stored encoder"
        " features, NumPy, BLAS on one thread): `refit` fine-tunes the stored base heads for"
        " `refit_epochs`; `refit(from_scratch=True)`, the baseline measured in the same run on"
        " the same labels, trains new heads for `head_epochs`. Median wall clock of"
        f" {timings[0].repeats} re-fit(s) each, after one untimed re-fit.",
        "",
        "| task | N | re-fit | epochs | median s | min s | speed-up vs from scratch |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.task} | {t.n:,} | {t.mode} | {t.epochs} | {t.median_seconds:.3f} |"
            f" {t.min_seconds:.3f} | {t.ratio:.1f}x |"
        )
    return lines
