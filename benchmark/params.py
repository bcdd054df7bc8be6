"""Plugin parameters: their declaration (:class:`Param`), and specs, the text that names a
configured plugin (``name`` or ``name[key=value,...]``).

A spec is canonical when it is made from a configured instance (``Plugin.spec``): values
converted to their declared types, keys sorted, defaults left out unless the parameter has a
grid of several values. Tables, cell hashes and cache keys record canonical specs only, so
two spellings of one configuration (``eq2`` and ``eq2[hinge=None]``) are one row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

_SCALAR_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class Param(list[Any]):
    """A declared parameter: the grid values the default suite runs (the first is the default),
    its type and what values are allowed.

    Args:
        grid: the values the default suite runs; the first is the default.
        type: ``bool``, ``int``, ``float`` or ``str`` (inferred from ``grid`` when omitted).
        optional: whether ``None`` is allowed (default: whether ``grid`` holds None).
        low, high: inclusive bounds of a number; ``low_open``/``high_open`` make them strict.
        choices: the only values allowed (for strings, say).
    """

    def __init__(
        self,
        grid: list[Any],
        *,
        type: type | None = None,  # noqa: A002 - the natural name in a declaration
        optional: bool | None = None,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
        choices: tuple[Any, ...] | None = None,
    ) -> None:
        super().__init__(grid)
        if not grid:
            raise TypeError("a parameter needs at least one grid value (the default)")
        self.type = type if type is not None else _infer_type(grid)
        self.optional = any(v is None for v in grid) if optional is None else optional
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.choices = tuple(choices) if choices is not None else None

    @classmethod
    def of(cls, declared: list[Any]) -> Param:
        """``declared`` itself when it is a Param, else the Param a plain list implies."""
        return declared if isinstance(declared, Param) else cls(list(declared))

    def allowed(self) -> str:
        """What values are allowed, in words: ``"an integer in 1..10000"``, ``"a number > 0"``."""
        if self.choices is not None:
            text = "one of " + ", ".join(format_value(c) for c in self.choices)
        else:
            text = _SCALAR_NAMES.get(self.type, "any value") if self.type is not None else "any value"
            if self.type in (int, float):
                if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
                    text += f" in {format_value(self.low)}..{format_value(self.high)}"
                else:
                    if self.low is not None:
                        text += f" {'>' if self.low_open else '>='} {format_value(self.low)}"
                    if self.high is not None:
                        joint = " and" if self.low is not None else ""
                        text += f"{joint} {'<' if self.high_open else '<='} {format_value(self.high)}"
        return text + (" or None" if self.optional else "")

    def check(self, value: Any) -> Any:
        """``value`` converted to the declared type; ValueError when it is not allowed."""
        if value is None:
            if self.optional:
                return None
            raise ValueError("None is not allowed")
        if isinstance(value, np.generic):
            value = value.item()
        kind = self.type
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError("not true or false")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("not an integer")
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                raise ValueError("not an integer")
            value = int(value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("not a number")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("not a finite number")
        elif kind is str:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError("not a string")
            value = value if isinstance(value, str) else format_value(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError("not one of the choices")
        if kind in (int, float):
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                raise ValueError("out of range")
            if self.high is not None and (value >= self.high if self.high_open else value > self.high):
                raise ValueError("out of range")
        return value


def _infer_type(grid: list[Any]) -> type | None:
    """The type a plain list of grid values implies (None: mixed, or only None)."""
    values = [v for v in grid if v is not None]
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return bool
    if any(isinstance(v, bool) for v in values):
        return None
    if all(isinstance(v, int | np.integer) for v in values):
        return int
    if all(isinstance(v, int | float | np.integer | np.floating) for v in values):
        return float
    if all(isinstance(v, str) for v in values):
        return str
    return None


def format_spec(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    inner = ",".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))
    return f"{name}[{inner}]"


def format_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"eq2[hinge=True]"`` -> ``("eq2", {"hinge": True})``; values are parsed as
    int, float, bool or None where they look like one, else kept as strings."""
    spec = spec.strip()
    if "[" not in spec:
        return spec, {}
    if not spec.endswith("]"):
        raise ValueError(f"malformed spec {spec!r}: expected name[key=value,...]")
    name, inner = spec[:-1].split("[", 1)
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in inner.split(","))):
        if "=" not in item:
            raise ValueError(f"malformed parameter {item!r} in {spec!r}: expected key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in params:
            raise ValueError(f"malformed spec {spec!r}: parameter {key} is given twice")
        params[key] = _parse_value(value)
    return name.strip(), params


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def spec_sort_key(spec: str) -> tuple[Any, ...]:
    """Orders specs by name, then by their parameters with numbers compared as numbers
    (``cifar10h[temperature=2]`` before ``cifar10h[temperature=10]``); text that is not a
    spec sorts by itself."""
    try:
        name, params = parse_spec(spec)
    except ValueError:
        return (spec, ())
    return (name, tuple((k, _value_key(v)) for k, v in sorted(params.items())))


def _value_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, float(value))
    return (3, str(value))


def spec_order(specs: Iterable[str]) -> dict[str, int]:
    """Each distinct spec's position when sorted by :func:`spec_sort_key`."""
    return {spec: i for i, spec in enumerate(sorted(set(specs), key=spec_sort_key))}


def readable_spec(spec: str) -> str:
    """A spec as words, for titles and legends: ``"name (k = v, k = v)"``, so that a title wraps
    between words (``"label_margin[doubt_weight=0]"`` -> ``"label_margin (doubt_weight = 0)"``).
    Text that is not a spec stays as it is."""
    try:
        name, params = parse_spec(spec)
    except ValueError:
        return spec
    if not params:
        return name
    return f"{name} (" + ", ".join(f"{k} = {format_value(v)}" for k, v in sorted(params.items())) + ")"


def noise_text(rate: object) -> str:
    """``" (15.4 % noise)"`` for a noise rate of 0.1538; ``""`` when the rate is unknown."""
    try:
        value = float(rate)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f" ({100 * value:.1f} % noise)" if math.isfinite(value) else ""


def changed_params(plugin: Any, *handled: str) -> list[str]:
    """``"k = v"`` for each parameter of ``plugin`` that differs from its default, leaving out
    the ``handled`` ones (those a display name already puts in words)."""
    out = []
    for key, value in sorted(plugin.params.items()):
        grid = plugin.parameters.get(key, [])
        if key not in handled and (not grid or value != grid[0]):
            out.append(f"{key} = {format_value(value)}")
    return out
