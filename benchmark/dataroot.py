"""Where data files are looked for: ``--data-root``, then ``$ALCBENCH_DATA``, then a user cache."""

from __future__ import annotations

import os
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
