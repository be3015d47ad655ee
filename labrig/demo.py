"""The end-to-end demo on the simulated bench (the README's first command).

A fixed bank of four kernels (identity, blur, two gradients) stands in for a
trained front end: it is compiled to one multiplexed phase pattern, real
Fashion-MNIST images are streamed through `sim-ideal` and `sim`, and the
camera tiles are compared with the digital twin and with the exact digital
convolution. The gap on `sim` is what calibration has to close.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from drivers.errors import LabrigError
from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_kernels, place_inputs, read_tiles
from labrig.geometry import geometry_from_profile
from labrig.io import atomic_write, json_default
from labrig.optics import Twin, fourier_conv2d

DEMO_PROFILES = ("sim-ideal", "sim")
CHUNK = 32


def demo_kernels() -> torch.Tensor:
    """Four 5x5 kernels: identity, 3x3 box blur, horizontal and vertical Sobel."""
    k = torch.zeros(4, 5, 5, dtype=torch.float64)
    k[0, 2, 2] = 1.0
    k[1, 1:4, 1:4] = 1.0 / 9.0
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=torch.float64) / 4
    k[2, 1:4, 1:4] = sobel
    k[3, 1:4, 1:4] = sobel.T
    return k


def default_data_dir() -> Path:
    """$LABRIG_DATA, else ../shared/data/fashion-mnist next to the checkout."""
    env = os.environ.get("LABRIG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def choose_exposure(twin: Twin, filter_gray: np.ndarray, inputs: np.ndarray, bench: Bench, fill: float = 0.6) -> float:
    """Exposure that puts the brightest predicted pixel at `fill` of the ADC range."""
    spec = twin.geometry.camera
    probe = bench.camera.exposure_s
    with torch.no_grad():
        frames = twin.frame(
            torch.from_numpy(inputs).long(), torch.from_numpy(filter_gray).long(),
            laser_power_w=bench.laser.power_w, exposure_s=probe, gain=bench.camera.gain,
        )
    signal = float(frames.max()) - spec.offset_dn
    if signal <= 0:
        raise LabrigError("demo: the twin predicts a dark camera; check the profile's laser power and transmission")
    lo, hi = bench.camera.exposure_bounds_s
    return float(np.clip(probe * fill * (spec.max_dn - spec.offset_dn) / signal, lo, hi))


def acquire(bench: Bench, inputs: np.ndarray, progress: bool, cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Frames for each input pattern: the batched path where the camera has one."""
    frames = []
    batched = hasattr(bench.camera, "grab_batch")
    step = CHUNK if batched else 1
    with tqdm(total=len(inputs), desc=f"{bench.profile.name}", unit="img", disable=not progress) as bar:
        for start in range(0, len(inputs), step):
            if cancel is not None and cancel():
                raise KeyboardInterrupt("demo cancelled")
            chunk = inputs[start : start + step]
            if batched:
                frames.append(bench.camera.grab_batch(chunk))
            else:
                bench.input.show(chunk[0])
                frames.append(bench.camera.grab()[None])
            bar.update(len(chunk))
    return np.concatenate(frames)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def run_profile(profile: str, images: torch.Tensor, kernels: torch.Tensor, progress: bool) -> dict[str, Any]:
    with Bench.open(profile) as bench:
        geometry = geometry_from_profile(bench.profile.root)
        twin = Twin(geometry)  # what the host knows before any calibration: an ideal bench
        n = tuple(images.shape[-2:])
        compiled = compile_kernels(kernels, geometry, n, bench.filter.lut)
        inputs = place_inputs(images.numpy(), bench.input.resolution, twin.input_modulator.gray_for_amplitude)
        bench.filter.show(compiled.filter_gray)
        bench.camera.exposure_s = choose_exposure(twin, compiled.filter_gray, inputs[:8], bench)
        bench.guard.arm()
        t0 = time.perf_counter()
        try:
            frames = acquire(bench, inputs, progress)
        finally:
            bench.guard.make_safe()
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            predicted = twin.frame(
                torch.from_numpy(inputs).long(), torch.from_numpy(compiled.filter_gray).long(),
                laser_power_w=bench.laser.power_w, exposure_s=bench.camera.exposure_s, gain=bench.camera.gain,
            ).numpy()
        offset = geometry.camera.offset_dn
        measured = read_tiles(frames, compiled, offset)
        expected = read_tiles(predicted, compiled, offset)
        digital = fourier_conv2d(images.to(torch.float64)[:, None], kernels[None]).square().numpy()
        return {
            "profile": profile,
            "images": len(images),
            "exposure_s": bench.camera.exposure_s,
            "frames_per_s": len(images) / seconds,
            "twin_rel_error": float(np.linalg.norm(measured - expected) / np.linalg.norm(expected)),
            "twin_correlation": _correlation(measured, expected),
            "digital_correlation": [_correlation(measured[:, k], digital[:, k]) for k in range(kernels.shape[0])],
            "saturated_fraction": float(np.mean(frames >= geometry.camera.max_dn)),
            "frame": frames[0],
            "tiles": measured[0],
            "twin_tiles": expected[0],
            "digital_tiles": digital[0],
            "layout": [list(o) for o in compiled.layout.offsets],
        }


def plot(results: list[dict[str, Any]], image: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["identity", "blur", "d/dx", "d/dy"]
    rows = 1 + 2 * len(results)
    fig, axes = plt.subplots(rows, 5, figsize=(12, 2.4 * rows))
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title("input")
    for k in range(4):
        axes[0, k + 1].imshow(results[0]["digital_tiles"][k], cmap="magma")
        axes[0, k + 1].set_title(f"|x*h|^2 {names[k]}")
    for i, r in enumerate(results):
        top = 1 + 2 * i
        axes[top, 0].imshow(r["frame"], cmap="magma")
        axes[top, 0].set_title(f"{r['profile']} frame")
        axes[top + 1, 0].axis("off")
        axes[top + 1, 0].text(0, 0.5, f"{r['profile']}\nvs twin: {100 * r['twin_rel_error']:.2f} %\n"
                              f"{r['frames_per_s']:.0f} frames/s", fontsize=9)
        for k in range(4):
            axes[top, k + 1].imshow(r["tiles"][k], cmap="magma")
            axes[top, k + 1].set_title(f"camera {names[k]} r={r['digital_correlation'][k]:.3f}", fontsize=8)
            axes[top + 1, k + 1].imshow(r["twin_tiles"][k], cmap="magma")
            axes[top + 1, k + 1].set_title("twin prediction", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def run_demo(
    out_dir: Path, data_dir: Path | None = None, n_images: int = 256, progress: bool = True,
    profiles: tuple[str, ...] = DEMO_PROFILES,
) -> dict[str, Any]:
    """Run the demo, write ``summary.json`` and ``demo.png`` into `out_dir`."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    dataset = load_dataset(data_dir, split="test")
    images = dataset.images[:n_images, 0].to(torch.float64) / 255.0
    kernels = demo_kernels()
    results = [run_profile(p, images, kernels, progress) for p in profiles]
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, images[0].numpy(), out_dir / "demo.png")
    summary = {
        "data": str(data_dir),
        "kernels": ["identity", "blur3x3", "sobel_x", "sobel_y"],
        "results": [{k: v for k, v in r.items() if not isinstance(v, np.ndarray)} for r in results],
    }
    atomic_write(out_dir / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2, default=json_default)))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'profile':<10} {'images':>6} {'frames/s':>9} {'vs twin':>8} {'corr twin':>9}  corr |x*h|^2 per channel"]
    for r in summary["results"]:
        corr = " ".join(f"{c:.3f}" for c in r["digital_correlation"])
        lines.append(
            f"{r['profile']:<10} {r['images']:>6} {r['frames_per_s']:>9.0f} {100 * r['twin_rel_error']:>7.2f}% "
            f"{r['twin_correlation']:>9.4f}  {corr}"
        )
    return "\n".join(lines)
