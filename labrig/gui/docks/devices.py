"""The Devices dock: connect the bench, see every device's identity and settings, and
control the light with an indicator that cannot be missed.

Opening a bench runs in a worker (real devices take seconds). Each control calls
the engine through the `Session`; a refused setting (out of range, a device
error) is shown next to the control that caused it and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from drivers.base import SLM, describe
from labrig.bench import Bench
from labrig.gui.features import FeatureTree
from labrig.gui.session import Session
from labrig.gui.setpoint import SetpointEdit
from labrig.gui.workers import TaskManager
from labrig.profiles import embedded_profiles

__all__ = ["DevicesDock", "light_text"]

log = logging.getLogger("labrig.gui")

SAFE_STYLE = "background:#1f7a1f; color:white; font-weight:bold; padding:6px; border-radius:4px"
LIGHT_STYLE = "background:#c00000; color:white; font-weight:bold; padding:6px; border-radius:4px"
IDLE_STYLE = "background:#777777; color:white; font-weight:bold; padding:6px; border-radius:4px"
ERROR_STYLE = "color:#c00000"


def light_text(state: dict[str, bool | None], connected: bool) -> tuple[str, str]:
    """The indicator's text and style for `Session.light_state()`: red whenever light can
    reach the bench (laser emitting or shutter open), green only when both are safe."""
    if not connected:
        return "NO BENCH", IDLE_STYLE
    laser, shutter = state.get("laser_on"), state.get("shutter_open")
    if laser or shutter:
        parts = [p for p, on in (("laser EMITTING", laser), ("shutter OPEN", shutter)) if on]
        return "LIGHT ON: " + ", ".join(parts), LIGHT_STYLE
    parts = []
    if laser is not None:
        parts.append("laser off")
    if shutter is not None:
        parts.append("shutter closed")
    return "SAFE: " + (", ".join(parts) or "no light source"), SAFE_STYLE


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


class DevicesDock(QDockWidget):
    def __init__(self, session: Session, tasks: TaskManager, parent: QWidget | None = None) -> None:
        super().__init__("Devices", parent)
        self.setObjectName("dock-devices")
        self.session = session
        self.tasks = tasks
        self._identities: dict[str, dict[str, Any]] = {}
        self._connecting = False
        self._pending: Bench | None = None

        # connection
        self.profile = QComboBox()
        self.profile.setEditable(True)
        self.profile.addItems(embedded_profiles())
        self.profile.setCurrentText(str(session.profile_ref))
        self.profile.setToolTip("an embedded profile name or a .toml file")
        browse = QPushButton("…")
        browse.setToolTip("choose a profile file")
        browse.setFixedWidth(28)
        self.connect_button = QPushButton("Connect")
        self.disconnect_button = QPushButton("Disconnect")
        self.connect_button.setToolTip("open every device of the profile (the light stays off)")
        self.disconnect_button.setToolTip("make the light safe and close the bench's devices")
        self.connection_status = QLabel("not connected")
        self.connection_status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Profile"))
        row.addWidget(self.profile, 1)
        row.addWidget(browse)
        row.addWidget(self.connect_button)
        row.addWidget(self.disconnect_button)

        # light and safety
        self.indicator = QLabel()
        self.indicator.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.indicator.setWordWrap(True)  # wraps in a narrow dock rather than being cut off
        self.arm_button = QPushButton("Light on (arm)")
        self.safe_button = QPushButton("Make safe")
        self.safe_button.setStyleSheet("font-weight:bold")
        self.arm_button.setToolTip("open the shutter and enable the laser at the power below")
        self.safe_button.setToolTip("laser off and shutter closed now; stops a run in progress")
        self.power = SetpointEdit("laser power", "mW", 3)
        self.light_error = QLabel()
        self.light_error.setStyleSheet(ERROR_STYLE)
        self.light_error.setWordWrap(True)
        light = QGroupBox("Light")
        lform = QFormLayout(light)
        lform.addRow(self.indicator)
        buttons = QHBoxLayout()
        buttons.addWidget(self.arm_button)
        buttons.addWidget(self.safe_button)
        lform.addRow(buttons)
        lform.addRow("Laser power", self.power)
        lform.addRow(self.light_error)

        # camera
        self.exposure = SetpointEdit("exposure", "ms", 3)
        self.gain = SetpointEdit("gain", "", 2)
        self.camera_info = QLabel("-")
        self.frame_rate = QLabel("-")
        self.camera_error = QLabel()
        self.camera_error.setStyleSheet(ERROR_STYLE)
        self.camera_error.setWordWrap(True)
        camera = QGroupBox("Camera")
        cform = QFormLayout(camera)
        cform.addRow("Exposure", self.exposure)
        cform.addRow("Gain", self.gain)
        cform.addRow("ROI / format", self.camera_info)
        cform.addRow("Frame rate", self.frame_rate)
        cform.addRow(self.camera_error)

        # SLM look-up tables
        self.lut_role = QComboBox()
        self.lut_plot = pg.PlotWidget()
        self.lut_plot.setMinimumHeight(110)
        self.lut_plot.setMaximumHeight(170)
        self.lut_plot.setLabel("bottom", "gray level")
        self.lut_curve = self.lut_plot.plot(pen=pg.mkPen("#1f5fbf", width=2))
        self.slm_info = QLabel("-")
        self.slm_info.setWordWrap(True)
        slms = QGroupBox("SLMs")
        sform = QVBoxLayout(slms)
        sform.addWidget(self.lut_role)
        sform.addWidget(self.slm_info)
        sform.addWidget(self.lut_plot)

        # a GenICam camera's own features (shown only for a camera that has them)
        self.features = FeatureTree(session.lock)
        self.features.setMinimumHeight(160)
        self.features_box = QGroupBox("Camera features (GenICam)")
        self.features_box.setToolTip("the camera's own features, as its node map describes them; "
                                     "edits are written at once and kept across reconnects")
        QVBoxLayout(self.features_box).addWidget(self.features)
        self.features_box.hide()

        # every device, as the engine describes it
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Device / setting", "Value"])
        self.tree.setColumnWidth(0, 190)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.connection_status)
        layout.addWidget(light)
        layout.addWidget(camera)
        layout.addWidget(slms)
        layout.addWidget(self.features_box)
        layout.addWidget(self.tree, 1)
        self.setWidget(body)

        browse.clicked.connect(self._browse)
        self.connect_button.clicked.connect(self.connect_bench)
        self.disconnect_button.clicked.connect(self.disconnect_bench)
        self.arm_button.clicked.connect(self._arm)
        self.safe_button.clicked.connect(self._make_safe)
        self.exposure.valueChanged.connect(self._set_exposure)
        self.gain.valueChanged.connect(self._set_gain)
        self.power.valueChanged.connect(self._set_power)
        for box in (self.exposure, self.gain, self.power):
            box.refused.connect(lambda message: log.warning("%s", message))
        self.lut_role.currentTextChanged.connect(self._show_lut)
        session.bench_changed.connect(self._on_bench_changed)
        session.state_changed.connect(self.refresh)
        session.busy_changed.connect(lambda _busy: self._update_enabled())

        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self._on_bench_changed(session.bench)

    # -- connection -----------------------------------------------------------------------------
    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Bench profile", "", "Profiles (*.toml)")
        if path:
            self.profile.setCurrentText(path)

    @Slot()
    def connect_bench(self) -> None:
        """Open the chosen profile in a worker; the bench is attached when it is open."""
        if self._connecting:
            return
        ref = self.profile.currentText().strip() or "sim"
        self._connecting = True
        self.connection_status.setText(f"connecting to {ref} …")
        self.connection_status.setStyleSheet("")
        self._update_enabled()

        def done(bench: Bench) -> None:
            self._connecting = False
            self._pending = None
            self.session.attach(bench)

        def failed(message: str) -> None:
            self._connecting = False
            self.connection_status.setText(f"connecting to {ref} failed: {message}")
            self.connection_status.setStyleSheet(ERROR_STYLE)
            self._update_enabled()

        self.tasks.start(f"connect {ref}", lambda _ctx: self._open(ref),
                         on_success=done, on_failure=failed)

    def _open(self, ref: str) -> Bench:
        bench = self.session.open_bench(Path(ref) if ref.endswith(".toml") else ref)
        self._pending = bench  # until attached: closed by `discard_pending` if the window goes first
        return bench

    def discard_pending(self) -> None:
        """Close a bench that finished opening after the window began to close."""
        bench, self._pending = self._pending, None
        if bench is not None and bench is not self.session.bench:
            try:
                bench.close()
            except Exception as exc:
                log.error("closing a bench opened during shutdown: %s", exc)

    @Slot()
    def disconnect_bench(self) -> None:
        try:
            self.session.disconnect()
        except Exception as exc:
            self.connection_status.setText(f"closing failed: {exc}")
            self.connection_status.setStyleSheet(ERROR_STYLE)
            log.error("closing the bench: %s", exc)

    @Slot(object)
    def _on_bench_changed(self, bench: Bench | None) -> None:
        self._identities = {}
        self.tree.clear()
        self.lut_role.blockSignals(True)
        self.lut_role.clear()
        if bench is not None:
            with self.session.lock:
                self._identities = {role: dict(describe(d)) for role, d in bench.devices.items()}
            self.connection_status.setText(
                f"connected: {bench.profile.name} ({bench.profile.source}), "
                f"{len(bench.devices)} devices")
            self.connection_status.setStyleSheet("")
            self.profile.setCurrentText(str(self.session.profile_ref))
            self.lut_role.addItems([r for r, d in bench.devices.items() if isinstance(d, SLM)])
            self._load_camera_limits(bench)
            self._show_features(bench)
        else:
            self.features.show_camera(None)
            self.features_box.hide()
            if not self._connecting:
                self.connection_status.setText("not connected")
        self.lut_role.blockSignals(False)
        self._show_lut(self.lut_role.currentText())
        self.camera_error.clear()
        self.light_error.clear()
        self.refresh()

    def _show_features(self, bench: Bench) -> None:
        try:
            shown = self.features.show_camera(bench.camera)
        except Exception as exc:  # a node map that cannot be read must not stop the connect
            log.error("reading the camera's features: %s", exc)
            shown = False
        self.features_box.setVisible(shown)

    def _load_camera_limits(self, bench: Bench) -> None:
        cam = bench.camera
        for box, (lo, hi), value, scale in (
            (self.exposure, cam.exposure_bounds_s, cam.exposure_s, 1e3),
            (self.gain, cam.gain_bounds, cam.gain, 1.0),
        ):
            box.setRange(lo * scale, hi * scale)
            box.setValue(value * scale)
            box.clear_refusal()
        laser = bench.laser
        if laser is not None:
            self.power.setRange(laser.power_bounds_w[0] * 1e3, laser.power_bounds_w[1] * 1e3)
            self.power.setValue(laser.power_w * 1e3)
            self.power.clear_refusal()

    # -- commands -----------------------------------------------------------------------------
    def _guarded(self, label: QLabel, what: str, fn: Any) -> None:
        label.clear()
        try:
            fn()
        except Exception as exc:
            label.setText(f"{what}: {exc}")
            log.error("%s: %s", what, exc)
        self.refresh()

    @Slot()
    def _arm(self) -> None:
        self._guarded(self.light_error, "light on", self.session.arm)

    @Slot()
    def _make_safe(self) -> None:
        self._guarded(self.light_error, "make safe", self.session.make_safe)

    @Slot(float)
    def _set_exposure(self, ms: float) -> None:
        self._guarded(self.camera_error, "exposure",
                      lambda: self.session.set_camera(exposure_s=ms / 1e3))

    @Slot(float)
    def _set_gain(self, gain: float) -> None:
        self._guarded(self.camera_error, "gain", lambda: self.session.set_camera(gain=gain))

    @Slot(float)
    def _set_power(self, mw: float) -> None:
        self._guarded(self.light_error, "laser power", lambda: self.session.set_laser_power(mw / 1e3))

    # -- display ----------------------------------------------------------------------------------
    def _update_enabled(self) -> None:
        connected = self.session.connected
        busy = self.session.busy
        self.connect_button.setEnabled(not connected and not self._connecting)
        self.profile.setEnabled(not connected and not self._connecting)
        self.disconnect_button.setEnabled(connected and not busy)
        self.arm_button.setEnabled(connected and not busy)
        self.safe_button.setEnabled(connected)  # never disabled while a bench is open
        bench = self.session.bench
        self.power.setEnabled(connected and not busy and bench is not None and bench.laser is not None)
        self.exposure.setEnabled(connected and not busy)
        self.gain.setEnabled(connected and not busy)
        self.features.setEnabled(connected and not busy)  # a run owns the camera

    @Slot()
    def refresh(self) -> None:
        """Indicator, camera readouts and the settings tree from the devices' current state."""
        text, style = light_text(self.session.light_state(), self.session.connected)
        if self.indicator.text() != text:
            self.indicator.setText(text)
            self.indicator.setStyleSheet(style)
        self._update_enabled()
        bench = self.session.bench if self.session.connected else None
        if bench is None:
            self.camera_info.setText("-")
            self.frame_rate.setText("-")
            return
        cam = bench.camera
        self._sync_controls(bench)
        self.camera_info.setText(f"full frame {cam.resolution[1]}×{cam.resolution[0]} px, "
                                 f"{cam.bit_depth} bit, {cam.pixel_pitch_m * 1e6:g} µm")
        fps = self.session.camera_fps
        self.frame_rate.setText(f"{fps:.1f} frames/s (live view)" if fps > 0 else "not streaming")
        if self.session.busy:  # a run drives the devices from its thread: do not query them
            return
        if not self.session.lock.acquire(timeout=0.05):  # a grab in flight: next time
            return
        try:
            settings = {role: (d.settings(), d.is_open) for role, d in bench.devices.items()}
        finally:
            self.session.lock.release()
        for role, (values, is_open) in settings.items():
            self._update_device(role, values, is_open)

    def _sync_controls(self, bench: Bench) -> None:
        """Show what the devices hold (after a refused value, or a change made elsewhere: a
        run, a script), except in a box the operator is editing."""
        pairs = [(self.exposure, bench.camera.exposure_s * 1e3), (self.gain, bench.camera.gain)]
        if bench.laser is not None:
            pairs.append((self.power, bench.laser.power_w * 1e3))
        for box, value in pairs:
            if not box.hasFocus() and abs(box.value() - value) > 0.5 * 10 ** -box.decimals():
                box.setValue(value)  # shows it; applies nothing

    def _update_device(self, role: str, settings: dict[str, Any], is_open: bool) -> None:
        ident = self._identities.get(role, {})
        top = self._child(self.tree.invisibleRootItem(), role)
        top.setText(1, f"{ident.get('name', '')}  [{'open' if is_open else 'closed'}]")
        idnode = self._child(top, "identity")
        for key, value in ident.get("identity", {}).items():
            self._child(idnode, key).setText(1, _fmt(value))
        setnode = self._child(top, "settings")
        for key, value in settings.items():
            item = self._child(setnode, key)
            if item.text(1) != _fmt(value):
                item.setText(1, _fmt(value))
        if top.childCount() and not top.data(0, Qt.ItemDataRole.UserRole):
            top.setData(0, Qt.ItemDataRole.UserRole, True)
            top.setExpanded(True)
            setnode.setExpanded(True)

    @staticmethod
    def _child(parent: QTreeWidgetItem, key: str) -> QTreeWidgetItem:
        for i in range(parent.childCount()):
            if parent.child(i).text(0) == key:
                return parent.child(i)
        return QTreeWidgetItem(parent, [key, ""])

    @Slot(str)
    def _show_lut(self, role: str) -> None:
        bench = self.session.bench if self.session.connected else None
        device = bench.devices.get(role) if bench is not None and role else None
        if not isinstance(device, SLM):
            self.lut_curve.setData([], [])
            self.slm_info.setText("-")
            return
        lut = device.lut
        unit = "phase (rad)" if device.modulation == "phase" else "transmission"
        self.lut_plot.setLabel("left", unit)
        self.lut_curve.setData(list(range(len(lut))), lut)
        self.slm_info.setText(
            f"{device.name}: {device.resolution[1]}×{device.resolution[0]} px, "
            f"{device.pitch_m * 1e6:g} µm pitch, {device.bit_depth} bit {device.modulation}, "
            f"LUT {lut.min():.3g}…{lut.max():.3g}, settle {device.settle_s * 1e3:g} ms")
