"""Typed configs with presets and `key=value` overrides.

A config is a dataclass; presets are dicts of overrides applied on top of the paper defaults; the user's
key=value pairs come last. Unknown keys and values of the wrong type are InputErrors naming the key.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterable, TypeVar

from .errors import InputError

C = TypeVar("C")


def _convert(key: str, raw: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Literal:
        if raw not in typing.get_args(typ):
            raise InputError(f"{key}={raw!r}: expected one of {', '.join(map(str, typing.get_args(typ)))}", path="config")
        return raw
    if origin in (tuple,):
        parts = raw.split(",")
        args = typing.get_args(typ)
        return tuple(_convert(key, p, args[0]) for p in parts)
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        return str(raw)
    except ValueError:
        raise InputError(f"{key}={raw!r}: expected {getattr(typ, '__name__', typ)}", path="config") from None


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_overrides(cls: type, pairs: Iterable[str]) -> dict[str, Any]:
    """['mmm=0.3', 'loss=vlm'] -> {'mmm': 0.3, 'loss': 'vlm'}, typed by the dataclass fields of cls."""
    types = field_types(cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"{pair!r}: expected key=value", path="config")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in types:
            raise InputError(f"unknown key {key!r} (known: {', '.join(sorted(types))})", path="config")
        out[key] = _convert(key, raw.strip(), types[key])
    return out


def build(cls: type[C], presets: dict[str, dict[str, Any]], preset: str | None, overrides: dict[str, Any]) -> C:
    if preset is not None and preset not in presets:
        raise InputError(f"unknown preset {preset!r} (known: {', '.join(presets)})", path="config")
    values = dict(presets.get(preset, {}) if preset else {})
    values.update(overrides)
    if preset is not None and "preset" in field_types(cls):
        values["preset"] = preset
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
