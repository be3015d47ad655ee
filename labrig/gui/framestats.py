"""Numbers the live view shows about a frame: saturation, per-tile intensity, frame rate.

Pure numpy, no Qt, so they are tested without a display and cost little per frame
(the live view calls them at the camera's frame rate).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

import numpy as np

__all__ = ["RateMeter", "roi_means", "saturated_fraction"]

Rect = tuple[int, int, int, int]  # top, left, bottom (excl.), right (excl.) in camera pixels


def saturated_fraction(frame: np.ndarray, max_value: int) -> float:
    """Fraction of pixels at or above the camera's full scale (clipped: the reading is wrong)."""
    if frame.size == 0:
        return 0.0
    return float(np.count_nonzero(frame >= max_value)) / frame.size


def roi_means(frame: np.ndarray, rois: Sequence[Rect]) -> list[float]:
    """Mean counts in each ROI, clipped to the frame; NaN for an ROI wholly outside it."""
    rows, cols = frame.shape[-2:]
    out = []
    for top, left, bottom, right in rois:
        t, b = max(0, int(top)), min(rows, int(bottom))
        lft, r = max(0, int(left)), min(cols, int(right))
        out.append(float(frame[t:b, lft:r].mean()) if b > t and r > lft else float("nan"))
    return out


class RateMeter:
    """Events per second over a sliding window of the last `window` ticks."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=max(2, int(window)))
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        self._times.append(time.perf_counter() if now is None else now)
        self.count += 1

    def reset(self) -> None:
        self._times.clear()
        self.count = 0

    @property
    def rate(self) -> float:
        """Ticks per second over the window; 0 until two ticks are in."""
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
