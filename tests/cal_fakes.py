"""Small real routines for testing the calibration engine, store, CLI and console without B's and C's."""

from __future__ import annotations

import numpy as np

from calibration.base import Routine, RoutineResult
from calibration.probe import Probe
from drivers.errors import DeviceError


class Offset(Routine):
    """Camera black level from dark frames (a real, if small, measurement)."""

    name, title, estimates, frames_hint = "offset", "Dark offset", ("camera_offset_dn", "hot_pixels_e_per_s"), 4

    def run(self, bench, twin, *, progress=None, cancel=None):
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            dark, noise = probe.dark_reference(4)
        offset = float(np.median(dark)) - twin.geometry.camera.offset_dn
        return RoutineResult(self.name, {"camera_offset_dn": offset, "hot_pixels_e_per_s": None}, noise, "DN",
                             probe.frames, products={"dark_dn": dark, "exposure_s": bench.camera.exposure_s,
                                       "dark_spectrum": np.fft.fft2(dark)[:4, :4]},
                             plot={"histogram": np.histogram(dark, 16)[0]})


class Spot(Routine):
    """Takes lit frames; estimates a camera shift from the frame's centroid (enough for the engine)."""

    name, title, estimates, after, frames_hint = "spot", "Spot", ("camera_shift_px",), ("offset",), 2
    seen_offset_dn: float | None = None

    def run(self, bench, twin, *, progress=None, cancel=None):
        Spot.seen_offset_dn = twin.imperfections.camera_offset_dn.item()  # what `offset` wrote in the twin
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.set_exposure(2e-5)
            probe.show_input(np.full(bench.input.resolution, 60, np.uint8))
            probe.show_filter(np.zeros(bench.filter.resolution, np.uint8))
            frame = probe.grab(2)
        yy, xx = np.indices(frame.shape)
        w = np.clip(frame - np.median(frame), 0, None)
        centre = [float((yy * w).sum() / w.sum()), float((xx * w).sum() / w.sum())]
        shift = [c - (n - 1) / 2 for c, n in zip(centre, frame.shape, strict=True)]
        return RoutineResult(self.name, {"camera_shift_px": shift}, 0.1, "px", probe.frames)


class Broken(Routine):
    """Fails after one lit frame, as a device fault would."""

    name, estimates, after = "broken", (), ("offset",)

    def run(self, bench, twin, *, progress=None, cancel=None):
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.grab(1)
            raise DeviceError("filter SLM: write failed")


REGISTRY = {"offset": Offset, "spot": Spot, "broken": Broken}


class Interrupted(Routine):
    """Ctrl-C (a real SIGINT to this process) in the middle of a lit measurement."""

    name, estimates = "interrupted", ()

    def run(self, bench, twin, *, progress=None, cancel=None):
        import signal
        import threading
        import time

        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.grab_frames(1, check=False)
            # at the main thread, as a terminal's Ctrl-C is handled: a signal sent to the process
            # may land on another thread (tqdm's monitor, torch's workers) under load, and the main
            # thread then sees it only when it next runs Python code
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            for _ in range(50):
                time.sleep(0.1)  # the signal arrives here
            raise AssertionError("SIGINT did not interrupt the routine")


REGISTRY["interrupted"] = Interrupted


class Slow(Routine):
    """Many single frames: long enough to cancel from a test."""

    name, estimates, frames_hint = "slow", (), 400

    def run(self, bench, twin, *, progress=None, cancel=None):
        with Probe(bench, self.name, progress=progress, cancel=cancel) as probe:
            probe.set_exposure(2e-5)
            probe.show_input(np.full(bench.input.resolution, 60, np.uint8))
            for i in range(self.frames_hint):
                probe.grab_frames(1, check=False)
                probe.progress(i + 1, self.frames_hint, "frames")
        return RoutineResult(self.name, {}, 0.0, "", probe.frames)


REGISTRY["slow"] = Slow
