"""The console's shared state: the open bench, the loaded program, who is using the bench.

Docks never hold a bench of their own; they call these thin wrappers, which go
straight to the engine (`Bench`, the device protocols, `SafetyGuard`) under one
lock, because the live stream's thread and the UI thread both talk to devices.
Changes are announced with signals so every dock shows the same state.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from drivers.base import SLM
from drivers.errors import DeviceError
from labrig.bench import Bench
from labrig.profiles import load_profile

__all__ = ["Session"]

log = logging.getLogger("labrig.gui")


def _off_main_thread_note(record: logging.LogRecord) -> bool:
    """Drop the guard's "created off the main thread" warning while a worker opens the bench:
    `Session.attach` installs the handlers from the main thread right after."""
    return "off the main thread" not in record.getMessage()


class Session(QObject):
    """One bench (or none), one program (or none), and a busy flag for long runs."""

    #: the bench was opened or closed (the Bench, or None)
    bench_changed = Signal(object)
    #: the bench is about to close: let go of the devices now (the live view stops)
    bench_closing = Signal()
    #: light armed or made safe, a device setting changed (the Devices dock refreshes)
    state_changed = Signal()
    #: a program or checkpoint was loaded (the loaded object, or None)
    program_changed = Signal(object)
    #: a run took the bench (True) or gave it back (False): live view and controls pause
    busy_changed = Signal(bool)
    #: an SLM shows a new pattern (the role: "input" or "filter")
    pattern_changed = Signal(str)
    #: the active program's fit to the open bench was checked (why it does not fit; [] when it
    #: does, or when there is no program or no bench to check against); the calibration's ROIs
    #: were checked at the same time (`calibration_misfits`)
    fit_changed = Signal(list)
    #: a frame the running run just took (a camera frame, numpy): the live view shows some
    run_frame = Signal(object)

    def __init__(self, profile: str | Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.profile_ref: str | Path = "sim" if profile is None else profile
        self.bench: Bench | None = None
        self.program: Any = None
        self.program_path: Path | None = None
        self.lock = threading.RLock()
        #: why the active program cannot run on the open bench (`labrig.deploy.fit.misfits`)
        self.misfits: list[str] = []
        #: the calibration's camera ROIs (where its input image lands), the bench geometry it was
        #: measured on, and why they do not fit the open bench (the program's check, `check_fit`)
        self.calibration_rois: list[tuple[int, int, int, int]] = []
        self.calibration_geometry: dict[str, Any] | None = None
        self.calibration_misfits: list[str] = []
        self._busy = False
        #: frames per second the live view's camera stream delivers (0: not streaming)
        self.camera_fps = 0.0

    # -- the bench --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.bench is not None and not self.bench.closed

    def require_bench(self) -> Bench:
        if self.bench is None or self.bench.closed:
            raise DeviceError("no bench is connected; connect one in the Devices dock")
        return self.bench

    def open_bench(self, profile: str | Path | None = None) -> Bench:
        """Open a bench (runs in a worker thread: real devices can take seconds)."""
        ref = self.profile_ref if profile is None else profile
        safety_log = logging.getLogger("labrig.bench.safety")
        safety_log.addFilter(_off_main_thread_note)
        try:
            return Bench.open(load_profile(ref))
        finally:
            safety_log.removeFilter(_off_main_thread_note)

    def attach(self, bench: Bench) -> None:
        """Take an opened bench (UI thread); the safety guard's signal handlers can only be
        installed from the main thread, so they are (re)installed here."""
        if self.connected:
            self.disconnect()
        guard = bench.guard
        if guard.shutter is not None or guard.laser is not None:
            guard.release()
            guard.install()
            log.info("safety guard armed for exit and SIGTERM/SIGINT (laser off, shutter closed)")
        self.bench = bench
        source = bench.profile.source  # "<embedded sim>" or a path
        self.profile_ref = bench.profile.name if source.startswith("<") else source
        log.info("bench %s connected (%s)", bench.profile.name, ", ".join(bench.devices))
        self.bench_changed.emit(bench)
        self.state_changed.emit()
        self.check_fit()

    def disconnect(self) -> None:
        """Make the bench safe and close it; errors are raised after the bench is dropped."""
        if self.bench is None:
            return
        self.bench_closing.emit()
        bench, self.bench = self.bench, None
        try:
            with self.lock:
                bench.close()  # makes safe first: laser off, shutter closed
            log.info("bench %s closed (made safe)", bench.profile.name)
        finally:
            self.bench_changed.emit(None)
            self.state_changed.emit()
            self.check_fit()

    # -- light ----------------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        return self.connected and self.bench is not None and self.bench.guard.armed

    def arm(self) -> None:
        """Light on through the safety guard (shutter checked, interlock, laser, shutter open)."""
        bench = self.require_bench()
        try:
            with self.lock:
                bench.guard.arm()
            log.warning("light ON: laser enabled, shutter open")
        finally:
            self.state_changed.emit()

    def make_safe(self) -> None:
        """Laser off and shutter closed; a no-op without a bench."""
        if not self.connected or self.bench is None:
            return
        try:
            with self.lock:
                self.bench.make_safe()
            log.info("bench made safe: laser off, shutter closed")
        finally:
            self.state_changed.emit()

    def light_state(self) -> dict[str, bool | None]:
        """Laser emitting / shutter open as the devices report them (None: no such device)."""
        bench = self.bench if self.connected else None
        laser = bench.laser if bench is not None else None
        shutter = bench.shutter if bench is not None else None
        return {
            "laser_on": None if laser is None else bool(laser.enabled),
            "shutter_open": None if shutter is None else bool(shutter.shutter_open),
            "armed": self.armed,
        }

    # -- devices ----------------------------------------------------------------------------------
    def grab(self, timeout_s: float = 1.0) -> np.ndarray:
        """One camera frame (the live stream calls this from its thread)."""
        bench = self.require_bench()
        with self.lock:
            return bench.camera.grab(timeout_s)

    def set_camera(self, *, exposure_s: float | None = None, gain: float | None = None) -> None:
        bench = self.require_bench()
        try:
            with self.lock:
                if exposure_s is not None:
                    bench.camera.exposure_s = exposure_s
                if gain is not None:
                    bench.camera.gain = gain
        finally:
            self.state_changed.emit()

    def set_laser_power(self, power_w: float) -> None:
        bench = self.require_bench()
        if bench.laser is None:
            raise DeviceError(f"bench {bench.profile.name} has no laser")
        try:
            with self.lock:
                bench.laser.power_w = power_w
        finally:
            self.state_changed.emit()

    def slm(self, role: str) -> SLM:
        """The input modulator or filter SLM (as an SLM: both show gray-level patterns)."""
        bench = self.require_bench()
        device = bench.devices.get(role)
        if not isinstance(device, SLM):
            raise DeviceError(f"bench {bench.profile.name} has no {role} SLM")
        return device

    def show_pattern(self, role: str, gray: np.ndarray) -> None:
        """Show gray levels on the input ("input") or filter ("filter") SLM."""
        device = self.slm(role)
        with self.lock:
            device.show(gray)
        log.info("%s shows a new %dx%d pattern", device.name, *gray.shape)
        self.pattern_changed.emit(role)

    # -- program and runs ---------------------------------------------------------------------------
    def set_program(self, program: Any, path: str | Path | None = None) -> None:
        """Make `program` the one active program (None: none), replacing the one before, and
        check at once whether it fits the open bench."""
        previous = self.program
        self.program = program
        self.program_path = None if path is None else Path(path)
        if previous is not None and previous is not program:
            log.info("the active program %s was replaced", getattr(previous, "name", "") or "before")
        self.program_changed.emit(program)
        self.check_fit()

    def set_calibration_rois(self, rois: list[tuple[int, int, int, int]],
                             geometry: dict[str, Any] | None) -> None:
        """Show a calibration's camera ROIs (`calibration.show.calibration_rois`), measured on a
        bench of `geometry` (its provenance's), once they pass the same fit check as a program's
        tiles: drawn where they fit the open bench, hidden with the reasons where they do not."""
        self.calibration_rois = [tuple(int(v) for v in r) for r in rois]  # type: ignore[misc]
        self.calibration_geometry = geometry
        self.check_fit()

    def check_fit(self) -> list[str]:
        """Check the active program against the open bench (`labrig.deploy.fit.misfits`), keep
        the reasons in `misfits`, log them and announce them with `fit_changed`; the calibration's
        ROIs likewise, into `calibration_misfits`."""
        problems: list[str] = []
        bench = self.bench if self.connected else None
        if self.program is not None and bench is not None:
            from labrig.deploy.fit import misfits

            try:
                with self.lock:
                    problems = misfits(self.program, bench)
            except Exception as exc:  # an unreadable program is reported the same way
                problems = [f"the fit could not be checked: {type(exc).__name__}: {exc}"]
            if problems:
                log.warning("the program does not fit bench %s: %s", bench.profile.name, "; ".join(problems))
        self.misfits = problems
        self.calibration_misfits = self._calibration_fit(bench)
        self.fit_changed.emit(list(problems))
        return problems

    def _calibration_fit(self, bench: Bench | None) -> list[str]:
        """Why the calibration's ROIs are not this bench's: another optical geometry (camera
        size included), or an ROI off its camera; [] without ROIs or a bench to check."""
        if not self.calibration_rois or bench is None:
            return []
        from labrig.deploy.fit import geometry_misfits

        try:
            problems = geometry_misfits(self.calibration_geometry, bench, "the calibration", "recalibrate")
            rows, cols = (int(v) for v in bench.camera.resolution)
        except Exception as exc:
            problems, rows, cols = [f"the fit could not be checked: {type(exc).__name__}: {exc}"], 0, 0
        off = [r for r in self.calibration_rois if r[0] < 0 or r[1] < 0 or r[2] > rows or r[3] > cols]
        if off and rows:
            problems.append(f"camera: the calibration's ROI {off[0]} lies outside this bench's {rows}x{cols} camera")
        if problems:
            log.warning("the calibration does not fit bench %s: %s", bench.profile.name, "; ".join(problems))
        return problems

    def active_rois(self) -> list[tuple[int, int, int, int]]:
        """The active program's tile ROIs, or none when it does not fit the open bench (they
        would be drawn on pixels the program never reads)."""
        from labrig.gui.program_info import program_rois

        return [] if self.misfits else program_rois(self.program)

    def active_calibration_rois(self) -> list[tuple[int, int, int, int]]:
        """The calibration's ROIs, or none when they do not fit the open bench."""
        return [] if self.calibration_misfits else list(self.calibration_rois)

    @property
    def busy(self) -> bool:
        return self._busy

    def set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)
