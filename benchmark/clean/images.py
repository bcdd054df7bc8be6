"""A cleaning project's images: the file of each sample (``init --images``), their pixels, and the
project as a :class:`~benchmark.task.CleaningTask` for its learner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.clean.reports import ProjectError
from benchmark.task import CleaningTask

#: Image files ``--images`` looks for, by suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".dcm", ".dicom")


def find_images(folder: Path, ids: Sequence[str]) -> list[Path]:
    """The image file of each sample: ``<folder>/<id>.<suffix>``."""
    if not folder.is_dir():
        raise ProjectError(f"{folder}: images folder does not exist")
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(p.stem, p)
    missing = [i for i in ids if i not in by_stem]
    if missing:
        raise ProjectError(
            f"{folder}: no image for {len(missing)} sample(s) (first: {missing[0]!r}; expected a file "
            f"named <id> with one of {', '.join(IMAGE_SUFFIXES)})"
        )
    return [by_stem[i] for i in ids]


def load_images(paths: Sequence[str | None], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 from the image files, each resized to ``size``. DICOM files
    (radiographs) are read as greyscale by :func:`benchmark.radiographs.read_radiograph`, as the
    chest X-ray datasets read them, and repeated over the three channels."""
    from PIL import Image, UnidentifiedImageError

    from benchmark.radiographs import DICOM_SUFFIXES, ImageReadError, read_radiograph

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for k, p in enumerate(paths):
        if p is None:
            raise ProjectError("the project has no images (it was created from posteriors)")
        if Path(p).suffix.lower() in DICOM_SUFFIXES:
            try:
                out[k] = read_radiograph(p, size)[:, :, None]
            except ImageReadError as exc:
                raise ProjectError(str(exc)) from exc
            continue
        try:
            with Image.open(p) as image:
                rgb = image.convert("RGB")
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
                out[k] = np.asarray(rgb)
        except (OSError, UnidentifiedImageError) as exc:
            raise ProjectError(f"{p}: cannot be read as an image ({exc})") from exc
    return out


def learner_task(
    ids: Sequence[str],
    classes: Sequence[str],
    initial_counts: np.ndarray,
    images: Sequence[str | None],
    size: int,
) -> CleaningTask:
    """The project as a :class:`CleaningTask` for a learner: the initial labels' vote shares
    (``initial_counts``, (N, C)) as its label distribution, their majority as its labels, the
    image files as its inputs."""
    counts = initial_counts.astype(np.float64)
    cache: dict[str, np.ndarray] = {}

    def load() -> np.ndarray:
        if "x" not in cache:
            cache["x"] = load_images(images, size)
        return cache["x"]

    return CleaningTask(
        name=f"clean[n={len(ids)}]",
        true_dist=counts / counts.sum(axis=1, keepdims=True),
        noisy_labels=np.argmax(counts, axis=1),
        class_names=tuple(classes),
        budget_multiplier=0.0,
        load_images=load,
        sample_ids=np.asarray(ids),
        info={"image_source": "clean:" + _digest_paths(images), "image_source_default": ""},
    )


def _digest_paths(paths: Sequence[str | None]) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p}\n".encode())
    return h.hexdigest()[:16]


__all__ = ["IMAGE_SUFFIXES", "find_images", "learner_task", "load_images"]
