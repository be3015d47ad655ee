"""Throughput of the digital twin and of the simulated bench.

    python benchmarks/twin.py [--quick] [--json out.json]

Cases: 28x28 and 256x256 inputs, 16 output channels, collapsed 5x5 kernels.

* twin: the training form (one Fourier mask per channel on the padded grid,
  input modulator and camera sampled 1:1), float32, forward and forward+backward,
  against a plain ``fft2 -> multiply -> ifft2 -> |.|^2`` torch pipeline on the
  same tensors (same run, so the ratio is meaningful on a noisy machine).
* sim bench: the batched path of `SimWorld.render_batch` - all 16 channels
  spatially multiplexed into one camera frame per image - on the smallest
  filter-SLM grid that holds the 16 tiles clear of the zero order and the
  double-phase residual, with the truth off and on; plus the embedded `sim`
  profile (256 x 256 SLM) for the 28x28 case. Frames per second = images/s.

Medians of repeated timings; CUDA cases run when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from labrig.geometry import geometry_from_profile
from labrig.optics import BenchGeometry, CameraSpec, ModulatorSpec, Twin, fast_size_for_tiles
from labrig.optics.conv import kernel_to_mask
from labrig.optics.grid import padded_size
from labrig.profiles import load_profile
from sim_backend.truth import FaultPlan, Truth, read_truth
from sim_backend.world import SimWorld

CHANNELS = 16
KERNEL = 5
WAVELENGTH = 532e-9
SLM_PITCH = 8e-6
INPUT_PITCH = 16e-6


def one_to_one_geometry(grid: int, n_input: int) -> BenchGeometry:
    """A bench whose input pixels and camera pixels are one simulation sample each."""
    f1 = grid * SLM_PITCH * INPUT_PITCH / WAVELENGTH
    return BenchGeometry(
        wavelength_m=WAVELENGTH, focal1_m=f1, focal2_m=f1 / 2,
        input=ModulatorSpec((n_input, n_input), INPUT_PITCH, 8, 1.0, "amplitude"),
        filter=ModulatorSpec((grid, grid), SLM_PITCH, 8, 1.0, "phase"),
        camera=CameraSpec((grid, grid), INPUT_PITCH / 2, 12),
        transmission=1e-5,
    )


def median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_twin(n: int, batch: int, device: str, repeats: int) -> dict[str, float]:
    grid = padded_size(n, KERNEL)
    twin = Twin(one_to_one_geometry(grid, n), dtype=torch.float32).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, n, n, generator=gen).to(device)
    kernels = torch.randn(CHANNELS, KERNEL, KERNEL, generator=gen, dtype=torch.float64)
    masks = kernel_to_mask(kernels, (grid, grid)).to(torch.complex64).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def twin_forward() -> torch.Tensor:
        return twin.camera_power(twin.output_power(x, masks, 1e-3))

    mask_param = masks.clone().requires_grad_(True)

    def twin_backward() -> None:
        out = twin.camera_power(twin.output_power(x, mask_param, 1e-3))
        out.sum().backward()

    xp = torch.nn.functional.pad(x, (0, grid - n, 0, grid - n)).to(torch.complex64)

    def plain_forward() -> torch.Tensor:
        y = torch.fft.ifft2(torch.fft.fft2(xp) * masks)
        return y.real.square() + y.imag.square()

    plain_param = masks.clone().requires_grad_(True)

    def plain_backward() -> None:
        y = torch.fft.ifft2(torch.fft.fft2(xp) * plain_param)
        (y.real.square() + y.imag.square()).sum().backward()

    with torch.no_grad():
        tf = median_time(twin_forward, repeats, sync)
        pf = median_time(plain_forward, repeats, sync)
    tb = median_time(twin_backward, repeats, sync)
    pb = median_time(plain_backward, repeats, sync)
    return {
        "grid": grid, "batch": batch,
        "twin_fwd_img_s": batch / tf, "twin_fwdbwd_img_s": batch / tb,
        "plain_fwd_img_s": batch / pf, "plain_fwdbwd_img_s": batch / pb,
    }


def sim_world(geometry: BenchGeometry, truth_on: bool) -> SimWorld:
    root = load_profile("sim").root
    truth = read_truth(root, geometry) if truth_on else Truth(
        Twin(geometry).imperfections, False, 0, (0.0, 0.0), 0.0
    )
    world = SimWorld(geometry, truth, FaultPlan())
    world.laser_enabled, world.shutter_open, world.laser_power_w = True, True, 0.01
    return world


def bench_sim(world: SimWorld, n: int, batch: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    rows, cols = world.geometry.input.resolution
    inputs = np.zeros((batch, rows, cols), np.uint8)
    top, left = (rows - n) // 2, (cols - n) // 2
    inputs[:, top : top + n, left : left + n] = rng.integers(0, 256, (batch, n, n))
    world.show_filter(rng.integers(0, 256, world.geometry.filter.resolution).astype(np.uint8))
    t = median_time(lambda: world.render_batch(inputs, 1e-3, 1.0), repeats, lambda: None)
    return batch / t


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller batches")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "twin": [], "sim": [],
    }
    for n, batch in ((28, 64 if args.quick else 256), (256, 2 if args.quick else 8)):
        for device in devices:
            row = {"input": n, "channels": CHANNELS, "device": device, **bench_twin(n, batch, device, repeats)}
            results["twin"].append(row)
            print(
                f"twin  {n:>3}x{n:<3} x{CHANNELS} {device:>4} grid {row['grid']:>4}: "
                f"fwd {row['twin_fwd_img_s']:9.1f} img/s (plain {row['plain_fwd_img_s']:9.1f}, "
                f"ratio {row['twin_fwd_img_s'] / row['plain_fwd_img_s']:.2f})  "
                f"fwd+bwd {row['twin_fwdbwd_img_s']:9.1f} img/s (plain {row['plain_fwdbwd_img_s']:9.1f})"
            )
    sim_cases = [("minimal", 28, fast_size_for_tiles(CHANNELS, 28, KERNEL), 256 if args.quick else 512)]
    sim_cases.append(("sim profile", 28, None, 64 if args.quick else 256))
    sim_cases.append(("minimal", 256, fast_size_for_tiles(CHANNELS, 256, KERNEL), 2 if args.quick else 4))
    for label, n, grid, batch in sim_cases:
        if grid is None:
            geometry = geometry_from_profile(load_profile("sim").root)
        else:
            geometry = one_to_one_geometry(grid, n)
        for truth_on in (False, True):
            fps = bench_sim(sim_world(geometry, truth_on), n, batch, repeats)
            row = {"input": n, "channels": CHANNELS, "bench": label, "grid": geometry.filter.resolution[0],
                   "truth": truth_on, "batch": batch, "frames_s": fps}
            results["sim"].append(row)
            print(f"sim   {n:>3}x{n:<3} x{CHANNELS} {label:>11} grid {row['grid']:>4} "
                  f"truth {'on ' if truth_on else 'off'}: {fps:9.1f} frames/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
