"""Outputs rewritten only when what they show would change: keys, a manifest, writes that compare.

A figure is drawn again only when its *key* changed: the sha256 (:func:`digest`) of exactly the
data it draws (the frames and arrays handed to the drawing function, serialised with their
column names and values, whatever dtype holds them) and of :func:`code_fingerprint` of the
modules that draw it
(their source, and matplotlib's version). A :class:`Manifest` (JSON, sorted keys, paths relative
to the results folder, no timestamps or absolute paths: the same results give the same bytes)
maps each output file to its key; a figure whose key matches and whose PNG, SVG and PDF all
exist is left as it is. Text outputs (pages, tables) are compared with the file before writing
(:func:`write_if_changed`), so the mtimes of unchanged files stay. The manifest also keeps the
key of everything a report reads (its ``inputs``) and the sha256 of each text output: when both
match, nothing needs to be computed at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.atomic import write_bytes

#: The manifest's file name (in a report's ``plots/`` and in a site's folder).
MANIFEST = "manifest.json"
#: Suffixes that make up one figure: the PNG and the vector files written beside it.
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_PACKAGE = Path(__file__).resolve().parent.parent


def code_fingerprint(*modules: str) -> str:
    """The sha256 of the source files of ``modules`` (dotted names under ``benchmark``; a
    package stands for every module in it) and of matplotlib's version: a figure drawn by
    them is drawn again when this changes. Read once per process (the code it runs, not later
    edits on disk). Tests monkeypatch it to stand for a code change."""
    return _fingerprint(tuple(modules))


@cache
def _fingerprint(modules: tuple[str, ...]) -> str:
    import matplotlib

    files: set[Path] = set()
    for name in modules:
        package = _PACKAGE.joinpath(*name.split(".")[1:])
        if (package / "__init__.py").is_file():
            files.update(package.rglob("*.py"))
        else:
            files.add(package.with_suffix(".py"))
    h = hashlib.sha256(f"matplotlib {matplotlib.__version__}\n".encode())
    for path in sorted(files):
        h.update(f"{path.relative_to(_PACKAGE).as_posix()}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _column(col: pd.Series) -> tuple[str, bytes]:
    """A column's kind and values, the same whatever dtype holds them: numbers (and booleans)
    as float64 with NaN for missing, text by pandas' hash of each value (object and ``str``
    columns alike)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return "number", np.where(np.isnan(values), np.nan, values).tobytes()
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    kind = "text" if col.dtype == object or pd.api.types.is_string_dtype(col) else str(col.dtype)
    try:
        hashed = pd.util.hash_pandas_object(col, index=False)
    except TypeError:  # unhashable cells (lists, dicts): their repr
        hashed = pd.util.hash_pandas_object(col.map(repr), index=False)
    return kind, hashed.to_numpy(np.uint64).tobytes()


def frame_digest(df: pd.DataFrame) -> bytes:
    """A stable serialisation of ``df``'s content, in column order: each column's name, kind
    and values (:func:`_column`); the index is left out."""
    h = hashlib.sha256(f"{df.shape}".encode())
    for i, name in enumerate(df.columns):
        kind, data = _column(df.iloc[:, i])
        h.update(f"\0{name}\0{kind}\0".encode())
        h.update(hashlib.sha256(data).digest())
    return h.digest()


def _feed(h: Any, part: object) -> None:
    """Each part with a type tag and a length, so that no two different sequences collide."""
    if isinstance(part, pd.DataFrame):
        h.update(b"F" + frame_digest(part))
    elif isinstance(part, pd.Series):
        h.update(b"S" + frame_digest(part.to_frame()))
    elif isinstance(part, np.ndarray):
        data = np.ascontiguousarray(part)
        h.update(f"A{data.dtype.str}{data.shape}".encode())
        h.update(data.tobytes() if data.dtype != object else repr(data.tolist()).encode())
    elif isinstance(part, dict):
        h.update(f"D{len(part)}".encode())
        for k in sorted(part, key=str):
            _feed(h, str(k))
            _feed(h, part[k])
    elif isinstance(part, (list, tuple)):
        h.update(f"L{len(part)}".encode())
        for p in part:
            _feed(h, p)
    elif isinstance(part, bytes):
        h.update(f"B{len(part)}:".encode() + part)
    else:  # str, numbers, None, frozen dataclasses: their repr
        text = (part if isinstance(part, str) else repr(part)).encode()
        h.update(f"{type(part).__name__}{len(text)}:".encode() + text)


def digest(*parts: object) -> str:
    """The sha256 (hex) of ``parts``: strings, numbers, arrays, frames, and lists, tuples and
    dicts of them (dicts by sorted key)."""
    h = hashlib.sha256()
    for part in parts:
        _feed(h, part)
    return h.hexdigest()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Writes ``data`` to ``path`` (atomically) unless the file already holds exactly these
    bytes; whether it wrote."""
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_bytes(path, data)
    return True


def figure_files(png: Path) -> list[Path]:
    """The PNG and the SVG and PDF beside it."""
    return [png.with_suffix(s) for s in FIGURE_SUFFIXES]


class Manifest:
    """The keys of a folder's outputs, read from ``path`` and written back by :meth:`save`.

    Holds the keys the previous run left (to compare with) and those of this run
    (:meth:`record`): outputs no longer produced drop out. Paths are relative to ``root``.
    """

    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.root = Path(path), Path(root)
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                old = {}
        except (OSError, ValueError):
            old = {}
        self.old_inputs: str | None = old.get("inputs")
        self.old_files: dict[str, str] = dict(old.get("files") or {})
        self.old_pages: dict[str, str] = dict(old.get("pages") or {})
        self.inputs: str | None = None
        self.files: dict[str, str] = {}
        self.pages: dict[str, str] = {}

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def up_to_date(self, inputs: str) -> bool:
        """Whether the last run read the same ``inputs`` and left every output in place: each
        drawn file exists and each text output still has the bytes it wrote."""
        if self.old_inputs != inputs or not (self.old_files or self.old_pages):
            return False
        if not all((self.root / rel).is_file() for rel in self.old_files):
            return False
        for rel, sha in self.old_pages.items():
            try:
                if hashlib.sha256((self.root / rel).read_bytes()).hexdigest() != sha:
                    return False
            except OSError:
                return False
        return True

    def keep_all(self, inputs: str) -> list[Path]:
        """Takes the last run's outputs as this run's (when :meth:`up_to_date`); their paths."""
        self.inputs, self.files, self.pages = inputs, dict(self.old_files), dict(self.old_pages)
        return self.outputs()

    def fresh(self, files: Sequence[Path], key: str) -> bool:
        """Whether the last run drew ``files`` from ``key`` and they are all still there."""
        return all(self.old_files.get(self.rel(f)) == key and Path(f).is_file() for f in files)

    def record(self, files: Sequence[Path], key: str) -> None:
        for f in files:
            self.files[self.rel(f)] = key

    def record_page(self, path: Path, data: bytes) -> None:
        self.pages[self.rel(path)] = hashlib.sha256(data).hexdigest()

    def forget(self, files: Iterable[Path]) -> None:
        """Drops ``files`` (about to be drawn again) and the inputs key from the manifest on
        disk first, so that a run that stops half-way never leaves a key beside a file drawn
        from other data."""
        gone = {self.rel(f) for f in files}
        if not gone or (not gone & set(self.old_files) and self.old_inputs is None):
            return
        for rel in gone:
            self.old_files.pop(rel, None)
        self.old_inputs = None
        if self.path.is_file():
            write_if_changed(self.path, self._dump(None, self.old_files, self.old_pages))

    def outputs(self) -> list[Path]:
        return [self.root / rel for rel in sorted({*self.files, *self.pages})]

    def save(self) -> bool:
        """Writes this run's keys (only if they differ from the file's); whether it wrote."""
        return write_if_changed(self.path, self._dump(self.inputs, self.files, self.pages))

    @staticmethod
    def _dump(inputs: str | None, files: dict[str, str], pages: dict[str, str]) -> bytes:
        content = {"format": 1, "inputs": inputs, "files": files, "pages": pages}
        return (json.dumps(content, sort_keys=True, indent=1) + "\n").encode()


def draw_if_stale(manifest: Manifest | None, png: Path, key: str, draw: Callable[[], object]) -> list[Path]:
    """Calls ``draw`` (which writes ``png`` and its SVG and PDF) unless ``manifest`` says they
    are fresh for ``key``; records the key; returns the files drawn (none when fresh)."""
    files = figure_files(png)
    if manifest is not None and manifest.fresh(files, key):
        manifest.record(files, key)
        return []
    if manifest is not None:
        manifest.forget(files)
    draw()
    if manifest is not None:
        manifest.record(files, key)
    return files


class Written(list[Path]):
    """The files a report or site wrote (a list, in order), with those it left as they were in
    :attr:`kept`; :meth:`summary` counts both."""

    def __init__(self, paths: Iterable[Path] = (), kept: Iterable[Path] = (), what: str = "report") -> None:
        super().__init__(paths)
        written = set(self)
        self.kept = [p for p in kept if p not in written]
        self.what = what

    def __iadd__(self, other: Iterable[Path]) -> Written:  # type: ignore[override,misc]
        more = list(other)
        self.extend(more)
        written = set(self)
        self.kept = [p for p in [*self.kept, *getattr(other, "kept", [])] if p not in written]
        return self

    def summary(self) -> str:
        """``"report: 3 figures redrawn, 38 up to date; 2 other files written, 4 unchanged"``
        (a figure is its PNG with the SVG and PDF beside it)."""

        def count(paths: Sequence[Path]) -> tuple[int, int]:
            figures = sum(1 for p in paths if p.suffix == ".png")
            return figures, sum(1 for p in paths if p.suffix not in FIGURE_SUFFIXES)

        (fw, ow), (fk, ok) = count(self), count(self.kept)
        verb = "copied" if self.what == "site" else "redrawn"
        return f"{self.what}: {fw} figures {verb}, {fk} up to date; {ow} other files written, {ok} unchanged"


def environment_versions() -> str:
    """The versions of the libraries a report's numbers come from."""
    import scipy

    return f"numpy {np.__version__}, pandas {pd.__version__}, scipy {scipy.__version__}"
