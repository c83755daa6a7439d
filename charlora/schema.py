"""Checking a YAML mapping against a tree of frozen dataclasses, naming the dotted key of every problem.

Each field's ``metadata`` (made with :func:`limits`) says what is allowed: ``min``, ``max``,
``multiple_of``, ``choices``, ``pattern``, ``min_items``, ``item_choices``. A problem raises
:class:`~charlora.errors.PipelineError` such as ``params.yaml: 'train.lora.rank' is 300; it must be
at most 256.`` ``X | None`` fields take ``null``; unknown and missing keys are named too.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from charlora.errors import PipelineError


def limits(**kwargs: Any) -> dict[str, Any]:
    """Field metadata: what a value may be (see the module docstring)."""
    return kwargs


def build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """An instance of dataclass ``cls`` from ``raw``, every key checked (``prefix``: the dotted path so far)."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: {where} must be a mapping of keys, got {type(raw).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PipelineError(
            f"{source}: unknown key '{prefix}{unknown[0]}'. Known keys here: {', '.join(sorted(fields))}. "
            "Check the spelling or remove it."
        )
    values = {}
    for name, spec in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            if spec.default is not dataclasses.MISSING:
                values[name] = spec.default
                continue
            raise PipelineError(f"{source}: missing key '{key}'. Add it (see the README's params table).")
        values[name] = _check_value(hints[name], raw[name], key, dict(spec.metadata), source)
    return cls(**values)


def _check_value(hint: Any, value: Any, key: str, limits: dict[str, Any], source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        return _check_value(options[0], value, key, limits, source)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, prefix=f"{key}.", source=source)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise PipelineError(f"{source}: '{key}' must be a list, got {value!r}.")
        if len(value) < limits.get("min_items", 0):
            raise PipelineError(f"{source}: '{key}' needs at least {limits['min_items']} item(s).")
        item_limits = {"choices": limits["item_choices"]} if "item_choices" in limits else {}
        return [_check_scalar(item_type, item, f"{key}[{i}]", item_limits, source) for i, item in enumerate(value)]
    return _check_scalar(hint, value, key, limits, source)


def _check_scalar(hint: type, value: Any, key: str, limits: dict[str, Any], source: str) -> Any:
    if value is None:
        raise PipelineError(f"{source}: '{key}' must not be empty (null).")
    if hint is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 5e-4 as a string; DVC's `-S train.learning_rate=5e-4` writes it so.
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise PipelineError(f"{source}: '{key}' must be of type {hint.__name__}, got {value!r} ({type(value).__name__}).")
    value = float(value) if hint is float else value
    if "choices" in limits and value not in limits["choices"]:
        allowed = ", ".join(str(c) for c in limits["choices"])
        raise PipelineError(f"{source}: '{key}' is {value!r}; allowed values: {allowed}.")
    if "min" in limits and value < limits["min"]:
        raise PipelineError(f"{source}: '{key}' is {value}; it must be at least {limits['min']}.")
    if "max" in limits and value > limits["max"]:
        raise PipelineError(f"{source}: '{key}' is {value}; it must be at most {limits['max']}.")
    if "multiple_of" in limits and value % limits["multiple_of"]:
        raise PipelineError(f"{source}: '{key}' is {value}; it must be a multiple of {limits['multiple_of']}.")
    if "pattern" in limits and not re.fullmatch(limits["pattern"], value):
        raise PipelineError(f"{source}: '{key}' is {value!r}; it must match {limits['pattern']}.")
    return value
