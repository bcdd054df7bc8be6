"""A learner's hyper-parameters declared as a frozen dataclass ``Config``: the field checks and
the coercion of spec values (``"24"`` to 24, ``"false"`` to False, ``""`` to None where the
field is optional) that :class:`benchmark.posteriors.crossfit.CrossFitLearner` builds ``self.config`` with."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import numpy as np

SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def field_type(annotation: Any) -> tuple[type, bool] | None:
    """(scalar type, optional) of an annotation such as ``int`` or ``"str | None"``."""
    if isinstance(annotation, str):
        text = annotation.strip()
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional[") : -1] + " | None"
        parts = [p.strip() for p in text.split("|")]
        optional = "None" in parts
        rest = [p for p in parts if p != "None"]
        if len(rest) == 1 and rest[0] in SCALARS:
            return SCALARS[rest[0]], optional
        return None
    if annotation in SCALARS.values():
        return annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in SCALARS.values() and type(None) in typing.get_args(annotation):
            return args[0], True
    return None


def coerce(value: Any, kind: type, optional: bool) -> Any:
    """``value`` as ``kind``; raises ValueError with the reason."""
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ValueError("may not be None")
    if kind is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("must be true or false")
    if isinstance(value, bool | np.bool_) and kind is not str:
        raise ValueError(f"must be {'an int' if kind is int else 'a number'}, not a boolean")
    if kind is int:
        if isinstance(value, float | np.floating) and not float(value).is_integer():
            raise ValueError("must be an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError("must be an integer") from None
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    return str(value)


def config_fields(cls: type, config: Any) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of ``cls.Config``, checked; TypeError naming what is wrong."""
    where = f"learner {cls.__name__}: Config"
    if not (dataclasses.is_dataclass(config) and isinstance(config, type)):
        raise TypeError(f"{where} must be a dataclass")
    if not config.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{where} must be frozen: @dataclass(frozen=True)")
    fields = dataclasses.fields(config)
    for f in fields:
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{where}.{f.name} needs a default value")
        if field_type(f.type) is None:
            raise TypeError(f"{where}.{f.name}: type {f.type} is not int, float, bool, str or str | None")
    if not any(f.name == "folds" and field_type(f.type) == (int, False) for f in fields):
        raise TypeError(f"{where} needs a field `folds: int`")
    return fields
