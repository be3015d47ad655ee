"""Drift tracking: keep the frames of a long run (or a fine-tune) registered to the program's ROIs.

A bench drifts (thermal, mechanical): after minutes the image sits a fraction
of a pixel, then pixels, away from where the calibration put it, and tiles cut
at the program's fixed ROIs lose signal to their neighbours. The program's
ROIs are where its (calibrated) twin puts the tiles, so the reference is the
twin: every so often the tracker compares a few frames the bench has just
taken with the twin's frames for the same inputs and masks
(`calibration.reregister.measure_shift`: sub-pixel, a few FFTs, no extra
frame), adds the image's displacement to what it has found so far, and from
then on moves every frame back by it before the tiles are cut (a Fourier shift
of the whole frame, which is dark at its edges: the integer part moves the
ROIs, the fraction is interpolated band-limited). The twin and the back end
stay as they were trained.

When to re-register: every `every` images, and sooner when the measured-vs-twin
residual has grown since the last re-registration by more than
`residual_growth` or the image moved more than `step_px` in one interval (the
interval halves, down to every chunk; it relaxes back when the bench is quiet).
A displacement beyond `max_drift_px` is not drift but a knocked bench or the
wrong frames: it is refused and reported, and the run goes on as registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DriftConfig", "DriftTracker"]

#: the twin's frames for input gray levels (B, rows, cols) -> (B, F, H, W), any scale
Expected = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DriftConfig:
    """How often and how far a run follows drift."""

    every: int = 500
    """Images between re-registrations (0: never)."""
    sample: int = 8
    """Images of the chunk compared with the twin at each re-registration."""
    residual_growth: float = 1.5
    """Re-register sooner when the residual before a re-registration exceeds this times
    the residual after the previous one."""
    step_px: float = 0.25
    """Re-register sooner when the image moved more than this in one interval."""
    max_drift_px: float = 3.0
    """A total displacement beyond this is refused (not drift)."""

    def __post_init__(self) -> None:
        if self.every < 0 or self.sample < 1:
            raise ValueError(f"drift tracking: every must be >= 0 and sample >= 1, got {self.every}, {self.sample}")
        if not (self.residual_growth > 1 and self.step_px > 0 and self.max_drift_px > 0):
            raise ValueError("drift tracking: residual_growth must be > 1, step_px and max_drift_px > 0")


def _centred(frames: np.ndarray) -> np.ndarray:
    """(..., H, W) -> (n, H, W) float64, every frame less its median (the dark level: most of a frame is dark)."""
    f = np.asarray(frames, dtype=np.float64).reshape(-1, *np.shape(frames)[-2:])
    return f - np.median(f, axis=(1, 2), keepdims=True)


class DriftTracker:
    """The displacement of the bench's image against the twin, found from frames already taken."""

    def __init__(self, expected: Expected | None = None, config: DriftConfig | None = None) -> None:
        self.expected = expected
        self.config = config or DriftConfig()
        self.displacement = np.zeros(2)
        """(rows, cols) camera px the bench's image sits from where the twin puts it."""
        self.events: list[dict[str, Any]] = []
        self.interval = self.config.every
        self._since: int | None = None  # images since the last re-registration (None: none yet this session)
        self._residual: float | None = None

    # -- frames -------------------------------------------------------------------------------
    def correct(self, frames: np.ndarray) -> np.ndarray:
        """`frames` (..., H, W) moved back by the displacement found, in their own dtype (integer
        frames are rounded and clipped to their range); unchanged while none has been found."""
        if not np.any(np.abs(self.displacement) > 1e-3):
            return frames
        from calibration.reregister import shifted

        out = shifted(np.asarray(frames, dtype=np.float64), -self.displacement)
        if np.issubdtype(frames.dtype, np.integer):
            info = np.iinfo(frames.dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(frames.dtype)
        return out.astype(frames.dtype)

    # -- re-registration ---------------------------------------------------------------------
    def due(self) -> bool:
        """A re-registration is due: the first chunk of a session, then every `interval` images."""
        if not self.config.every or self.expected is None:
            return False
        return self._since is None or self._since >= self.interval

    def observe(self, index: int, input_gray: np.ndarray, frames: np.ndarray) -> dict[str, Any] | None:
        """After a chunk of `frames` (B, F, H, W, as the camera gave them) of images starting at
        `index`: count them, and re-register from its first `sample` images when due."""
        record = None
        if self.due():
            n = min(self.config.sample, len(frames))
            assert self.expected is not None
            record = self.update(frames[:n], self.expected(np.asarray(input_gray[:n])), index=index)
        self._since = (self._since or 0) + len(frames) if record is None else len(frames)
        return record

    def update(self, measured: np.ndarray, expected: np.ndarray, *, index: int | None = None) -> dict[str, Any]:
        """Re-register from the bench's frames `measured` (as taken) and the twin's `expected`
        for the same inputs and masks (same shape, any scale): the displacement grows by what
        the corrected frames still show. Returns the event recorded (``refused`` when the total
        would pass `max_drift_px`)."""
        from calibration.reregister import measure_shift

        m, e = _centred(self.correct(np.asarray(measured))), _centred(expected)
        if m.shape != e.shape:
            raise ValueError(f"measured frames {m.shape} and the twin's {e.shape} differ in shape")
        a = (m * e).sum(axis=(1, 2)) / np.maximum((e * e).sum(axis=(1, 2)), 1e-300)
        before = float(np.linalg.norm(m - a[:, None, None] * e) / max(np.linalg.norm(m), 1e-300))
        step, after = measure_shift(m, e)
        total = self.displacement + step
        cfg = self.config
        event: dict[str, Any] = {"image": index, "step_px": [round(float(v), 4) for v in step],
                                 "residual_before": round(before, 5), "residual_after": round(float(after), 5)}
        if float(np.hypot(*total)) > cfg.max_drift_px:
            event.update(kind="refused", displacement_px=[round(float(v), 4) for v in self.displacement],
                         message=f"the image moved {float(np.hypot(*total)):.3g} px from the twin's ROIs (more than "
                                 f"{cfg.max_drift_px:g} px of drift): kept the last registration; recalibrate")
            self.events.append(event)
            return event
        self.displacement = total
        grown = self._residual is not None and before > cfg.residual_growth * self._residual
        fast = float(np.hypot(*step)) > cfg.step_px
        if cfg.every:
            self.interval = (max(1, self.interval // 2) if (grown or fast) else min(cfg.every, 2 * self.interval))
        self._residual = float(after)
        event.update(kind="reregister", displacement_px=[round(float(v), 4) for v in total],
                     interval=self.interval, residual_grew=bool(grown))
        self.events.append(event)
        return event
