"""How each strategy is drawn: its colour and line, and which ones stand out in a figure.

- Random is black dashed and the oracle grey dash-dotted; the built-in strategies have their
  :data:`KNOWN_COLOURS`; any other strategy a :data:`PALETTE` colour and a :data:`DASHES`
  style picked by a hash of its spec, so that its look does not depend on what else is drawn.
  An active run is dotted, in its static twin's colour.
- The *highlighted* strategies (the user's own, and those ``--highlight`` names; see
  :func:`benchmark.results.names.highlighted`) are drawn in the reserved
  :data:`HIGHLIGHT_COLOURS`, which no other strategy gets, thicker, on top, with their bands,
  and first in the legend.
- With many strategies, the others beyond the best :data:`EMPHASISED` and the baselines fade.

Every colour is dark enough to read on white: its relative luminance is at most
:data:`MAX_LUMINANCE` (no near-white pastel), and the palettes are colour-blind-safe
qualitative ones (Paul Tol's "muted", and deep tones for the highlight).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from matplotlib.colors import to_rgb
from matplotlib.typing import ColorType

from benchmark.results import names as plugin_names
from benchmark.results.leaderboard import ORACLE, RANDOM


@dataclass(frozen=True)
class Style:
    color: ColorType
    linestyle: str | tuple[int, tuple[int, ...]]
    linewidth: float
    zorder: float
    alpha: float = 1.0
    #: Whether the curve's confidence band is drawn.
    band: bool = True
    #: A highlighted strategy: reserved colour, thick, on top, first in the legend.
    highlighted: bool = False


#: Colours of the built-in strategies, by spec: a strategy looks the same in every figure and
#: every run, whatever else is plotted beside it.
KNOWN_COLOURS: dict[str, str] = {
    "loss": "#1f77b4",
    "eq2[hinge=0.3]": "#d62728",
    "eq2[hinge=None]": "#ff7f0e",
    "entropy": "#9467bd",
    "bald": "#2ca02c",
    "cleanlab[method=self_confidence]": "#8c564b",
    "cleanlab[method=normalized_margin]": "#e377c2",
    "cleanlab[method=confidence_weighted_entropy]": "#17becf",
}
#: Colours of other strategies that are not highlighted, picked by a hash of the spec: Paul
#: Tol's colour-blind-safe "muted" scheme without its two light tones (sand, pale cyan).
PALETTE: tuple[str, ...] = ("#CC6677", "#117733", "#44AA99", "#999933", "#882255", "#AA4499", "#332288")
#: The highlighted strategies' colours, in order: deep tones no other strategy is drawn in
#: (teal, indigo, goldenrod, magenta, rust), each line with a white edge that sets it apart.
HIGHLIGHT_COLOURS: tuple[str, ...] = ("#00787A", "#3F007D", "#B8860B", "#C51B7D", "#A63603")
#: Line styles of other strategies, by a second hash, so two that share a colour still differ.
DASHES: tuple[str | tuple[int, tuple[int, ...]], ...] = ("-", (0, (6, 2)), (0, (2, 1)), (0, (6, 2, 1, 2)))
#: The most a colour's relative luminance may be (white is 1): no line fades into the page.
MAX_LUMINANCE = 0.45
#: Suffix of the active twin of a strategy (see :class:`benchmark.config.CellConfig`).
ACTIVE_MARK = plugin_names.ACTIVE_MARK
#: Above this many strategies besides the baselines and the highlighted ones, only the
#: :data:`EMPHASISED` best of them and the baselines are drawn strong; the rest fade.
MAX_STRONG = 6
EMPHASISED = 3
HIGHLIGHT_WIDTH = 2.2
FADED_ALPHA = 0.45


def luminance(colour: ColorType) -> float:
    """The relative luminance (WCAG 2) of ``colour``: 0 for black, 1 for white."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = to_rgb(colour)
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def _is_baseline(label: str) -> bool:
    return plugin_names.base_name(label) in (RANDOM, ORACLE)


def strategy_style(spec: str) -> Style:
    """The style of one strategy, a function of its spec alone (see the module's docstring)."""
    static, suffix = plugin_names.split_active(spec)
    active = bool(suffix)
    base = plugin_names.base_name(static)
    if base == RANDOM:
        return Style("black", ":" if active else "--", 1.6, 3.0)
    if base == ORACLE:
        return Style("0.45", "-.", 1.6, 3.0)
    digest = hashlib.sha256(static.encode()).digest()
    colour = KNOWN_COLOURS.get(static) or PALETTE[digest[0] % len(PALETTE)]
    dash = DASHES[0] if static in KNOWN_COLOURS else DASHES[digest[1] % len(DASHES)]
    return Style(colour, ":" if active else dash, 1.3, 2.0)


def styles(
    strategies: Iterable[str], highlight: Collection[str] = (), user: Collection[str] | None = None
) -> dict[str, Style]:
    """The style of each strategy of a report: :func:`strategy_style`, except that the
    highlighted ones (the user's, ``user`` or found from the registry when None, and those
    ``highlight`` names) take the :data:`HIGHLIGHT_COLOURS` in the order of their specs
    (an active run its static twin's), then dashes when there are more of them than colours."""
    labels = sorted({str(s) for s in strategies})
    strong = plugin_names.highlighted(labels, highlight, user)
    statics = sorted({plugin_names.split_active(s)[0] for s in strong})
    out = {}
    for s in labels:
        st = strategy_style(s)
        if s in strong:
            static, suffix = plugin_names.split_active(s)
            i = statics.index(static)
            n = len(HIGHLIGHT_COLOURS)
            colour = st.color if _is_baseline(s) else HIGHLIGHT_COLOURS[i % n]
            dash = st.linestyle if suffix or _is_baseline(s) else DASHES[i // n % len(DASHES)]
            st = replace(st, color=colour, linestyle=dash, linewidth=HIGHLIGHT_WIDTH, zorder=5.0)
            st = replace(st, highlighted=True)
        out[s] = st
    return out


def emphasis(strategies: Sequence[str]) -> set[str]:
    """The strategies drawn strong: every one when few, else the baselines and the first
    :data:`EMPHASISED` others (``strategies`` come best first)."""
    others = [s for s in strategies if not _is_baseline(s)]
    if len(others) <= MAX_STRONG:
        return set(strategies)
    return {s for s in strategies if _is_baseline(s)} | set(others[:EMPHASISED])


def strategy_styles(
    order: Sequence[str],
    highlight: Collection[str] = (),
    user: Collection[str] | None = None,
    base: dict[str, Style] | None = None,
) -> dict[str, Style]:
    """How each strategy of one figure is drawn, ``order`` best first: the highlighted ones
    strong (``base``: the report's :func:`styles`; made from ``highlight`` and ``user`` when
    None); of the others, with many, only the baselines and the best :data:`EMPHASISED` keep
    their style and band, the rest are drawn thin and faded, below."""
    base = styles(order, highlight, user) if base is None else base
    plain = [s for s in order if not base[s].highlighted]
    strong = emphasis(plain)
    out = {}
    for s in order:
        st = base[s]
        if not st.highlighted and s not in strong:
            st = replace(st, linewidth=0.9, alpha=FADED_ALPHA, zorder=1.5, band=False)
        out[s] = st
    return out


def legend_order(order: Sequence[str], drawn: dict[str, Style]) -> list[str]:
    """``order`` with the highlighted strategies first (each group keeps its order)."""
    return [s for s in order if drawn[s].highlighted] + [s for s in order if not drawn[s].highlighted]


def faded(drawn: dict[str, Style]) -> bool:
    """Whether some strategy of a figure is drawn faded."""
    return any(st.alpha < 1 for st in drawn.values())
