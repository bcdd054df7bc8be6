"""CIFAR-10H: the CIFAR-10 test images, each labelled by about 51 people (Peterson et al. 2019).

The expert's distribution of an image is its human annotation counts normalised; the true label
is their plurality vote. Noisy labels are one draw per image from the temperature-scaled
distribution p^(1/T) (T=2: about 15 % noise, T=10: about 30 %), drawn exactly as the paper's
reference code draws them, so that the noise is the paper's.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from benchmark.dataroot import DataNotFoundError, find_data_file, user_cache_dir
from benchmark.plugins import Dataset, Param
from benchmark.posteriors.cache import (
    EVAL_SET,
    EVAL_SOURCE,
    EVAL_SOURCE_DEFAULT,
    IMAGE_SOURCE,
    IMAGE_SOURCE_DEFAULT,
)
from benchmark.task import CleaningTask, normalised_entropy

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TOTAL = 10_000
PAPER_SEED = 1234
SHIPPED_COUNTS = Path(__file__).resolve().parent / "data" / "cifar10h-counts.npy"
HOW_TO_GET_IMAGES = (
    "Get the CIFAR-10 test images with torchvision when online\n"
    "  (python -c \"import torchvision; torchvision.datasets.CIFAR10('<root>', train=False, "
    'download=True)"),\n  which writes <root>/cifar-10-batches-py/test_batch, '
    "or from https://www.cs.toronto.edu/~kriz/cifar.html."
)


class CIFAR10H(Dataset):
    name = "cifar10h"
    description = "CIFAR-10 test images with ~51 human labels each; noise by temperature T."
    parameters = {
        "temperature": Param([2.0, 10.0], type=float, low=0, low_open=True),
        "n": Param([5000], type=int, low=1, high=TOTAL),
    }

    def load(self, data_root: Path | None = None) -> CleaningTask:
        temperature = float(self.params["temperature"])
        n = int(self.params["n"])
        if temperature <= 0:
            raise ValueError(f"cifar10h: temperature must be > 0, got {temperature}")
        if not 0 < n <= TOTAL:
            raise ValueError(f"cifar10h: n must be in 1..{TOTAL}, got {n}")
        counts = load_counts(data_root)
        indices = paper_subset(counts, n)
        dist = counts[indices] / counts[indices].sum(axis=1, keepdims=True)
        noisy = paper_noisy_labels(dist, temperature)

        info = {
            "source": "CIFAR-10H (Peterson et al. 2019), CIFAR-10 test set",
            IMAGE_SOURCE: image_source(data_root),
            IMAGE_SOURCE_DEFAULT: DEFAULT_IMAGE_SOURCE,
            EVAL_SET: "CIFAR-10 training set (50,000 images, official labels)",
            EVAL_SOURCE: eval_set_source(data_root),
            EVAL_SOURCE_DEFAULT: DEFAULT_IMAGE_SOURCE,
        }

        def load_images() -> np.ndarray:
            images = load_test_images(data_root)[indices]
            # The copy that was read: a download may have filled the user cache meanwhile.
            info[IMAGE_SOURCE] = image_source(data_root)
            return images

        return CleaningTask(
            name=self.spec,
            true_dist=dist,
            noisy_labels=noisy,
            class_names=CLASSES,
            budget_multiplier=4.0,
            load_images=load_images,
            sample_ids=indices,
            load_eval=lambda: load_train_set(data_root),
            info=info,
        )

    def display_name(self, noise_rate: float | None = None) -> str:
        """``"CIFAR-10H, T = 2 (15.4 % noise)"``; the subset size too when it is not the paper's."""
        from benchmark.params import noise_text

        parts = [f"CIFAR-10H, T = {float(self.params['temperature']):g}"]
        if self.params["n"] != self.parameters["n"][0]:
            parts.append(f"N = {self.params['n']}")
        return ", ".join(parts) + noise_text(noise_rate)


def load_counts(data_root: Path | None) -> np.ndarray:
    path = find_data_file(
        ["cifar10h/cifar10h-counts.npy", "cifar10h-counts.npy"],
        data_root=data_root,
        what="CIFAR-10H annotation counts (cifar10h-counts.npy)",
        how_to_get="Download it from https://github.com/jcpeterson/cifar-10h (data/).",
        extra=[SHIPPED_COUNTS],
    )
    counts = np.load(path)
    if counts.shape != (TOTAL, len(CLASSES)) or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(
            f"{path}: expected a (10000, 10) integer count matrix, got {counts.shape} {counts.dtype}"
        )
    return counts.astype(np.int64)


def paper_subset(counts: np.ndarray, n: int) -> np.ndarray:
    """Indices of the paper's subset, in the paper's order.

    Every ambiguous image (normalised entropy > 0.3; 454 of them) is kept, the rest is drawn at
    random with RandomState(1234), and the union is shuffled by the same generator. The full
    set (n = 10000) is RandomState(1234).permutation(10000).
    """
    rs = np.random.RandomState(PAPER_SEED)
    if n == TOTAL:
        return rs.permutation(TOTAL)
    dist = counts / counts.sum(axis=1, keepdims=True)
    hard = np.where(normalised_entropy(dist) > 0.3)[0][:n]
    remaining = np.setdiff1d(np.arange(TOTAL), hard)
    chosen = rs.choice(remaining, n - hard.size, replace=False)
    subset = np.concatenate([hard, chosen])
    rs.shuffle(subset)
    return subset


def paper_noisy_labels(dist: np.ndarray, temperature: float) -> np.ndarray:
    """One draw per row of the tempered distribution p^(1/T), RandomState(1234), in row order."""
    tempered = np.power(dist, 1.0 / temperature)
    tempered /= tempered.sum(axis=1, keepdims=True)
    rs = np.random.RandomState(PAPER_SEED)
    n_classes = dist.shape[1]
    return np.array([rs.choice(n_classes, 1, p=row)[0] for row in tempered], dtype=np.int64)


#: Where the CIFAR-10 test images are looked for under each data root, in order (as
#: :func:`load_test_images` looks), and which copy each file is.
IMAGE_FILES = (
    ("cifar-10-batches-py/test_batch", "torchvision"),
    ("cifar10/cifar-10-batches-py/test_batch", "torchvision"),
    ("cifar10/cifar10_test_from_jpeg.npz", "jpeg"),
)
#: The copy the shipped posteriors were fitted on; its cache keys are those from before the
#: key named the copy (see benchmark/posteriors/cache.py).
DEFAULT_IMAGE_SOURCE = "jpeg"


def image_source(data_root: Path | None) -> str | None:
    """Which copy of the test images :func:`load_test_images` would read, found without reading it.

    ``"torchvision"`` (the lossless official ``test_batch``), ``"jpeg"`` (the JPEG-derived
    copy), or None when neither is under a data root (loading would then try a download).
    """
    try:
        path = _find_test_images(data_root)
    except DataNotFoundError:
        return None
    return next(source for rel, source in IMAGE_FILES if path.as_posix().endswith(rel))


def _find_test_images(data_root: Path | None) -> Path:
    """The first of :data:`IMAGE_FILES` under a data root; DataNotFoundError listing the paths."""
    return find_data_file(
        [rel for rel, _ in IMAGE_FILES],
        data_root=data_root,
        what="CIFAR-10 test images",
        how_to_get=HOW_TO_GET_IMAGES,
    )


def load_test_images(data_root: Path | None) -> np.ndarray:
    """The 10,000 CIFAR-10 test images, (10000, 32, 32, 3) uint8 RGB, in official order.

    Looks for torchvision's ``cifar-10-batches-py/test_batch`` (lossless, official), then for
    ``cifar10/cifar10_test_from_jpeg.npz`` (a JPEG-derived copy), under each data root; when
    neither is there, tries torchvision's download into the user cache. A ``test_batch`` is a
    pickle, which can run code when loaded: it is unpickled only when its MD5 is the official
    file's (:data:`TEST_BATCH_MD5`), else a ValueError names the file and both MD5s.
    """
    try:
        path = _find_test_images(data_root)
    except DataNotFoundError as missing:
        path = _try_download(missing)
    content = None if path.suffix == ".npz" else _official_test_batch(path)
    try:
        if content is None:
            with np.load(path) as z:
                images = np.asarray(z["images"])
        else:
            batch = pickle.loads(content, encoding="bytes")
            images = np.asarray(batch[b"data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read CIFAR-10 test images ({exc}). {HOW_TO_GET_IMAGES}") from exc
    if images.shape != (TOTAL, 32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected (10000, 32, 32, 3) uint8 images, got {images.shape} {images.dtype}"
        )
    return images


#: The MD5 of the official CIFAR-10 ``test_batch`` (published with it, and checked by torchvision).
TEST_BATCH_MD5 = "40351d587109b95175f43aff81a1287e"
#: The MD5s of the official training batches, ``data_batch_1`` to ``data_batch_5``.
TRAIN_BATCH_MD5 = (
    "c99cafc152244af753f735de768cd75f",
    "d4bba439e000b95fd0a9bffe97cbabec",
    "54ebc095f3ab1f0389bbae665268c751",
    "634d18415352ddfa80567beed471001a",
    "482c414d41f54cd18b22e5b47cb7c3cb",
)


def _official_test_batch(path: Path) -> bytes:
    """The bytes of the pickled ``test_batch`` at ``path``, once their MD5 is the official one."""
    return _official_batch(path, TEST_BATCH_MD5, HOW_TO_GET_IMAGES)


def _official_batch(path: Path, md5: str, how_to_get: str) -> bytes:
    """The bytes of the pickled CIFAR-10 batch at ``path``, once their MD5 is ``md5``.

    A pickle can run any code when it is loaded, so nothing but the published file is
    unpickled; the bytes checked are the bytes later unpickled.

    Raises:
        ValueError: the file cannot be read or its MD5 differs; the message names the file,
            its MD5 and the one expected.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read CIFAR-10 images ({exc}). {how_to_get}") from exc
    digest = hashlib.md5(content, usedforsecurity=False).hexdigest()
    if digest != md5:
        raise ValueError(
            f"{path}: not the official CIFAR-10 {path.name} (MD5 {digest}, expected {md5}); "
            f"refusing to unpickle it, since a pickle can run code. {how_to_get}"
        )
    return content


# --------------------------------------------------------------------------- clean evaluation set

#: Images in the CIFAR-10 training set: the clean evaluation set of the downstream results.
TRAIN_TOTAL = 50_000
HOW_TO_GET_TRAIN = (
    "Get the CIFAR-10 training images with torchvision when online\n"
    "  (python -c \"import torchvision; torchvision.datasets.CIFAR10('<root>', train=True, "
    'download=True)"),\n  which writes <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, '
    "or from https://www.cs.toronto.edu/~kriz/cifar.html."
)
#: Where the training set is looked for under each data root, in order, and which copy each is.
TRAIN_FILES = (
    ("cifar-10-batches-py/data_batch_1", "torchvision"),
    ("cifar10/cifar-10-batches-py/data_batch_1", "torchvision"),
    ("cifar10/cifar10_train_jpeg_packed.npz", "jpeg"),
)


def eval_set_source(data_root: Path | None) -> str | None:
    """Which copy of the CIFAR-10 training set :func:`load_train_set` would read
    (``"torchvision"`` or ``"jpeg"``), or None when neither is under a data root."""
    try:
        path = _find_train_set(data_root)
    except DataNotFoundError:
        return None
    return next(source for rel, source in TRAIN_FILES if path.as_posix().endswith(rel))


def _find_train_set(data_root: Path | None) -> Path:
    return find_data_file(
        [rel for rel, _ in TRAIN_FILES],
        data_root=data_root,
        what="CIFAR-10 training images (the clean evaluation set)",
        how_to_get=HOW_TO_GET_TRAIN,
    )


def load_train_set(data_root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The 50,000 CIFAR-10 training images (50000, 32, 32, 3) uint8 RGB and their official
    labels (50000,) int64, in official order: the clean evaluation set of the downstream
    results (the set the paper's code validated on).

    Reads torchvision's ``cifar-10-batches-py/data_batch_1..5`` (each unpickled only once its
    MD5 is the official one), else ``cifar10/cifar10_train_jpeg_packed.npz`` (the original
    JPEG files of a JPEG-derived copy, decoded here); when neither is there, tries torchvision's
    download into the user cache.

    Raises:
        DataNotFoundError: neither copy is under a data root and the download failed (the
            message says where it looked and how to get them).
        ValueError: a file is not what it should be; the message names it.
    """
    try:
        path = _find_train_set(data_root)
    except DataNotFoundError as missing:
        path = _try_download(missing, train=True)
    try:
        if path.suffix == ".npz":
            images, labels = _decode_packed_jpeg(path)
        else:
            parts = [
                pickle.loads(
                    _official_batch(path.with_name(f"data_batch_{k + 1}"), md5, HOW_TO_GET_TRAIN),
                    encoding="bytes",
                )
                for k, md5 in enumerate(TRAIN_BATCH_MD5)
            ]
            images = np.concatenate(
                [np.asarray(b[b"data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for b in parts]
            )
            labels = np.concatenate([np.asarray(b[b"labels"]) for b in parts])
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot read the CIFAR-10 training images ({exc}). {HOW_TO_GET_TRAIN}"
        ) from exc
    labels = np.asarray(labels, dtype=np.int64)
    if images.shape != (TRAIN_TOTAL, 32, 32, 3) or images.dtype != np.uint8 or labels.shape != (TRAIN_TOTAL,):
        raise ValueError(
            f"{path}: expected (50000, 32, 32, 3) uint8 images and 50000 labels, "
            f"got {images.shape} {images.dtype} and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise ValueError(f"{path}: labels must lie in 0..{len(CLASSES) - 1}")
    return np.ascontiguousarray(images), labels


def _decode_packed_jpeg(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a packed-JPEG file: ``jpeg_bytes`` (concatenated files), ``offsets``
    (n + 1) and ``labels`` (n), decoded with Pillow to RGB."""
    import io

    from PIL import Image

    with np.load(path) as z:
        data = np.asarray(z["jpeg_bytes"])
        offsets = np.asarray(z["offsets"], dtype=np.int64)
        labels = np.asarray(z["labels"])
    if offsets.ndim != 1 or offsets.size != labels.size + 1 or offsets[-1] != data.size:
        raise ValueError(f"{path}: offsets do not match the packed bytes and labels")
    buffer = data.tobytes()
    images = np.empty((labels.size, 32, 32, 3), dtype=np.uint8)
    for i in range(labels.size):
        with Image.open(io.BytesIO(buffer[offsets[i] : offsets[i + 1]])) as image:
            images[i] = np.asarray(image.convert("RGB"))
    return images, labels


def _try_download(missing: DataNotFoundError, *, train: bool = False) -> Path:
    """torchvision's download of the test (or training) set into the user cache; the path of
    ``test_batch`` (or ``data_batch_1``), or DataNotFoundError with both reasons."""
    root = user_cache_dir() / "data"
    try:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=train, download=True)
    except Exception as exc:
        raise DataNotFoundError(f"{missing}\n(torchvision's download failed too: {exc})") from exc
    return root / "cifar-10-batches-py" / ("data_batch_1" if train else "test_batch")
