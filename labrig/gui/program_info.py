"""What the Model and program dock shows, taken from a compiled program or a checkpoint.

A compiled `labrig.deploy.Program` carries its masks, gray levels and tile layout;
a checkpoint carries only the student, whose collapsed kernels give the masks
(through the engine's `kernel_to_mask`). Both become one `ProgramView` of plain
numpy arrays, so the dock draws either the same way. No Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labrig.hil.lineage import lineage_rows
from labrig.optics.conv import kernel_to_mask

__all__ = ["ProgramView", "checkpoint_view", "program_rois", "program_view"]

Rect = tuple[int, int, int, int]


@dataclass
class ProgramView:
    """Arrays per channel and per frame, plus a summary as (key, value) rows."""

    kind: str
    """``program`` (compiled, runnable) or ``checkpoint`` (a student, not yet compiled)."""
    summary: list[tuple[str, str]]
    kernels: np.ndarray
    """(K, S, S) real (or complex) kernels, one per optical channel."""
    channel_masks: np.ndarray
    """(K, N, N) complex: each channel's Fourier mask on its own (no grating)."""
    frame_masks: np.ndarray | None = None
    """(F, N, N) complex: the multiplexed mask each frame shows (programs only)."""
    frame_gray: np.ndarray | None = None
    """(F, N, N) gray levels on the filter SLM (programs only)."""
    lut: np.ndarray | None = None
    modulation: str = "phase"
    rois: list[Rect] = field(default_factory=list)
    camera_shape: tuple[int, int] | None = None
    groups: list[list[int]] = field(default_factory=list)
    """Channel indices on each frame."""

    @property
    def channels(self) -> int:
        return int(self.kernels.shape[0])

    @property
    def frames(self) -> int:
        return 0 if self.frame_gray is None else int(self.frame_gray.shape[0])

    def frame_of(self, channel: int) -> int:
        for f, group in enumerate(self.groups):
            if channel in group:
                return f
        return 0


def _masks(kernels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    with torch.no_grad():
        return kernel_to_mask(torch.from_numpy(np.asarray(kernels)), shape).numpy()


def program_rois(program: Any) -> list[Rect]:
    """Camera ROIs (top, left, bottom, right) of a program's tiles; [] for anything else."""
    readout = getattr(program, "readout", None)
    rois = getattr(readout, "rois", None)
    return [tuple(int(v) for v in r) for r in rois] if rois is not None else []  # type: ignore[misc]


def program_view(program: Any, path: str = "") -> ProgramView:
    """The view of a compiled program (`labrig.deploy.Program`)."""
    flt = program.filter
    gray = np.asarray(flt.gray)
    kernels = np.asarray(flt.kernels)
    n = gray.shape[-2:]
    mux = program.multiplexing
    c = program.constraints
    summary = [
        ("file", path or "-"),
        ("profile", str(program.profile)),
        ("detection", str(program.detection)),
        ("channels", f"{mux.channels} ({program.out_channels} read by the back end)"),
        ("multiplexing", f"{mux.mode}: {mux.frames} frame(s), {mux.per_frame} per frame"),
        ("why", str(mux.reason)),
        ("filter encoding", str(flt.encoding)),
        ("filter SLM", f"{c.slm_resolution[1]}×{c.slm_resolution[0]}, {c.slm_bit_depth} bit {c.slm_modulation}"),
        ("tile", f"{program.readout.tile_shape[1]}×{program.readout.tile_shape[0]} samples"),
        ("exposure", ", ".join(f"{e * 1e3:.3g} ms" for e in program.readout.exposure_s)),
        ("classes", ", ".join(program.backend.classes)),
        ("created", str(program.created)),
        ("digest", program.digest()[:16] + "…"),
        *lineage_rows(program),
    ]
    return ProgramView(
        kind="program",
        summary=summary,
        kernels=kernels,
        channel_masks=_masks(kernels, (int(n[0]), int(n[1]))),
        frame_masks=np.asarray(flt.masks),
        frame_gray=gray,
        lut=np.asarray(flt.lut),
        modulation=str(c.slm_modulation),
        rois=program_rois(program),
        camera_shape=tuple(c.camera_resolution),  # type: ignore[arg-type]
        groups=mux.groups(),
    )


def checkpoint_view(model: Any, checkpoint: Any, path: str = "") -> ProgramView:
    """The view of a student checkpoint: its collapsed kernels and their masks on the
    linear-convolution grid (image + kernel - 1), before any compilation."""
    with torch.no_grad():
        kernels = model.front.collapsed_kernels().detach().cpu()
    kernels = kernels[:, 0].numpy()  # one input channel on the bench
    s = kernels.shape[-1]
    size = tuple(int(v) for v in model.config.input_size)
    grid = (size[0] + s - 1, size[1] + s - 1)
    metrics = getattr(checkpoint, "metrics", {}) or {}
    summary = [
        ("file", path or "-"),
        ("model", f"{getattr(checkpoint, 'kind', '?')} (not compiled: compile it for this bench)"),
        ("channels", str(kernels.shape[0])),
        ("kernel", f"{s}×{s}"),
        ("input", f"{size[1]}×{size[0]}"),
        ("mode", str(getattr(model, "mode", "-"))),
        ("epoch", str(getattr(checkpoint, "epoch", "-"))),
    ] + [(f"metric {k}", f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()
         if isinstance(v, int | float | str)]
    return ProgramView(kind="checkpoint", summary=summary, kernels=kernels,
                       channel_masks=_masks(kernels, grid))
