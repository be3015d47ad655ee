"""How a run went: `RunResult`, its JSON report and a one-screen summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labrig.io import atomic_write, json_default

__all__ = ["REPORT_KEYS", "RunResult", "format_result", "write_report"]

#: keys of the JSON report (`RunResult.to_report`), stable for scripts and the demo
REPORT_KEYS = (
    "status", "error", "path", "program_hash", "profile", "device", "images", "total", "session_images",
    "frames", "frames_per_image", "accuracy", "twin_accuracy", "accuracy_drop_vs_twin", "twin_tile_rel_error",
    "twin_tile_rel_error_max", "frames_per_s", "images_per_s", "timing", "faults", "not_measured", "drift",
)


@dataclass
class RunResult:
    """The outcome of `run_program`. Accuracies cover every image in the run file
    (all sessions); rates and `timing` cover this session only."""

    status: str
    """``complete``, ``cancelled``, ``interrupted``, ``fault``, ``light-off`` (made safe or dark
    under the run) or ``error``."""
    path: Path | None
    program_hash: str
    profile: str
    device: str
    images: int
    """Images measured so far (in the run file, over all sessions)."""
    total: int
    session_images: int
    frames: int
    """Camera frames grabbed in this session."""
    frames_per_image: int
    accuracy: float | None
    twin_accuracy: float | None
    twin_tile_rel_error: float | None
    """‖bench tiles − twin tiles‖ / ‖twin tiles‖ over every compared image (back-end input units)."""
    twin_tile_rel_error_max: float | None
    frames_per_s: float
    images_per_s: float
    timing: dict[str, float]
    error: str | None = None
    predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    tiles: np.ndarray | None = field(default=None, repr=False)
    """Raw tile DN (images, T, th, tw), kept only for runs without a file."""
    faults: dict[str, int] = field(default_factory=dict)
    """Device faults met in this session, by error type (each retried, reconnected or fatal)."""
    not_measured: list[int] | None = None
    """[first, end) of the images in flight when the run stopped: not recorded, measured again on resume."""
    drift: list[dict[str, Any]] | None = None
    """The re-registrations of this session when the run followed drift (`labrig.deploy.track`)."""

    @property
    def accuracy_drop_vs_twin(self) -> float | None:
        if self.accuracy is None or self.twin_accuracy is None:
            return None
        return self.twin_accuracy - self.accuracy

    def to_report(self) -> dict[str, Any]:
        return {key: (str(getattr(self, key)) if key == "path" and self.path is not None else getattr(self, key))
                for key in REPORT_KEYS}


def write_report(result: RunResult, path: str | Path) -> Path:
    """The JSON report, atomically."""
    text = json.dumps(result.to_report(), indent=2, default=json_default)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text + "\n"))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def format_result(result: RunResult) -> str:
    """A few lines for the terminal."""
    t = result.timing
    lines = [
        f"run {result.status}: {result.images} of {result.total} images on {result.profile} "
        f"({result.frames_per_image} frame(s) per image, back end on {result.device})",
        f"  accuracy {_pct(result.accuracy)}   twin {_pct(result.twin_accuracy)}"
        + (f"   drop {100 * result.accuracy_drop_vs_twin:+.2f} points" if result.accuracy_drop_vs_twin is not None
           else ""),
    ]
    if result.twin_tile_rel_error is not None:
        lines.append(f"  tiles vs twin: relative error {result.twin_tile_rel_error:.3g} "
                     f"(worst image {result.twin_tile_rel_error_max:.3g})")
    lines.append(
        f"  {result.frames_per_s:.0f} frames/s, {result.images_per_s:.0f} images/s; "
        f"wall {t.get('wall_s', 0):.2f} s = devices {t.get('device_s', 0):.2f} s + software "
        f"{t.get('software_s', 0):.2f} s ({t.get('software_per_frame_ms', 0):.3f} ms/frame, overlapped)"
    )
    if result.drift:
        moved = [e for e in result.drift if e["kind"] == "reregister"]
        refused = len(result.drift) - len(moved)
        last = moved[-1]["displacement_px"] if moved else [0.0, 0.0]
        lines.append(f"  drift: {len(moved)} re-registrations, image at ({last[0]:+.2f}, {last[1]:+.2f}) px from the "
                     f"twin's ROIs at the end" + (f"; {refused} refused (moved too far)" if refused else ""))
    if result.path is not None:
        lines.append(f"  run file {result.path}")
    if result.error:
        lines.append(f"  {result.error}")
    return "\n".join(lines)
