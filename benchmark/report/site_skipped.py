"""The static site's page of failed and skipped cells (``skipped.html``: one entry per distinct
reason, with its count, the settings it hit and a folded list of its cells), and the rule that
keeps a machine's absolute paths off every page of the site (:func:`scrub_paths`).

A run's ``error`` says where it looked for data ("Looked for:\\n  /root/.cache/alcbench/data/..."):
useful to the person who ran it, noise (and a leak of their folders) to a reader of the site.
The site rewrites each absolute path into a form relative to a named place, the tables keep the
message as it was:

- under a data root: ``<data root>/noisy_pneumonia/...``. The data roots are the ones this
  machine searches (``--data-root`` is not known here, ``$ALCBENCH_DATA`` is) and the ones a
  message reveals: a "Looked for" list names every candidate under every root, the user cache's
  ``data`` folder last, so a prefix that holds every candidate the cache's list holds is a root;
- under a user cache (this user's :func:`benchmark.dataroot.user_cache_dir`, or any
  ``.../.cache/alcbench``): ``<user cache>/...``;
- under the project folder: ``<project>/...``; under the home folder: ``~/...``; under the
  temporary folder: ``<tmp>/...``;
- any other absolute path below a folder of machine-local files (``/work``, ``/home``, ``/mnt``,
  ``/data``, ...): ``…/`` and its last two components.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from benchmark.dataroot import data_roots, user_cache_dir
from benchmark.results.leaderboard import group_key

#: Top-level folders whose absolute paths are machine-local, rewritten even when no known
#: place holds them.
LOCAL_TOPS = frozenset(
    "work home root Users tmp mnt media scratch data srv opt var private nfs gpfs lustre".split()
)
#: The labels that stand for the places a path is made relative to.
LABELS = ("<data root>", "<user cache>", "<project>", "<tmp>")

# An absolute path: a "/" that does not continue a word, a URL or a relative path, then
# anything up to a space, a quote or a tag; a trailing full stop, comma, colon or bracket is
# the sentence's.
_PATH = re.compile(r"(?<![\w.~/:\\…-])/[^\s<>\"'`|]*[^\s<>\"'`|.,;:)]")
_CACHE = re.compile(r"^/.*?/\.cache/alcbench(?=/|$)")


def _project_dir() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def machine_prefixes() -> list[tuple[str, str]]:
    """(absolute folder, label) of the places this machine's paths are made relative to,
    longest folder first."""
    places: list[tuple[Path | str | None, str]] = [(user_cache_dir(), "<user cache>")]
    places += [(r, "<data root>") for r in data_roots() if r != user_cache_dir() / "data"]
    places += [(_project_dir(), "<project>"), (Path.home(), "~")]
    places += [(tempfile.gettempdir(), "<tmp>"), ("/tmp", "<tmp>")]
    out: dict[str, str] = {}
    for place, label in places:
        if place is None:
            continue
        for form in {str(place), os.path.realpath(place)}:
            form = form.rstrip("/")
            if form.count("/") >= 1 and form.startswith("/") and form not in out:
                out[form] = label
    return sorted(out.items(), key=lambda kv: (-len(kv[0]), kv[0]))


def _cache_prefix(path: str, caches: Sequence[str]) -> str | None:
    for c in caches:
        if path == c or path.startswith(c + "/"):
            return c
    m = _CACHE.match(path)
    return m.group(0) if m else None


def _inferred_roots(paths: Sequence[str], caches: Sequence[str]) -> list[str]:
    """The data roots a "Looked for" list reveals: prefixes under which every candidate the
    user cache's ``data`` folder was searched for appears as well."""
    tails = set()
    for p in paths:
        c = _cache_prefix(p, caches)
        if c is not None and p.startswith(c + "/data/"):
            tails.add(p[len(c) + len("/data/") :])
    if not tails:
        return []
    votes: dict[str, set[str]] = {}
    for p in paths:
        if _cache_prefix(p, caches) is not None:
            continue
        for t in tails:
            if p.endswith("/" + t) and len(p) > len(t) + 1:
                votes.setdefault(p[: -len(t) - 1], set()).add(t)
    return [root for root, seen in votes.items() if seen == tails and root.startswith("/")]


def scrub_paths(
    text: str, *, escaped: bool = False, prefixes: Iterable[tuple[str, str]] | None = None
) -> str:
    """``text`` with every absolute machine path rewritten relative to a named place (see the
    module's docstring). ``escaped``: ``text`` is HTML, so the labels go in escaped.
    ``prefixes``: the (folder, label) pairs to use instead of :func:`machine_prefixes`."""
    known = list(machine_prefixes() if prefixes is None else prefixes)
    caches = [p for p, label in known if label == "<user cache>"]
    paths = [m.group(0) for m in _PATH.finditer(text)]
    if not paths:
        return text
    known += [(r, "<data root>") for r in _inferred_roots(paths, caches)]
    known.sort(key=lambda kv: -len(kv[0]))

    def rewrite(m: re.Match[str]) -> str:
        path = m.group(0)
        if _after_label(text, m.start()):
            return path  # already relative: "<data root>/nih/..."
        label, rest = _relative(path, known, caches)
        return (html.escape(label) if escaped else label) + rest

    return _PATH.sub(rewrite, text)


def _after_label(text: str, start: int) -> bool:
    """Whether the path at ``start`` follows a label (is relative already)."""
    before = _TRAILING_TAGS.sub("", text[max(0, start - 80) : start])
    return before.endswith(_LABEL_FORMS)


_TRAILING_TAGS = re.compile(r"(?:<[^<>]*>)+$")


_LABEL_FORMS = (*LABELS, *(html.escape(label) for label in LABELS))


def _relative(path: str, known: Sequence[tuple[str, str]], caches: Sequence[str]) -> tuple[str, str]:
    for prefix, label in known:
        if path == prefix or path.startswith(prefix + "/"):
            return label, path[len(prefix) :]
    cache = _cache_prefix(path, caches)
    if cache is not None:
        return "<user cache>", path[len(cache) :]
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in LOCAL_TOPS:
        return "…", "/" + "/".join(parts[1:][-2:]) if len(parts) > 1 else ""
    return "", path


def machine_paths(text: str, prefixes: Iterable[tuple[str, str]] | None = None) -> list[str]:
    """The absolute machine paths left in ``text``: those under a place of
    :func:`machine_prefixes` or a local top-level folder (what :func:`scrub_paths` removes)."""
    known = list(machine_prefixes() if prefixes is None else prefixes)
    left = []
    for m in _PATH.finditer(text):
        path = m.group(0)
        if _after_label(text, m.start()):
            continue
        parts = [p for p in path.split("/") if p]
        under = any(path == p or path.startswith(p + "/") for p, _ in known)
        if under or _CACHE.match(path) or (len(parts) > 1 and parts[0] in LOCAL_TOPS):
            left.append(path)
    return left


# --------------------------------------------------------------------------- skipped.html


def _seeds(seeds: Iterable[object]) -> str:
    """``0–4, 7``: the seeds as runs of consecutive numbers."""
    values = sorted({int(s) for s in seeds})  # type: ignore[call-overload]
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _settings(g: pd.DataFrame) -> dict[tuple[str, str], int]:
    """The (dataset, learner) settings of ``g`` in the leaderboard's order, with their counts."""
    counts: dict[tuple[str, str], int] = {}
    for key in zip(g["dataset"].astype(str), g["learner"].astype(str), strict=True):
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: group_key(kv[0])))


def _cells(g: pd.DataFrame) -> str:
    """The cells of one reason, per setting: its strategies, grouped by the seeds they lost."""
    lines = []
    for dataset, learner in _settings(g):
        cells = g[(g["dataset"].astype(str) == dataset) & (g["learner"].astype(str) == learner)]
        by_seeds: dict[str, list[str]] = {}
        for strategy, s in cells.groupby("strategy", sort=True):
            by_seeds.setdefault(_seeds(s["seed"]), []).append(str(strategy))
        what = "; ".join(
            f"{', '.join(strats)} (seed{'s' * (',' in k or '–' in k)} {k})" for k, strats in by_seeds.items()
        )
        setting = html.escape(f"{dataset} / {learner}")
        lines.append(f"<li><strong>{setting}</strong> ({len(cells)}): {html.escape(what)}</li>")
    return "".join(lines)


def _n_cells(n: int) -> str:
    return f"{n} cell{'s' * (n != 1)}"


def _labelled(text: str) -> str:
    """``text`` escaped, each place's label kept on one line (``<data root>`` does not wrap) and
    a line's indent glued to its first word (a long path wraps inside, not before it)."""
    lines = [html.escape(line) for line in text.split("\n")]
    out = "\n".join("&nbsp;" * (len(ln) - len(ln.lstrip(" "))) + ln.lstrip(" ") for ln in lines)
    for label in LABELS:
        out = out.replace(html.escape(label), f'<span class="label">{html.escape(label)}</span>')
    return out


def skipped_body(runs: pd.DataFrame) -> str:
    """The body of ``skipped.html``: one entry per distinct reason (status and message, its
    paths made relative), most cells first, with the settings it hit and, folded, its cells."""
    bad = runs[runs["status"] != "ok"]
    if not len(bad):
        return "<p>Every cell ran.</p>"
    prefixes = machine_prefixes()
    reasons = ["" if e is None or e != e else str(e) for e in bad["error"]]
    bad = bad.assign(reason=[scrub_paths(e, prefixes=prefixes).strip() for e in reasons])
    groups = sorted(bad.groupby(["status", "reason"], sort=True), key=lambda kv: -len(kv[1]))
    items = []
    for n, ((status, reason), g) in enumerate(groups, 1):
        settings = _settings(g)
        where = ", ".join(f"{d} / {lrn} ({k})" for (d, lrn), k in settings.items())
        folded = "the cell" if len(g) == 1 else f"the {len(g)} cells"
        items.append(
            f'<li id="reason-{n}"><p><strong>{_n_cells(len(g))} {html.escape(str(status))}</strong> in '
            f"{len(settings)} setting{'s' * (len(settings) > 1)}: {html.escape(where)}</p>"
            f"<pre>{_labelled(str(reason) or '(no message)')}</pre>"
            f"<details><summary>{folded}</summary><ul>{_cells(g)}</ul></details></li>"
        )
    return (
        f'<p class="note">{_n_cells(len(bad))} did not run to the end, for {len(groups)} '
        f"reason{'s' * (len(groups) > 1)}. Paths are relative to the data root (where the data "
        "was looked for: --data-root, $ALCBENCH_DATA, then the user cache).</p>"
        '<ol class="reasons">' + "".join(items) + "</ol>"
    )
