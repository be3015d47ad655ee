"""Config dataclasses <-> plain dicts, so checkpoints and run files store configs
as data (JSON/TOML-friendly, loadable with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from labrig.models.errors import ModelConfigError

T = TypeVar("T")


OMIT_DEFAULT = {"omit_default": True}
"""Field metadata: leave the field out of `config_to_dict` while it has its default, so a
field added later keeps the dicts (and the job keys hashed from them) of older configs."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """Nested dataclass -> dict of plain values (tuples become lists); fields marked
    `OMIT_DEFAULT` appear only when they differ from their default."""

    def keep(value: Any, f: dataclasses.Field) -> bool:
        if not f.metadata.get("omit_default"):
            return True
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        return getattr(value, f.name) != default

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if keep(value, f)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return config_from_dict(arg, value, where)
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=False))
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build config dataclass `cls` from `config_to_dict` output; unknown keys are an error."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ModelConfigError(f"{where or cls.__name__}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)
