"""Bench profiles: TOML files that say which devices make up a bench and its geometry.

A profile is named (an embedded one such as ``sim``) or a file path. It may
``extends`` a parent, which it is deep-merged over, so a lab keeps one base
profile and small variants. Validation here covers what the bench itself needs
(``[bench]``, ``[optics]``, the device roles and kinds); each device validates
its own keys in its ``from_config``. Every error names the key and the file that
set it, because a profile is edited by hand at the bench.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from drivers.config import Section
from drivers.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "BUILD_ORDER",
    "ILLUMINATIONS",
    "ROLES",
    "Profile",
    "embedded_profiles",
    "example_profiles",
    "load_profile",
]

#: the device roles a bench knows, in the order the bench builds and opens them
#: (light source first, so it is known and off before anything else is touched)
BUILD_ORDER: tuple[str, ...] = ("laser", "shutter", "input", "filter", "camera")
ROLES = frozenset(BUILD_ORDER)
ILLUMINATIONS = ("coherent", "incoherent")
DEFAULT_PROFILE = "sim"

_PACKAGE = "labrig.profiles"
_EXAMPLES = "examples"


# -- locating and parsing -----------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    """Where one profile file lives: embedded (by name) or on disk."""

    source: str  # shown in errors: the path, or "<embedded sim>"
    ident: str  # for cycle detection
    path: Path | None  # on-disk file, or None for embedded
    name: str | None  # embedded name, or None


def embedded_profiles() -> list[str]:
    """Names of the profiles shipped inside labrig (``sim``, ``sim-ideal``, ...)."""
    folder = resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def example_profiles() -> dict[str, Path]:
    """Example profiles of real rigs shipped with labrig (``rig-example``: GenICam camera,
    slmsuite SLMs, SC10 shutter, OBIS laser), by name: copy one and edit it for your rig."""
    folder = Path(str(resources.files(_PACKAGE) / _EXAMPLES))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def _is_path(ref: str | Path) -> bool:
    if isinstance(ref, Path):
        return True
    return ref.endswith(".toml") or "/" in ref or "\\" in ref or Path(ref).is_file()


def _locate(ref: str | Path, base_dir: Path | None) -> _Ref:
    """Resolve a name or path; relative paths are relative to `base_dir` (the referring file)."""
    if _is_path(ref):
        path = Path(ref).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return _Ref(source=str(path), ident=f"file:{path.resolve()}", path=path, name=None)
    name = str(ref)
    if name not in embedded_profiles():
        raise ConfigError(
            f"unknown bench profile {name!r}; embedded profiles: {', '.join(embedded_profiles())} "
            "(or give the path of a .toml file)"
        )
    return _Ref(source=f"<embedded {name}>", ident=f"embedded:{name}", path=None, name=name)


def _read_text(ref: _Ref) -> str:
    try:
        if ref.path is not None:
            return ref.path.read_text(encoding="utf-8")
        return (resources.files(_PACKAGE) / f"{ref.name}.toml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{ref.source}: bench profile file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ref.source}: cannot read bench profile: {exc}") from exc


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        match = _AT_LINE.search(message)
        if match:
            message = message[: match.start()]
            line, col = line or int(match.group(1)), col or int(match.group(2))
        where = f"line {line}, column {col}" if line else "somewhere"
        raise ConfigError(f"{source}: invalid TOML at {where}: {message}") from exc


# -- extends: deep merge with provenance ----------------------------------------------------


def _mark(origins: dict[str, str], key: str, value: Any, source: str) -> None:
    """Record that `source` set `key` (and everything under it)."""
    for stale in [k for k in origins if k.startswith(key + ".")]:
        del origins[stale]
    origins[key] = source
    if isinstance(value, Mapping):
        for k, v in value.items():
            _mark(origins, f"{key}.{k}", v, source)


def _merge(
    base: dict[str, Any], over: Mapping[str, Any], origins: dict[str, str], source: str, prefix: str = ""
) -> dict[str, Any]:
    """`over` deep-merged onto `base`: tables merge recursively, other values replace."""
    out = dict(base)
    for k, v in over.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v, origins, source, key)
        else:
            out[k] = copy.deepcopy(v)
            _mark(origins, key, v, source)
    return out


def _load_chain(
    ref: _Ref, stack: tuple[_Ref, ...]
) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
    """Data, per-key origins and the chain of sources (root parent first) for `ref`."""
    if any(r.ident == ref.ident for r in stack):
        cycle = " -> ".join(r.source for r in (*stack, ref))
        raise ConfigError(f"{stack[-1].source}: bench.extends: cycle of profiles: {cycle}")
    data = _parse(_read_text(ref), ref.source)
    bench = data.get("bench")
    parent = bench.pop("extends", None) if isinstance(bench, dict) else None
    if parent is None:
        origins: dict[str, str] = {}
        for k, v in data.items():
            _mark(origins, k, v, ref.source)
        return data, origins, (ref.source,)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{ref.source}: bench.extends: expected a profile name or path, got {parent!r}")
    base_dir = ref.path.parent if ref.path is not None else None
    try:
        parent_ref = _locate(parent, base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{ref.source}: bench.extends: {exc}") from None
    base, origins, chain = _load_chain(parent_ref, (*stack, ref))
    return _merge(base, data, origins, ref.source), origins, (*chain, ref.source)


# -- sections whose errors name the file that set the key ------------------------------------


class _TracedSection(Section):
    """A `Section` whose errors name the file a key came from (profiles that `extends`)."""

    def __init__(
        self, data: Mapping[str, Any], where: str, source: str, origins: Mapping[str, str]
    ) -> None:
        super().__init__(data, where, source)
        self._origins = origins

    def error(self, name: str, message: str) -> ConfigError:
        key = self.key(name)
        origin = self._origins.get(key, self.source)
        where = origin if origin == self.source else f"{origin} (extended by {self.source})"
        return ConfigError(f"{where}: {key}: {message}")

    def section(self, name: str, required: bool = True) -> Section:
        plain = super().section(name, required)
        return _TracedSection(plain.data, plain.where, self.source, self._origins)


# -- the profile ------------------------------------------------------------------------------


@dataclass
class Profile:
    """A loaded, merged and validated bench profile."""

    name: str
    source: str
    data: dict[str, Any]
    chain: tuple[str, ...] = ()
    """Sources merged into this profile, the root parent first and this file last."""
    _origins: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Section:
        """A fresh `Section` over the whole profile; its errors name key and file."""
        return _TracedSection(self.data, "", self.source, self._origins)

    def origin(self, key: str) -> str:
        """The file that set a dotted key (after `extends`), else this profile's source."""
        return self._origins.get(key, self.source)

    def device_roles(self) -> list[str]:
        """Roles present in ``[devices]``, in the order the bench builds them."""
        devices = self.data.get("devices", {})
        return [role for role in BUILD_ORDER if role in devices]

    def device_kind(self, role: str) -> str:
        return self.data["devices"][role]["kind"]

    def as_dict(self) -> dict[str, Any]:
        """A deep copy of the merged settings, safe to store or modify."""
        return copy.deepcopy(self.data)

    def to_toml_snapshot(self) -> str:
        """The merged profile as self-contained TOML (no ``extends``), stored with runs."""
        header = [
            f"# labrig bench profile snapshot: {self.name}",
            f"# merged from: {' <- '.join(reversed(self.chain)) or self.source}",
            "",
        ]
        return "\n".join(header) + _dump_toml(self.data)


def load_profile(name_or_path: str | Path | Profile | None = None) -> Profile:
    """Load a profile by embedded name or path (None: the embedded default ``sim``).

    A bare name (``sim``) is an embedded profile; a name ending in ``.toml``,
    containing a path separator, or naming an existing file is read from disk.
    A `Profile` is returned as is, so callers can accept either.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    ref = _locate(DEFAULT_PROFILE if name_or_path is None else name_or_path, None)
    data, origins, chain = _load_chain(ref, ())
    profile = Profile(name="", source=ref.source, data=data, chain=chain, _origins=origins)
    profile.name = _validate(profile.root)
    return profile


def _validate(root: Section) -> str:
    """Check what the bench needs; return the bench name."""
    for table in ("bench", "optics", "devices"):
        if table not in root:
            raise root.error(table, f"required table [{table}] is missing")
    bench = root.section("bench")
    name = bench.get_str("name")
    if not name.strip():
        raise bench.error("name", "must not be empty")
    bench.get_str("description", "")

    optics = root.section("optics")
    for key in ("wavelength_m", "focal1_m", "focal2_m"):
        optics.get_float(key, positive=True)
    optics.get_str("illumination", choices=ILLUMINATIONS)

    devices = root.section("devices")
    for role in devices.data:
        if role not in ROLES:
            raise devices.error(
                role, f"unknown device role {role!r}; roles are {', '.join(BUILD_ORDER)}"
            )
        device = devices.section(role)
        kind = device.get_str("kind")
        if not kind:
            raise device.error("kind", "must name a device kind")
    if "camera" not in devices:
        raise devices.error("camera", "required: a bench needs a [devices.camera] table")
    return name


# -- a small TOML writer (tomllib reads only) ----------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):
        return v.isoformat()
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML: {v!r}")


def _dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    scalars = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    lines = []
    if prefix and (scalars or not any(isinstance(v, Mapping) for v in data.values())):
        lines.append(f"[{prefix}]")
    lines.extend(scalars)
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in data.items():
        if isinstance(v, Mapping):
            sub = _dump_toml(v, f"{prefix}.{_key(k)}" if prefix else _key(k))
            text += ("\n" if text else "") + sub
    return text
