"""GenICam node access: features read and written by SFNC node name, errors naming the node.

Kept apart from the camera because it only needs a node map (harvesters' or a
fake one), so the checks on choices, ranges and increments, and the feature
listing a GUI draws its controls from, are used and tested without a device.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from drivers.errors import DeviceError, OutOfRange

__all__ = [
    "Feature",
    "NodeAccess",
    "list_features",
]

log = logging.getLogger(__name__)

_VISIBILITY = ("Beginner", "Expert", "Guru", "Invisible")


class NodeAccess:
    """Reads and writes of GenICam features by name, with errors that name the node.

    Works on a harvesters node map or on any object whose attributes are nodes
    with ``value`` (and ``min``/``max``/``inc``/``unit``/``symbolics``/``execute()``
    where they apply), raising `AttributeError` for an absent node, as genicam does.
    """

    def __init__(self, node_map: Any, owner: str) -> None:
        self.node_map = node_map
        self.owner = owner

    def has(self, name: str) -> bool:
        try:
            getattr(self.node_map, name)
        except AttributeError:
            return False
        return True

    def node(self, name: str) -> Any:
        try:
            return getattr(self.node_map, name)
        except AttributeError:
            raise DeviceError(f"{self.owner}: the camera has no {name} node "
                              "(it does not support this feature)") from None

    def first(self, *names: str) -> str:
        """The first of `names` the camera has (SFNC names first, legacy ones after)."""
        for name in names:
            if self.has(name):
                return name
        raise DeviceError(f"{self.owner}: the camera has no {' / '.join(names)} node "
                          "(it does not support this feature)")

    def get(self, name: str) -> Any:
        node = self.node(name)
        try:
            return node.value
        except Exception as exc:
            raise DeviceError(f"{self.owner}: reading {name} failed: {_short(exc)}") from exc

    def bounds(self, name: str) -> tuple[float, float]:
        node = self.node(name)
        try:
            return float(node.min), float(node.max)
        except Exception as exc:
            raise DeviceError(f"{self.owner}: {name} has no readable range: {_short(exc)}") from exc

    def unit(self, name: str) -> str:
        try:
            return str(getattr(self.node(name), "unit", "") or "")
        except Exception:
            return ""

    def choices(self, name: str) -> tuple[str, ...]:
        try:
            return tuple(str(s) for s in self.node(name).symbolics)
        except DeviceError:
            raise
        except Exception:
            return ()

    def set(self, name: str, value: Any) -> None:
        """Write a feature after checking choices, range and increment; the error names the node."""
        node = self.node(name)
        if isinstance(value, str):
            options = self.choices(name)
            if options and value not in options:
                raise OutOfRange(f"{self.owner}: {name} cannot be {value!r}; "
                                 f"the camera offers {', '.join(options)}")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._check_range(name, node, value)
        try:
            node.value = value
        except Exception as exc:
            raise DeviceError(f"{self.owner}: setting {name} = {value!r} failed: {_short(exc)}") from exc

    def _check_range(self, name: str, node: Any, value: float) -> None:
        try:
            lo, hi = float(node.min), float(node.max)
        except Exception:
            return  # no range published; the camera will say
        if not lo <= value <= hi:
            raise OutOfRange(f"{self.owner}: {name} {value!r} is outside [{lo:g}, {hi:g}]")
        inc = getattr(node, "inc", None)
        if isinstance(value, int) and isinstance(inc, int) and inc > 1 and (value - int(lo)) % inc:
            raise OutOfRange(f"{self.owner}: {name} {value} is not min {int(lo)} plus a multiple of {inc}")

    def execute(self, name: str) -> None:
        node = self.node(name)
        try:
            node.execute()
        except Exception as exc:
            raise DeviceError(f"{self.owner}: executing {name} failed: {_short(exc)}") from exc

    def set_if_present(self, name: str, value: Any) -> None:
        """For switches that only some cameras have (ExposureAuto, AcquisitionFrameRateEnable)."""
        if self.has(name):
            with contextlib.suppress(DeviceError):
                self.set(name, value)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.split(" : ")[0]  # genicam appends file/line details after " : "


@dataclass(frozen=True)
class Feature:
    """One user-level GenICam feature, as a GUI needs it to draw a control."""

    name: str
    kind: str  # int, float, bool, str, enum, command
    value: Any
    writable: bool
    visibility: str
    display_name: str = ""
    description: str = ""
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    increment: float | None = None
    choices: tuple[str, ...] = ()


def list_features(node_map: Any, max_visibility: str = "Expert") -> list[Feature]:
    """The node map's features up to `max_visibility` (Beginner, Expert, Guru)."""
    from genicam.genapi import EAccessMode, EInterfaceType

    kinds = {
        EInterfaceType.intfIInteger: "int",
        EInterfaceType.intfIFloat: "float",
        EInterfaceType.intfIBoolean: "bool",
        EInterfaceType.intfIString: "str",
        EInterfaceType.intfIEnumeration: "enum",
        EInterfaceType.intfICommand: "command",
    }
    limit = _VISIBILITY.index(max_visibility)
    features = []
    for wrapper in node_map.nodes:
        node = wrapper.node
        try:
            kind = kinds.get(node.principal_interface_type)
            if kind is None or not node.is_feature() or int(node.visibility) > limit:
                continue
            access = node.get_access_mode()
            if access not in (EAccessMode.RO, EAccessMode.RW, EAccessMode.WO):
                continue  # not implemented or not available in the current state
            readable = access in (EAccessMode.RO, EAccessMode.RW) and kind != "command"
            value = wrapper.value if readable else None
            extra: dict[str, Any] = {}
            if kind in ("int", "float") and readable:
                extra = {"minimum": wrapper.min, "maximum": wrapper.max,
                         "unit": str(getattr(wrapper, "unit", "") or "")}
                if kind == "int":
                    extra["increment"] = wrapper.inc
            elif kind == "enum":
                extra = {"choices": tuple(wrapper.symbolics)}
            features.append(Feature(
                name=node.name, kind=kind, value=value,
                writable=access in (EAccessMode.RW, EAccessMode.WO),
                visibility=_VISIBILITY[int(node.visibility)],
                display_name=node.display_name, description=node.tooltip, **extra,
            ))
        except Exception as exc:  # one odd node must not hide the others
            log.debug("skipping GenICam node %s: %s", getattr(node, "name", "?"), exc)
    return features
