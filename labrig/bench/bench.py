"""A configured bench: the devices of one profile, opened together and kept safe.

`Bench.open` builds every device through its plugin, then opens them light
source first. If anything fails on the way, whatever was opened is made safe
and closed again before the error propagates: a bench is either fully open or
not open at all. Leaving a bench (close, exception, exit, SIGTERM) always turns
the laser off and closes the shutter.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from drivers.base import SLM, Camera, Device, InputModulator, LaserController, Shutter, describe
from drivers.errors import DeviceError, LabrigError
from drivers.plugin import DeviceContext
from labrig.bench.frames import SNAP_FORMATS, check_frame_path, save_frame
from labrig.bench.plugins import create_device
from labrig.bench.safety import SafetyGuard
from labrig.profiles import Profile, load_profile

__all__ = ["SNAP_FORMATS", "Bench", "open_bench"]

log = logging.getLogger(__name__)

#: the protocol each role's device must implement (checked with isinstance when the bench is
#: built, before anything is opened); the input may be any modulator (an SLM, a DMD, a micro-LED array)
ROLE_TYPES: dict[str, type[Device]] = {
    "laser": LaserController,
    "shutter": Shutter,
    "input": InputModulator,
    "filter": SLM,
    "camera": Camera,
}


class Bench:
    """The devices of one profile plus the safety guard; use as a context manager."""

    def __init__(self, profile: Profile) -> None:
        """Prefer `Bench.open(profile)`; this only holds state and opens nothing."""
        self.profile = profile
        self.devices: dict[str, Device] = {}
        self.shared: dict[str, Any] = {}
        self.guard = SafetyGuard(install=False)
        self._closed = False

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, profile: Profile | str | Path | None = None) -> Bench:
        """Build and open every device of `profile` (a Profile, embedded name or path; None: sim)."""
        bench = cls(load_profile(profile))
        try:
            bench._build()
            bench.guard = SafetyGuard(bench.shutter, bench.laser, install=bool(bench._light()))
            for role, device in bench.devices.items():
                bench._open_device(role, device)
            bench.guard.make_safe()  # a laser may power up enabled; start from a known state
        except BaseException as exc:
            try:
                bench._shutdown()
            except LabrigError as cleanup:
                log.error("cleaning up a bench that failed to open: %s", cleanup)
                _add_note(exc, f"while cleaning up: {cleanup}")
            raise
        return bench

    def _build(self) -> None:
        devices = self.profile.root.section("devices")
        for role in self.profile.device_roles():
            section = devices.section(role)
            kind = section.get_str("kind")
            context = DeviceContext(profile=self.profile.root, role=role, shared=self.shared)
            device = create_device(kind, section, context)
            expected = ROLE_TYPES[role]
            if not isinstance(device, expected):
                raise section.error(
                    "kind",
                    f"{kind!r} builds a {type(device).__name__}, which does not implement "
                    f"{expected.__name__} (drivers.base) and cannot be the {role}",
                )
            self.devices[role] = device

    def _open_device(self, role: str, device: Device) -> None:
        try:
            device.open()
        except LabrigError:
            raise
        except Exception as exc:  # a driver leaking its library's exception: name the device
            raise DeviceError(
                f"opening the {role} ({self.profile.device_kind(role)}, {device.name}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _light(self) -> list[Device]:
        return [d for d in (self.laser, self.shutter) if d is not None]

    # -- devices ----------------------------------------------------------------------------------
    @property
    def camera(self) -> Camera:
        return self.devices["camera"]  # type: ignore[return-value]  # validated in _build

    @property
    def input(self) -> InputModulator | None:
        return self.devices.get("input")  # type: ignore[return-value]

    @property
    def filter(self) -> SLM | None:
        return self.devices.get("filter")  # type: ignore[return-value]

    @property
    def shutter(self) -> Shutter | None:
        return self.devices.get("shutter")  # type: ignore[return-value]

    @property
    def laser(self) -> LaserController | None:
        return self.devices.get("laser")  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        return self._closed

    # -- closing ----------------------------------------------------------------------------------
    def make_safe(self) -> None:
        """Laser off and shutter closed (both attempted); raises SafetyError on failure."""
        self.guard.make_safe()

    def close(self) -> None:
        """Make safe, then close every device in reverse order; safe to call twice."""
        if self._closed:
            return
        self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        errors: list[tuple[str, BaseException]] = []
        try:
            self.guard.make_safe()
        except Exception as exc:
            errors.append(("making safe", exc))
        finally:
            self.guard.release()
        for role, device in reversed(self.devices.items()):
            try:
                device.close()
            except Exception as exc:
                errors.append((f"closing {role} {device.name}", exc))
        self.shared.clear()
        if errors:
            summary = "; ".join(f"{what}: {type(e).__name__}: {e}" for what, e in errors)
            raise DeviceError(f"closing bench {self.profile.name}: {summary}") from errors[0][1]

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except LabrigError as close_error:
            if exc is None:
                raise
            log.error("while leaving the bench after %s: %s", exc_type.__name__, close_error)
            _add_note(exc, f"while closing the bench: {close_error}")

    def __del__(self) -> None:
        # a bench dropped without close() (e.g. `Bench.open().describe()`) still ends safe
        if getattr(self, "_closed", True) or not getattr(self, "devices", None):
            return
        try:
            log.warning("bench %s was not closed; closing it now", self.profile.name)
            self.close()
        except Exception:
            pass

    # -- use --------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Profile and every device's identity and settings (for `bench info` and run files)."""
        return {
            "profile": {"name": self.profile.name, "source": self.profile.source,
                        "chain": list(self.profile.chain)},
            "devices": {
                role: {"kind": self.profile.device_kind(role), **describe(device)}
                for role, device in self.devices.items()
            },
        }

    def snap(self, path: str | Path, timeout_s: float = 1.0) -> np.ndarray:
        """Grab one frame with the light on, make safe, and write it atomically to `path`.

        The format follows the suffix: ``.npy``, ``.png`` (8- or 16-bit gray, raw
        counts), ``.h5``/``.hdf5`` (dataset ``frame`` with profile, devices and time).
        """
        path = check_frame_path(path, self)
        if self._closed:
            raise DeviceError(f"bench {self.profile.name} is closed")
        when = _dt.datetime.now(_dt.timezone.utc)
        try:
            if self._light():
                self.guard.arm()
            frame = self.camera.grab(timeout_s)
        finally:
            self.guard.make_safe()
        save_frame(path, frame, self, when)
        return frame


def open_bench(profile: Profile | str | Path | None = None) -> Bench:
    """`Bench.open`, as a function: ``with open_bench("sim") as bench: ...``."""
    return Bench.open(profile)


def _add_note(exc: BaseException, note: str) -> None:
    add = getattr(exc, "add_note", None)
    if add is not None:  # Python >= 3.11
        add(note)
