"""The Patterns dock: what the input modulator and the filter SLM show now, and test patterns.

Each SLM is drawn as its response through its own LUT (phase with a cyclic colour
map, so 0 and 2 pi look alike; transmission in gray) or as raw gray levels. Test
patterns come from `labrig.bench.patterns.make_pattern`, which converts through
the device's LUT; the dock only collects the parameters.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from drivers.base import SLM
from labrig.bench.patterns import PATTERN_KINDS, make_pattern
from labrig.gui import plots
from labrig.gui.session import Session
from labrig.gui.workers import TaskManager

__all__ = ["PARAMS", "PatternPanel", "PatternsDock"]

log = logging.getLogger("labrig.gui")

#: which parameters each test pattern uses (the others are disabled)
PARAMS: dict[str, tuple[str, ...]] = {
    "grating": ("period_px", "angle_deg"),
    "spot": ("radius_px", "value"),
    "lens": ("focal_mm",),
    "uniform": ("value",),
}


class PatternPanel(QWidget):
    """One SLM's current pattern: response through the LUT (phase or transmission) or gray."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel(f"<b>{title}</b>")
        self.mode = QComboBox()
        self.mode.addItems(["response", "gray levels"])
        self.info = QLabel("-")
        # a long description is cut (whole in its tooltip) rather than widening the dock; not
        # wrapped: a wrapping label would make the dock's scroll area size it by its pictures
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.canvas = plots.ColorImage()
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.mode)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.info)
        self.gray: np.ndarray | None = None
        self.device: SLM | None = None
        self.mode.currentTextChanged.connect(lambda _t: self.redraw())

    def set_device(self, device: SLM | None) -> None:
        self.device = device
        self.gray = None
        if device is None:
            self.canvas.clear_image()
            self.info.setText("no device")

    def update_pattern(self, gray: np.ndarray) -> None:
        self.gray = gray
        self.redraw()

    def redraw(self) -> None:
        device, gray = self.device, self.gray
        if device is None or gray is None:
            return
        if self.mode.currentText() == "gray levels":
            data, values, cmap, unit = gray, (0, device.levels - 1), plots.gray_colormap(), "gray level"
        elif device.modulation == "phase":
            data = np.remainder(device.lut[gray], 2 * math.pi)
            values, cmap, unit = (0.0, 2 * math.pi), plots.cyclic_colormap(), "phase (rad)"
        else:
            data, values, cmap, unit = device.lut[gray], (0.0, 1.0), plots.gray_colormap(), "transmission"
        self.canvas.show_array(data, values, cmap)
        self.info.setText(f"{device.name}: {unit}, gray {int(gray.min())}…{int(gray.max())}, "
                          f"{gray.shape[1]}×{gray.shape[0]} px")
        self.info.setToolTip(self.info.text())


class PatternsDock(QDockWidget):
    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Patterns", parent)
        self.setObjectName("dock-patterns")
        self.session = session
        self.tasks = tasks
        self.panels = {"input": PatternPanel("Input modulator"), "filter": PatternPanel("Filter SLM")}

        self.target = QComboBox()
        self.target.addItem("filter SLM", "filter")
        self.target.addItem("input modulator", "input")
        self.kind = QComboBox()
        self.kind.addItems(list(PATTERN_KINDS))
        self.params: dict[str, QDoubleSpinBox] = {
            "period_px": self._spin(2, 1e4, 8, " px", 2),
            "angle_deg": self._spin(-360, 360, 0, " °", 1),
            "radius_px": self._spin(0.5, 1e4, 8, " px", 1),
            "focal_mm": self._spin(-1e5, 1e5, 500, " mm", 1),
            "value": self._spin(0, 2 * math.pi, math.pi, "", 3),
        }
        self.show_button = QPushButton("Show on SLM")
        self.show_button.setToolTip("display this test pattern on the chosen modulator")
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color:#c00000")
        self.error_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Target", self.target)
        form.addRow("Pattern", self.kind)
        for key, label in (("period_px", "Period"), ("angle_deg", "Angle"), ("radius_px", "Radius"),
                           ("focal_mm", "Focal length"), ("value", "Value (rad / transmission)")):
            form.addRow(label, self.params[key])
        form.addRow(self.show_button)
        form.addRow(self.error_label)
        box = QGroupBox("Test pattern")
        box.setLayout(form)

        panels = QHBoxLayout()
        for role in ("input", "filter"):
            # the pictures take the height the dock has left, not their preferred one (which
            # would push the test-pattern controls out of a short dock)
            self.panels[role].setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
            self.panels[role].setMinimumHeight(170)
            panels.addWidget(self.panels[role], 1)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(panels, 1)
        layout.addWidget(box)
        self.setWidget(body)

        self.kind.currentTextChanged.connect(self._kind_changed)
        self.show_button.clicked.connect(self.show_test_pattern)
        session.bench_changed.connect(self._on_bench_changed)
        session.pattern_changed.connect(self.refresh_role)
        session.busy_changed.connect(lambda _b: self._update_enabled())
        self._poll = QTimer(self)  # a run changes patterns from its thread: poll, cheaply
        self._poll.setInterval(1000)
        self._poll.timeout.connect(self.refresh)
        self._poll.start()
        self._kind_changed(self.kind.currentText())
        self._on_bench_changed(session.bench)

    @staticmethod
    def _spin(lo: float, hi: float, value: float, suffix: str, decimals: int) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setDecimals(decimals)
        box.setValue(value)
        box.setSuffix(suffix)
        return box

    @Slot(str)
    def _kind_changed(self, kind: str) -> None:
        used = PARAMS.get(kind, ())
        for key, box in self.params.items():
            box.setEnabled(key in used)

    def _update_enabled(self) -> None:
        self.show_button.setEnabled(self.session.connected and not self.session.busy)

    @Slot(object)
    def _on_bench_changed(self, bench: Any) -> None:
        for role, panel in self.panels.items():
            device = bench.devices.get(role) if bench is not None else None
            panel.set_device(device if isinstance(device, SLM) else None)
        self._update_enabled()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        for role in self.panels:
            self.refresh_role(role)

    @Slot(str)
    def refresh_role(self, role: str) -> None:
        panel = self.panels.get(role)
        if panel is None or panel.device is None or not self.session.connected:
            return
        gray = panel.device.pattern
        if panel.gray is None or not np.array_equal(gray, panel.gray):
            panel.update_pattern(gray)

    def pattern_params(self) -> dict[str, float]:
        """The form's values in the units `make_pattern` takes."""
        p = {k: box.value() for k, box in self.params.items()}
        p["focal_m"] = p.pop("focal_mm") / 1e3
        return p

    @Slot()
    def show_test_pattern(self) -> None:
        """Generate the chosen pattern for the chosen SLM and show it."""
        self.error_label.clear()
        role = self.target.currentData()
        kind = self.kind.currentText()
        try:
            device = self.session.slm(role)
            params = self.pattern_params()
            bench = self.session.require_bench()
            params["wavelength_m"] = float(bench.profile.data.get("optics", {}).get("wavelength_m", 532e-9))
            params["pitch_m"] = device.pitch_m
            gray = make_pattern(kind, device.resolution, device.lut, device.modulation, params)
            self.session.show_pattern(role, gray)
        except Exception as exc:
            self.error_label.setText(f"{kind} on the {role}: {exc}")
            log.error("showing a %s on the %s failed: %s", kind, role, exc)
