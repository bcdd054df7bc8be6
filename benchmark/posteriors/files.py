"""Posteriors supplied by the user as a ``.npy`` file (``--posteriors file.npy``).

This is where outside model outputs enter the suite, so everything is checked here, once, with
messages that name the file and say what was expected and what was found. The learner cache
checks its entries with the same function (:func:`check_posteriors_array`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.plugins import Posteriors

#: Rows must sum to 1 within this absolute tolerance.
ROW_SUM_ATOL = 1e-3


class PosteriorsError(ValueError):
    """A posteriors file is missing, unreadable or does not hold valid posteriors."""


def load_posteriors_file(path: Path, n_samples: int, n_classes: int) -> Posteriors:
    """Read and validate posteriors for a task of ``n_samples`` samples and ``n_classes`` classes.

    Args:
        path: a ``.npy`` file holding either (N, C) posteriors, or (T, N, C) stochastic samples
            of the posterior (MC dropout passes, ensemble members); then ``probs`` is their mean
            over T and ``stochastic`` the samples themselves.
        n_samples, n_classes: N and C of the task, in the task's sample and class order.

    Returns:
        :class:`Posteriors` with float32 ``probs`` (N, C) and ``stochastic`` (T, N, C) or None.

    Raises:
        PosteriorsError: the file is missing or not a plain numeric ``.npy`` array (pickled
            object arrays are refused), has the wrong shape, or holds NaN/inf or negative
            entries, or rows that do not sum to 1 within 1e-3.
    """
    path = Path(path)
    expected = f"(N, C) = ({n_samples}, {n_classes}) or (T, {n_samples}, {n_classes})"
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise PosteriorsError(f"{path}: posteriors file {what}; expected a .npy array of shape {expected}")
    kind = _file_kind(path)
    if kind is not None:  # np.load would call any non-.npy file "pickled data"
        raise PosteriorsError(
            f"{path}: this is {kind}, not a .npy array; expected a .npy array of shape {expected}. "
            "Save posteriors with numpy.save(path, array) from a float array."
        )
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt, truncated, pickled or not .npy at all
        raise PosteriorsError(
            f"{path}: cannot be read as a numeric .npy array of shape {expected} "
            f"({type(exc).__name__}: {exc}). Save posteriors with numpy.save(path, array) "
            "from a float array."
        ) from exc
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for .npz archives
        if hasattr(array, "close"):
            array.close()
        raise PosteriorsError(
            f"{path}: expected a single .npy array of shape {expected}, got an .npz archive"
        )
    values = check_posteriors_array(array, n_samples, n_classes, where=str(path))
    stochastic = values.astype(np.float32) if values.ndim == 3 else None
    probs = values.mean(axis=0) if values.ndim == 3 else values
    return Posteriors(
        probs=probs.astype(np.float32),
        stochastic=stochastic,
        info={"source": str(path), "shape": list(array.shape)},
    )


def check_posteriors_array(
    array: np.ndarray, n_samples: int, n_classes: int, *, where: str, ndim: tuple[int, ...] = (2, 3)
) -> np.ndarray:
    """Check that ``array`` holds posteriors of a task of ``n_samples`` x ``n_classes``.

    The one validation of posteriors, for a user's file and for the learner cache alike: a
    numeric dtype, (N, C) or non-empty (T, N, C) (restricted to the dimensions in ``ndim``),
    finite, >= 0, every row summing to 1 within :data:`ROW_SUM_ATOL`.

    Args:
        where: what holds the array (a file name); every message starts with it.

    Returns:
        The array as float64.

    Raises:
        PosteriorsError: naming ``where``, what was expected, what was found and, for bad
            values, the first offending row.
    """
    shapes = {2: f"(N, C) = ({n_samples}, {n_classes})", 3: f"(T, {n_samples}, {n_classes})"}
    expected = " or ".join(shapes[d] for d in ndim)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise PosteriorsError(f"{where}: expected a float array of shape {expected}, got dtype {array.dtype}")
    if array.ndim not in ndim:
        raise PosteriorsError(
            f"{where}: expected {expected}, got an array with {array.ndim} dimension(s), shape {array.shape}"
        )
    if array.shape[-2:] != (n_samples, n_classes) or (array.ndim == 3 and array.shape[0] == 0):
        raise PosteriorsError(f"{where}: expected {expected}, got {array.shape}")
    values = array.astype(np.float64)
    _check_values(where, values)
    return values


def _check_values(path: str, values: np.ndarray) -> None:
    """NaN/inf, negative entries and row sums, each reported with the first offending row.

    ``values`` is (N, C) or (T, N, C); a row is reported as ``row i`` or ``stochastic draw t, row i``.
    """
    bad = ~np.isfinite(values)
    if bad.any():
        where = _first_row(np.asarray(bad.any(axis=-1)))
        raise PosteriorsError(
            f"{path}: expected finite probabilities, found {int(bad.sum())} NaN or inf "
            f"entr{'y' if bad.sum() == 1 else 'ies'} (first in {where})"
        )
    negative = values < 0
    if negative.any():
        where = _first_row(np.asarray(negative.any(axis=-1)))
        raise PosteriorsError(
            f"{path}: expected probabilities >= 0, found {int(negative.sum())} negative "
            f"entr{'y' if negative.sum() == 1 else 'ies'} (first in {where}, "
            f"min {values.min():.6g})"
        )
    sums = values.sum(axis=-1)
    off = np.abs(sums - 1.0) > ROW_SUM_ATOL
    if off.any():
        first = np.unravel_index(int(np.argmax(off)), off.shape)
        raise PosteriorsError(
            f"{path}: expected every row to sum to 1 (within {ROW_SUM_ATOL:g}), found "
            f"{int(off.sum())} row(s) that do not; first: {_describe(first)} sums to "
            f"{sums[first]:.6g}. Pass softmax probabilities, not logits."
        )


def _first_row(mask: np.ndarray) -> str:
    return _describe(np.unravel_index(int(np.argmax(mask)), mask.shape))


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _file_kind(path: Path) -> str | None:
    """What a file that is not a .npy array looks like ("a text file", "a pickle"), or None
    for a .npy file or an .npz archive (np.load tells those apart itself)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(_NPY_MAGIC) or head.startswith(_ZIP_MAGIC):
        return None
    if head[:1] == b"\x80":
        return "a Python pickle"
    if not head:
        return "an empty file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file of another format"
    if "," in text or "\t" in text:
        return "a text table (CSV?)"
    return "a text file"


def _describe(index: tuple[np.intp, ...]) -> str:
    if len(index) == 1:
        return f"row {int(index[0])}"
    return f"stochastic draw {int(index[0])}, row {int(index[1])}"
