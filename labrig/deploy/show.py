"""A program for people: a text summary and a picture of its masks and tile layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from labrig.deploy.program import Program
from labrig.io import atomic_write
from labrig.optics.conv import kernel_to_mask

__all__ = ["channel_masks", "format_program", "save_program_png"]


def _x(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in shape)


def format_program(program: Program, path: str | Path | None = None) -> str:
    """What `labrig program show` prints."""
    c, mux, ro, inp, be = program.constraints, program.multiplexing, program.readout, program.input, program.backend
    src = program.source
    origin = src.get("checkpoint") or "a student in memory"
    head = f"program {path}" if path is not None else "program"
    lines = [
        f"{head}  (schema {program.schema_version}, hash {program.digest()[:16]})",
        f"  compiled {program.created} for bench {program.profile!r} (profile {c.profile}) from {origin} "
        f"(weights {str(src.get('state_sha256', ''))[:12]})",
        f"  bench:   filter SLM {_x(c.slm_resolution)} {c.slm_modulation} {c.slm_bit_depth}-bit, input modulator "
        f"{_x(c.input_resolution)} {c.input_bit_depth}-bit, camera {_x(c.camera_resolution)} "
        f"{c.camera_bit_depth}-bit, {c.illumination} light",
        f"  optics:  {program.out_channels} channels ({program.detection} detection), {mux.channels} tiles of "
        f"{_x(ro.tile_shape)} with {program.filter.encoding} masks",
        f"  layout:  {mux.mode}: {mux.frames} frame(s) of up to {mux.per_frame} tiles",
        f"           {mux.reason}",
        f"  input:   {_x(inp.image_shape)} images as field {inp.quantity} x {inp.scale:g}, top-left at "
        f"{inp.origin} on the {_x(inp.modulator_shape)} modulator ({len(inp.lut)} levels)",
        "  readout: exposure " + ", ".join(f"{1e3 * e:.3g} ms" for e in ro.exposure_s)
        + f" per frame, gain {ro.gain:g}, laser {1e3 * ro.laser_power_w:.3g} mW",
        f"           {ro.exposure_note}",
    ]
    fitted = (src.get("calibration") or {}).get("readout_correction")
    if ro.correction:
        weight = np.asarray(ro.correction["weight"])
        k = int(weight.shape[-1])
        reads = "every tile" if weight.ndim == 4 else "its own tile"
        macs = int(np.prod(weight.shape)) * int(np.prod(ro.tile_shape))  # every weight once per tile pixel
        how = "" if not fitted else (f" fitted on the {fitted['tiles']}'s tiles of {fitted['probes']} images"
                                     f"{' (' + str(fitted['frames']) + ' frames)' if fitted.get('frames') else ''}; "
                                     f"held-back tile error {fitted['error_before']:.3g} -> {fitted['error_after']:.3g}")
        lines.append(f"           per-tile correction: {k}x{k} filter of {reads} and offset{how}; "
                     f"{macs / 1e6:.2f} M multiply-adds per image on the host")
    elif fitted:
        lines.append(f"           no per-tile correction: it did not help the held-back probes "
                     f"({fitted['error_before']:.3g} -> {fitted['error_after']:.3g})")
    for f, group in enumerate(mux.groups()):
        g = program.filter.gray[f]
        lines.append(f"  frame {f}: channels {group[0]}-{group[-1]}, gray levels {int(g.min())}-{int(g.max())}, "
                     f"mask peak {float(program.filter.peak[f]):.4g}")
    for k, (off, roi) in enumerate(zip(ro.offsets, ro.rois, strict=True)):
        lines.append(f"    tile {k}: centre {tuple(off)} samples, camera ROI rows {roi[0]}-{roi[2]} cols {roi[1]}-{roi[3]}")
    cfg = be.config
    lines.append(f"  back end: {cfg.get('kind')} (norm {cfg.get('norm')}, pool {cfg.get('pool')}) on "
                 f"{be.in_channels} channels -> {be.num_classes} classes, "
                 f"{sum(int(np.asarray(a).size) for a in be.state.values())} parameters and buffers")
    ref = program.reference
    if len(ref.logits):
        lines.append(f"  reference: {len(ref.images)} images; twin predicts classes "
                     f"{[int(i) for i in np.asarray(ref.logits).argmax(1)]}")
    return "\n".join(lines)


def channel_masks(program: Program) -> np.ndarray:
    """(T, N, N) complex: each channel's own mask (no grating, not normalised), for display."""
    shape = tuple(program.filter.gray.shape[-2:])
    kernels = torch.from_numpy(np.asarray(program.filter.kernels))
    return kernel_to_mask(kernels, shape).numpy()


def save_program_png(program: Program, path: str | Path, *, columns: int = 8) -> Path:
    """Per channel |H| and phase; per frame the filter's gray levels and the tile layout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    masks = channel_masks(program)
    mux, ro = program.multiplexing, program.readout
    panels: list[tuple[str, object]] = []
    for f, group in enumerate(mux.groups()):
        panels.append((f"frame {f}: SLM gray levels", ("gray", f)))
        panels.append((f"frame {f}: tiles {group[0]}-{group[-1]} on the camera", ("layout", f)))
    for k in range(len(masks)):
        panels.append((f"ch {k} |H|", ("mag", k)))
        panels.append((f"ch {k} phase", ("phase", k)))
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    cam_rows, cam_cols = program.constraints.camera_resolution
    for ax, (title, (kind, i)) in zip(axes.ravel(), panels, strict=False):
        if kind == "gray":
            ax.imshow(program.filter.gray[i], cmap="twilight", vmin=0, vmax=len(program.filter.lut) - 1)
        elif kind == "layout":
            ax.set_xlim(0, cam_cols)
            ax.set_ylim(cam_rows, 0)
            ax.set_facecolor("black")
            for j, roi in enumerate(ro.rois):
                channel = i * mux.per_frame + j
                if channel >= mux.channels:
                    continue
                ax.add_patch(Rectangle((roi[1], roi[0]), roi[3] - roi[1], roi[2] - roi[0], fill=False,
                                       edgecolor="yellow", lw=0.8))
                ax.text((roi[1] + roi[3]) / 2, (roi[0] + roi[2]) / 2, str(channel), color="yellow",
                        ha="center", va="center", fontsize=7)
            ax.plot([cam_cols / 2], [cam_rows / 2], "r+", ms=6)  # the axis (zero order)
            # tiles stay in the central half: the double-phase residuals land half a grid away
            ax.add_patch(Rectangle((cam_cols / 4, cam_rows / 4), cam_cols / 2, cam_rows / 2, fill=False,
                                   edgecolor="gray", lw=0.6, ls="--"))
        elif kind == "mag":
            ax.imshow(np.log10(np.abs(masks[i]) + 1e-6), cmap="magma")
        else:
            ax.imshow(np.angle(masks[i]), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        ax.set_title(title, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{program.profile}: {mux.channels} channels, {mux.mode} multiplexing, "
                 f"{program.filter.encoding} masks", fontsize=9)
    fig.tight_layout()
    out = atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return out
