"""Periodic twin refit from frames a fine-tune has already measured.

The calibrated twin drives the backward pass of physics-aware training; as the
masks move away from the patterns calibration probed (and the bench ages), a
few of its global parameters can be refitted on the (pattern, frame) pairs the
fine-tune took anyway, at no cost in bench frames. This keeps the last few
batches and, when asked, fits `names` (by default the low-order aberrations and
the filter's shift, which the unmodelled aberrations and SLM flatness partly
project onto) by least squares through the differentiable twin
(`calibration.twinfit.fit_twin`, the global fit's machinery), one brightness
factor per frame, on the program's tile ROIs only (the rest of a frame, the zero
order and the unused orders, is not what the back end reads). A quarter of the stored images is held back: the refit is
kept only when their frame error goes down, so it can never make the twin
worse on frames it did not see. The camera shift is not refitted: drift is the
re-registration's job (`labrig.deploy.track`), which moves the frames instead.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from labrig.optics.system import Twin

__all__ = ["REFIT_PARAMS", "TwinRefit"]

#: the parameters refitted by default
REFIT_PARAMS: tuple[str, ...] = ("zernike_rad", "filter_shift_px")


def _error(measured: np.ndarray, predicted: np.ndarray, mask: np.ndarray) -> float:
    """||m - a p|| / ||m|| inside `mask`, one brightness factor a per frame."""
    measured, predicted = measured * mask, predicted * mask
    num = (measured * predicted).sum(axis=(-2, -1), keepdims=True)
    a = num / np.maximum((predicted * predicted).sum(axis=(-2, -1), keepdims=True), 1e-300)
    return float(np.linalg.norm(measured - a * predicted) / max(float(np.linalg.norm(measured)), 1e-300))


class TwinRefit:
    """Keeps the last `keep` batches of (filter gray, input gray, registered frames) and refits the twin on them."""

    def __init__(self, rois: Any, shape: tuple[int, int], names: tuple[str, ...] = REFIT_PARAMS, *,
                 keep: int = 4, images: int = 8, iterations: int = 15) -> None:
        self.mask = np.zeros(shape)
        for r in np.asarray(rois, dtype=np.int64).reshape(-1, 4):
            self.mask[r[0] : r[2], r[1] : r[3]] = 1.0
        self.names = tuple(names)
        self.images = images
        self.iterations = iterations
        self.batches: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=keep)

    def remember(self, filter_gray: np.ndarray, input_gray: np.ndarray, frames: np.ndarray) -> None:
        """One measured batch: the filter patterns (F, N, N), inputs (B, rows, cols) and the
        frames (B, F, H, W) registered to the twin's ROIs."""
        self.batches.append((np.asarray(filter_gray), np.asarray(input_gray), np.asarray(frames)))

    def _pairs(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """The filter patterns of the latest batch, and up to `images` images with their frames taken
        through them (older batches with other patterns are skipped: one set of masks per fit)."""
        gray = self.batches[-1][0]
        inputs, frames = [], []
        for g, x, f in reversed(self.batches):
            if np.array_equal(g, gray):
                inputs.append(x)
                frames.append(f)
        return gray, inputs, np.concatenate(frames)

    def refit(self, twin: Twin, register: Any = None) -> dict[str, Any] | None:
        """Refit `twin` in place; returns what happened (None: nothing stored yet). `register`
        moves frames as taken to the twin's ROIs (the drift tracker's `correct`)."""
        if not self.batches:
            return None
        from calibration.twinfit import camera_power, fit_twin, working_twin

        gray, inputs_list, frames = self._pairs()
        inputs = np.concatenate(inputs_list)[: self.images]
        frames = frames[: self.images]
        frames = (frames if register is None else register(frames)).astype(np.float64)
        frames = frames - np.median(frames, axis=(-2, -1), keepdims=True)  # the dark level
        groups = gray.shape[0]
        held = max(1, len(inputs) // 4)
        if len(inputs) - held < 1:
            return None
        fit_in, held_in = inputs[:-held], inputs[-held:]
        fit_m = frames[:-held].reshape(-1, *frames.shape[-2:])
        held_m = frames[-held:].reshape(-1, *frames.shape[-2:])

        def render(t: Twin, x: np.ndarray = fit_in) -> torch.Tensor:  # (B*F, H, W), image-major as the frames
            return torch.stack([camera_power(t, x, gray[f]) for f in range(groups)], dim=1).flatten(0, 1)

        work = working_twin(twin)
        with torch.no_grad():
            before = _error(held_m, render(work, held_in).numpy(), self.mask)
        weights = np.broadcast_to(self.mask, fit_m.shape).copy()
        report = fit_twin(work, self.names, render, fit_m, weights, iterations=self.iterations)
        with torch.no_grad():
            after = _error(held_m, render(work, held_in).numpy(), self.mask)
        finite = all(bool(torch.isfinite(v).all()) for v in report.values.values())
        kept = finite and after < before
        if kept:
            imp = twin.imperfections
            with torch.no_grad():
                for name in self.names:
                    p = getattr(imp, name)
                    p.copy_(report.values[name].to(p.dtype))
        return {"kept": kept, "held_error_before": round(before, 5), "held_error_after": round(after, 5),
                "images": len(inputs), **({n: [round(float(v), 4) for v in report.values[n].reshape(-1).tolist()]
                                                  for n in self.names} if kept else {})}
