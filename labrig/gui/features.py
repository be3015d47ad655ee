"""A GenICam camera's own features in a pyqtgraph ParameterTree (the Devices dock shows it).

The Devices dock's exposure and gain cover every camera; a real camera has many
more controls (black level, binning, line modes) that an operator setting up a rig
needs. Any camera offering ``features()`` (a list of `drivers.vendors.genicam.nodes.Feature`)
``get_feature(name)`` and ``set_feature(name, value)`` gets one row per feature, typed and bounded as the
camera reports; an edit the camera refuses is logged and the row shows the camera's value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from pyqtgraph.parametertree import Parameter, ParameterTree

__all__ = ["FeatureTree", "feature_params", "has_features"]

log = logging.getLogger("labrig.gui")

#: commands (DeviceReset, ...) are left out: one click must not reset a camera mid-setup
_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "enum": "list"}


def has_features(camera: Any) -> bool:
    return callable(getattr(camera, "features", None)) and callable(getattr(camera, "set_feature", None))


def feature_params(features: Iterable[Any]) -> list[dict[str, Any]]:
    """pyqtgraph parameter specs, one per feature (read-only when the camera says so)."""
    specs = []
    for f in features:
        if f.kind not in _TYPES:
            continue
        spec: dict[str, Any] = {"name": f.name, "type": _TYPES[f.kind], "title": f.display_name or f.name,
                                "tip": f.description or f.name, "readonly": not f.writable}
        spec["value"] = f.value
        if f.kind in ("int", "float") and f.minimum is not None and f.maximum is not None:
            spec["limits"] = (f.minimum, f.maximum)
            if f.unit:
                spec["suffix"] = f.unit
            if f.kind == "int" and f.increment:
                spec["step"] = f.increment
        elif f.kind == "enum":
            spec["limits"] = list(f.choices)
        specs.append(spec)
    return specs


class FeatureTree(ParameterTree):
    """Shows a camera's features; edits go to the camera under the session's device lock."""

    def __init__(self, lock: threading.RLock | None = None, parent: Any = None) -> None:
        super().__init__(parent, showHeader=False)
        self.lock = lock or threading.RLock()
        self.camera: Any = None
        self.root: Parameter | None = None

    def show_camera(self, camera: Any) -> bool:
        """Fill the tree from `camera` (False and empty when it has no features to show)."""
        self.clear()
        self.camera, self.root = None, None
        if camera is None or not has_features(camera):
            return False
        with self.lock:
            features = camera.features()
        self.camera = camera
        self.root = Parameter.create(name="features", type="group", children=feature_params(features))
        self.root.sigTreeStateChanged.connect(self._changed)
        self.setParameters(self.root, showTop=False)
        return True

    def _changed(self, _root: Parameter, changes: list[tuple[Parameter, str, Any]]) -> None:
        for param, change, value in changes:
            if change != "value" or self.camera is None:
                continue
            name = param.name()
            try:
                with self.lock:
                    self.camera.set_feature(name, value)
                log.info("camera feature %s set to %r", name, value)
            except Exception as exc:
                log.error("camera feature %s: %s", name, exc)
                self._revert(param, name)

    def _revert(self, param: Parameter, name: str) -> None:
        try:
            with self.lock:
                actual = self.camera.get_feature(name)
        except Exception:
            return
        assert self.root is not None
        self.root.sigTreeStateChanged.disconnect(self._changed)
        try:
            param.setValue(actual)
        finally:
            self.root.sigTreeStateChanged.connect(self._changed)
