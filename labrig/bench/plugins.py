"""Device kinds, found through the ``labrig.devices`` entry-point group.

labrig never imports a driver by name, so a lab adds a driver package without
touching labrig. Anything wrong with a plugin (not installed, fails to import,
not a device) is an error that names the plugin: a silently missing camera
driver costs an afternoon at the bench.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from drivers.base import Device
from drivers.config import Section
from drivers.errors import ConfigError, LabrigError
from drivers.plugin import DeviceContext

__all__ = ["GROUP", "PluginError", "available_kinds", "create_device", "device_class"]

GROUP = "labrig.devices"


class PluginError(ConfigError):
    """A device plugin is installed but broken (import fails, or it is not a device)."""


def _entry_points() -> dict[str, list[metadata.EntryPoint]]:
    found: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=GROUP):
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):  # one dist seen on two paths
            same.append(ep)
    return found


def available_kinds() -> list[str]:
    """Every device kind installed in this environment, sorted."""
    return sorted(_entry_points())


def _describe(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    origin = f", distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"device plugin {ep.name!r} ({ep.value}{origin})"


def _where(key: str | None, source: str | None) -> str:
    parts = [p for p in (source, key) if p]
    return ": ".join(parts) + ": " if parts else ""


def device_class(kind: str, *, key: str | None = None, source: str | None = None) -> type[Device]:
    """The device class registered for `kind`.

    `key` (e.g. ``devices.camera.kind``) and `source` (the profile) only make
    the error messages point at the line to fix.
    """
    where = _where(key, source)
    eps = _entry_points().get(kind)
    if not eps:
        installed = ", ".join(available_kinds()) or "none"
        raise ConfigError(
            f"{where}unknown device kind {kind!r}; installed kinds: {installed} "
            f"(a driver package registers kinds under the {GROUP!r} entry-point group)"
        )
    if len(eps) > 1:
        raise PluginError(
            f"{where}device kind {kind!r} is registered twice: "
            + " and ".join(_describe(ep) for ep in eps)
        )
    ep = eps[0]
    try:
        obj: Any = ep.load()
    except Exception as exc:
        raise PluginError(
            f"{where}{_describe(ep)} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, Device)):
        raise PluginError(
            f"{where}{_describe(ep)} is {obj!r}, not a subclass of drivers.base.Device"
        )
    if not callable(getattr(obj, "from_config", None)):
        raise PluginError(
            f"{where}{_describe(ep)}: {obj.__qualname__} has no from_config(section, context)"
        )
    return obj


def create_device(kind: str, section: Section, context: DeviceContext) -> Device:
    """Build (not open) the device for one profile table through its plugin."""
    cls = device_class(kind, key=section.key("kind"), source=section.source)
    try:
        device = cls.from_config(section, context)
    except LabrigError:
        raise
    except Exception as exc:  # a driver that did not validate its table: still name it
        raise ConfigError(
            f"{section.source}: [{section.where}]: {kind!r} could not be built from this table: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(device, Device):
        raise PluginError(
            f"{section.source}: {section.key('kind')}: {cls.__qualname__}.from_config returned "
            f"{type(device).__name__}, not a Device"
        )
    return device
