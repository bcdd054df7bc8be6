"""Reading chest radiographs (DICOM, PNG, JPEG) as greyscale uint8 images.

Every reader returns a (H, W) uint8 image in which bright means dense (bone is white), whatever
the file stored, or raises :class:`ImageReadError` naming the file and what is wrong with it.

DICOM pixel values go through the same steps a viewer applies, in the standard's order:

1. stored values: only the low ``BitsStored`` bits of each ``BitsAllocated`` container count
   (12-bit CR/DX data is stored in 16 bits; the high bits may hold overlays or garbage), and
   signed data (``PixelRepresentation`` 1) is sign-extended from ``BitsStored`` bits;
2. the modality LUT: ``RescaleSlope`` x value + ``RescaleIntercept``, or a Modality LUT Sequence;
3. ``MONOCHROME1`` (bright = low values) is negated, so both interpretations come out the same;
4. the full range of the image, its minimum to its maximum, is mapped linearly onto 0..255.

Step 4 deliberately ignores ``WindowCenter``/``WindowWidth`` and VOI LUTs. The RSNA pneumonia
DICOMs (the paper's data) carry none, and where a header does carry one it is a display preset
chosen by the scanner vendor or site: applying it would show the same anatomy differently
across sources and clip values a network can use. Learners normalise intensities anyway.

PNG and JPEG files (NIH ChestX-ray14 is distributed as 8-bit PNG) are already display images:
8-bit greyscale is returned as stored; colour or alpha images (a few NIH PNGs are RGBA) are
converted to luminance; 16-bit and float images are mapped min..max onto 0..255 like DICOM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from benchmark.dataroot import DataNotFoundError

#: File suffixes read with pydicom; other files are sniffed for the DICOM "DICM" marker too.
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
#: ITU-R BT.601 luma weights, as PIL's ``convert("L")`` uses.
_LUMA = np.array([0.299, 0.587, 0.114])
_COLOUR_INTERPRETATIONS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422"})


class ImageReadError(ValueError):
    """An image file is missing, unreadable or malformed; the message names the file."""


def read_radiograph(path: Path | str, size: int | None = None) -> np.ndarray:
    """Read a radiograph as a greyscale image, bright = dense.

    Args:
        path: a DICOM file (``.dcm``, ``.dicom``, or any file with the DICOM "DICM" marker) or
            an image PIL reads (PNG, JPEG, ...).
        size: when given, the image is resized to (size, size) with PIL's bilinear filter,
            which averages over the footprint of each output pixel when shrinking.

    Returns:
        (H, W) uint8, or (size, size) when ``size`` is given.

    Raises:
        ImageReadError: the file is missing, not an image, has no or truncated pixel data, an
            unsupported photometric interpretation, several frames, or no pixels.
    """
    path = Path(path)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "does not exist"
        raise ImageReadError(f"{path}: {what}")
    image = _read_dicom(path) if _is_dicom(path) else _read_pil(path)
    if size is not None and image.shape != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return image


# --------------------------------------------------------------------------- DICOM


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with path.open("rb") as f:
        header = f.read(132)
    return header[128:132] == b"DICM"


def _read_dicom(path: Path) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as e:
        raise ImageReadError(
            f"{path}: not a DICOM file (no 'DICM' marker after the 128-byte preamble): {e}"
        ) from e
    except Exception as e:  # pydicom raises struct.error, EOFError, ... on cut-off headers
        raise ImageReadError(f"{path}: unreadable DICOM header (truncated or corrupt?): {e!r}") from e

    if "PixelData" not in ds:
        raise ImageReadError(
            f"{path}: has no pixel data (no PixelData element; a file cut off before or inside "
            "its pixels reads like this too)"
        )
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows == 0 or cols == 0:
        raise ImageReadError(f"{path}: empty image (Rows={rows}, Columns={cols})")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise ImageReadError(f"{path}: has {frames} frames; a radiograph has one")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in {"MONOCHROME1", "MONOCHROME2"} | _COLOUR_INTERPRETATIONS:
        raise ImageReadError(
            f"{path}: unsupported photometric interpretation {photometric or '(missing)'!r} "
            "(expected MONOCHROME1, MONOCHROME2, RGB or YBR_FULL[_422])"
        )
    _check_pixel_data_length(ds, path, rows, cols, frames)

    try:
        stored = ds.pixel_array  # pydicom converts YBR to RGB
    except Exception as e:  # no decoder for a compressed syntax, corrupt stream, ...
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", syntax)
        raise ImageReadError(f"{path}: cannot decode the pixel data (transfer syntax {name}): {e}") from e

    signed = int(ds.get("PixelRepresentation", 0)) == 1
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    values = _stored_values(np.asarray(stored), bits_stored, signed=signed)
    if photometric in _COLOUR_INTERPRETATIONS:
        if values.ndim != 3 or values.shape[-1] != 3:
            raise ImageReadError(
                f"{path}: {photometric} pixel data of shape {values.shape}, expected (H, W, 3)"
            )
        values = values @ _LUMA
    values = np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    if values.shape != (rows, cols):
        raise ImageReadError(f"{path}: pixel data of shape {values.shape}, expected ({rows}, {cols})")
    if photometric == "MONOCHROME1":
        # Negating (rather than 255 - result) keeps the arithmetic exact, so MONOCHROME1 and
        # MONOCHROME2 files of the same picture give identical bytes.
        values = -values
    return _full_range_uint8(values, path)


def _check_pixel_data_length(ds: Dataset, path: Path, rows: int, cols: int, frames: int) -> None:
    """Native (uncompressed) pixel data must hold Rows x Columns x samples x BitsAllocated bits.

    pydicom reads a cut-off Pixel Data element without complaint, so this is checked here.
    """
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None and syntax.is_compressed:
        return  # encapsulated: the decoder reports a broken stream
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 8)
    expected = -(-rows * cols * samples * frames * bits // 8)
    actual = len(ds.PixelData)
    if actual < expected:
        raise ImageReadError(
            f"{path}: pixel data is truncated: {actual} bytes, expected {expected} "
            f"({rows} rows x {cols} columns x {samples} samples x {bits} bits)"
        )


def _stored_values(values: np.ndarray, bits_stored: int, *, signed: bool) -> np.ndarray:
    """Keep the low ``bits_stored`` bits of integer pixels, sign-extending signed data.

    Idempotent, so it is harmless where the decoder already masked the unused high bits.
    """
    if values.dtype.kind not in "iu" or bits_stored >= 8 * values.dtype.itemsize:
        return values
    masked = values.astype(np.int64) & ((1 << bits_stored) - 1)
    if signed:
        masked = np.where(masked >= 1 << (bits_stored - 1), masked - (1 << bits_stored), masked)
    return masked


def _full_range_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """Map min..max of ``values`` linearly onto 0..255 (rounded)."""
    if values.size == 0:
        raise ImageReadError(f"{path}: empty image (shape {values.shape})")
    if not np.isfinite(values).all():
        raise ImageReadError(f"{path}: pixel values include NaN or infinity")
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        # A blank export: there is no contrast to map, and any grey would be made up.
        raise ImageReadError(f"{path}: every pixel has the same value ({lo:g}); the image is blank")
    scaled = np.rint((values - lo) * (255.0 / (hi - lo)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- PNG, JPEG, ...


def _read_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not later
            image = im.copy()
    except Image.UnidentifiedImageError as e:
        raise ImageReadError(f"{path}: not an image file PIL can read (nor a DICOM file)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: unreadable image (truncated or corrupt?): {e}") from e
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"{path}: empty image ({image.width}x{image.height})")
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _full_range_uint8(np.asarray(image, dtype=np.float64), path)
    # 1-bit, palette, RGB(A), LA, CMYK, YCbCr: luminance, alpha dropped.
    return np.asarray(image.convert("L"), dtype=np.uint8)


def load_radiographs(
    sample_ids: Sequence[str],
    dirs: Sequence[Path],
    *,
    suffixes: Sequence[str] = ("",),
    size: int | None,
    skip_unreadable: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Reads the radiograph of every sample with :func:`read_radiograph`.

    The file of sample ``s`` is the first existing ``dir / (s + suffix)`` over ``dirs`` and
    then ``suffixes``. Files are read in parallel threads; the result is in sample order.

    Returns:
        images: (K, size, size) uint8 greyscale, K samples kept;
        kept: (K,) int64 indices of the kept samples into ``sample_ids``;
        skipped: one ``{"sample_id", "file", "reason"}`` per sample dropped (only when
            ``skip_unreadable``).

    Raises:
        DataNotFoundError: a sample has no file (unless ``skip_unreadable``), naming where it
            was looked for.
        ImageReadError: a file cannot be read (unless ``skip_unreadable``), naming the file.
    """

    def locate(sample_id: str) -> Path | None:
        for suffix in suffixes:
            for folder in dirs:
                path = folder / f"{sample_id}{suffix}"
                if path.is_file():
                    return path
        return None

    paths = [locate(s) for s in sample_ids]
    missing = [i for i, p in enumerate(paths) if p is None]
    if missing and not skip_unreadable:
        first = sample_ids[missing[0]]
        tried = "\n  ".join(str(d / f"{first}{s}") for s in suffixes for d in dirs)
        raise DataNotFoundError(
            f"no image file for {len(missing)} of {len(sample_ids)} samples; the first, "
            f"{first}, was looked for at:\n  {tried}\n"
            "(or pass skip_unreadable=True to drop such samples and list them)"
        )
    present = [i for i, p in enumerate(paths) if p is not None]
    # Written in place by the readers, so the images are held once, not twice.
    out = np.zeros((len(present), size, size), np.uint8) if size else None
    native: dict[int, np.ndarray] = {}

    def read(j: int) -> Exception | None:
        path = paths[present[j]]
        assert path is not None
        try:
            image = np.asarray(read_radiograph(path, size=size))
        except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
            if not skip_unreadable:
                raise
            return exc
        if out is None:
            native[j] = image
        elif image.shape != out.shape[1:] or image.dtype != np.uint8:
            raise ValueError(f"{path}: read as {image.shape} {image.dtype}, expected {out.shape[1:]} uint8")
        else:
            out[j] = image
        return None

    pool = ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1))
    try:
        errors = list(pool.map(read, range(len(present))))
    finally:
        # On the first error, do not read thousands of files only to discard them.
        pool.shutdown(wait=True, cancel_futures=True)
    skipped = [
        {"sample_id": str(sample_ids[i]), "file": ", ".join(f"{sample_ids[i]}{s}" for s in suffixes),
         "reason": "not found in " + ", ".join(map(str, dirs))}
        for i in missing
    ]  # fmt: skip
    skipped += [
        {"sample_id": str(sample_ids[present[j]]), "file": str(paths[present[j]]), "reason": str(err)}
        for j, err in enumerate(errors)
        if err is not None
    ]
    order = {str(s): k for k, s in enumerate(sample_ids)}
    skipped.sort(key=lambda row: order[row["sample_id"]])
    good = np.asarray([j for j, err in enumerate(errors) if err is None], dtype=np.int64)
    kept = np.asarray(present, dtype=np.int64)[good] if good.size else np.zeros(0, np.int64)
    if out is not None:
        images = out if good.size == len(present) else out[good]
    elif good.size:
        shapes = {native[j].shape for j in good}
        if len(shapes) > 1:
            raise ValueError(f"radiographs of different shapes {sorted(shapes)[:3]}; set image_size")
        images = np.stack([native[j] for j in good]).astype(np.uint8, copy=False)
    else:
        images = np.zeros((0, 0, 0), np.uint8)
    return images, kept, skipped


def radiograph_inputs(
    sample_ids: Sequence[str],
    read: Callable[[list[str], bool], tuple[np.ndarray, np.ndarray, list[dict[str, str]]]],
    *,
    skip_unreadable: bool,
) -> tuple[np.ndarray, list[dict[str, str]], Callable[[], np.ndarray]]:
    """What a chest X-ray adapter needs to build its task from the samples' radiographs.

    ``read(ids, skip_unreadable)`` returns (images, kept indices, skipped files), as
    :func:`load_radiographs` does. Readability is known only by reading, so with
    ``skip_unreadable`` every image is read now and the task keeps only the readable samples;
    otherwise nothing is read until a learner asks for the images.

    Returns:
        (indices of the samples to keep, the skipped files with their reasons, load_images).
    """
    ids = list(sample_ids)
    if skip_unreadable:
        images, kept, skipped = read(ids, True)
        return kept, skipped, lambda: images
    return np.arange(len(ids)), [], lambda: read(ids, False)[0]
