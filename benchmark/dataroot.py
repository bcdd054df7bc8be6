"""Where data files are looked for: ``--data-root``, then ``$ALCBENCH_DATA``, then a user cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class DataNotFoundError(FileNotFoundError):
    """A data file is missing; the message says where it was looked for and how to get it."""


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alcbench"


def data_roots(data_root: Path | str | None = None) -> list[Path]:
    """The folders searched for data, in order."""
    roots: list[Path] = []
    if data_root is not None:
        roots.append(Path(data_root).expanduser())
    env = os.environ.get("ALCBENCH_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(user_cache_dir() / "data")
    return roots


def find_data_file(
    candidates: list[str],
    *,
    data_root: Path | str | None,
    what: str,
    how_to_get: str,
    extra: list[Path] | None = None,
) -> Path:
    """The first existing ``root / candidate`` over the data roots (then ``extra`` paths).

    Raises:
        DataNotFoundError: naming every path looked at and how to obtain the file.
    """
    looked: list[Path] = []
    for root in data_roots(data_root):
        for rel in candidates:
            path = root / rel
            looked.append(path)
            if path.is_file():
                return path
    for path in extra or []:
        looked.append(path)
        if path.is_file():
            return path
    where = "\n  ".join(str(p) for p in looked)
    raise DataNotFoundError(
        f"{what} not found. Looked for:\n  {where}\n{how_to_get}\n"
        "Point --data-root (or $ALCBENCH_DATA) at the folder that holds it."
    )


def find_image_dirs(
    data_root: Path | str | None, candidates: Sequence[str], *, what: str, how_to_get: str
) -> list[Path]:
    """Every existing folder ``root / candidate`` over the data roots, in search order.

    Candidates may hold glob patterns (``noisy_pneumonia/nih/images_*/images``): NIH ships its
    images split over twelve folders.

    Raises:
        DataNotFoundError: none exists; the message lists every place looked and how to get them.
    """
    found: list[Path] = []
    looked: list[str] = []
    for root in data_roots(data_root):
        for rel in candidates:
            looked.append(str(root / rel))
            matches = sorted(root.glob(rel)) if any(ch in rel for ch in "*?[") else [root / rel]
            found += [p for p in matches if p.is_dir() and p not in found]
    if not found:
        where = "\n  ".join(looked)
        raise DataNotFoundError(
            f"{what} not found. Looked for the folders:\n  {where}\n{how_to_get}\n"
            "Point --data-root (or $ALCBENCH_DATA) at the folder that holds them."
        )
    return found
