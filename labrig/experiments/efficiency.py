"""``labrig experiment efficiency``: what each way of running the network costs
the host, against input resolution.

Three ways, for one image of N×N pixels:

- the nonlinear **teacher**, all electronic;
- the **SCLC student run electronically**: the collapsed convolution done on
  the host, directly (FLOPs ∝ N²·S²) or by FFT (∝ N² log N), then the square
  law and the back end;
- the **hybrid**: the optics convolve for free; the host reads the camera
  tiles and runs the back end. Its latency is the bench's frame time (filter
  settle + camera exposure, from the profile, times the number of frames the
  channels need) plus the host work.

With on-camera binning (``hybrid_binK``: the camera sums K×K pixels, see
`labrig.optics.camera.CameraModel.binned_electrons`), the host reads K² times
fewer pixels per tile, so its read-out and back-end work shrink; a factor is
tried only while a binned tile still has at least the back end's pooling grid.
Energy per image (`labrig.experiments.energy`) multiplies each part's assumed
electrical power by the time it is needed.

FLOPs are counted (hooks on the real modules, and the standard 5·M·log2 M per
complex FFT); latency is measured here, median of `repeats`, batch 1. The
crossover is the smallest N at which the hybrid is cheaper than each
electronic way; `None` when it never is within the sizes tried. The hybrid's
frame-time model assumes a filter SLM large enough for the tiles at every N
(the `sim` bench's 256² SLM holds them only up to N≈100): it is the cost of
the optics, not of this particular bench.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from labrig.experiments.classification import ClassificationConfig
from labrig.experiments.energy import (
    DEFAULT_POWERS,
    HOST_RATE,
    PowerFigure,
    energy_per_image,
    powers_table,
)
from labrig.experiments.jobs import write_json
from labrig.models.flops import count_flops
from labrig.models.runtime import resolve_device
from labrig.models.sclc import full_conv2d
from labrig.models.serialize import config_to_dict
from labrig.models.student import StudentModel
from labrig.models.teacher import TeacherCNN
from labrig.optics.conv import fourier_conv2d
from labrig.optics.grid import fast_size
from labrig.profiles import load_profile
from labrig.timing import median_seconds

DEFAULT_SIZES: tuple[int, ...] = (28, 64, 128, 256, 512, 1024)
WAYS = ("teacher", "sclc_direct", "sclc_fft", "hybrid")
#: on-camera binning factors tried (SFNC cameras commonly offer 2 and 4, some 8)
DEFAULT_BINNING: tuple[int, ...] = (2, 4, 8)


def fft_conv_flops(channels_in: int, channels_out: int, size: int, taps: int) -> int:
    """FLOPs of a full linear convolution by real FFTs: forward transforms of the
    inputs, one complex product per output/input pair and frequency, inverse
    transforms of the outputs (5·M·log2 M per complex M-point FFT, half for real)."""
    m = fast_size(size + taps - 1) ** 2
    fft = 2.5 * m * math.log2(m)
    products = 6 * (m // 2 + 1) * channels_in * channels_out
    return int((channels_in + channels_out) * fft + products)


def bench_frame_time_s(profile: str) -> dict[str, float]:
    """Settle and exposure of one frame on `profile` (the optics' latency per frame)."""
    prof = load_profile(profile)
    devices = prof.data.get("devices", {})
    settle = max(float(devices.get(role, {}).get("settle_s", 0.0)) for role in ("input", "filter"))
    exposure = float(devices.get("camera", {}).get("exposure_s", 1e-3))
    rate = devices.get("camera", {}).get("frame_rate_hz")
    frame = max(settle + exposure, 1.0 / float(rate) if rate else 0.0)
    return {"settle_s": settle, "exposure_s": exposure, "frame_s": frame}


def measure_size(size: int, config: ClassificationConfig, frame: dict[str, float], repeats: int,
                 device: torch.device, binning: tuple[int, ...] = (),
                 powers: dict[str, PowerFigure] | None = None, latency: bool = True) -> dict[str, Any]:
    """FLOPs, latency and energy of the four ways (and the binned hybrids) at one input size."""
    teacher = TeacherCNN(replace(config.teacher, input_size=(size, size))).to(device).eval()
    student = StudentModel(replace(config.student, input_size=(size, size), optics=None)).to(device).eval()
    front = student.front
    kernels = front.collapsed_kernels().detach()
    taps = front.config.collapsed_size
    k = front.config.out_channels
    x = torch.rand(1, 1, size, size, device=device)
    tiles = torch.rand(1, front.out_channels, *front.output_size((size, size)), device=device)
    back = student.back
    back_flops = count_flops(back, lambda: back(tiles))
    square = 3 * k * tiles.shape[-2] * tiles.shape[-1]
    flops = {
        "teacher": int(teacher.flops()),
        "sclc_direct": int(front.digital_flops((size, size)) + back_flops),
        "sclc_fft": int(fft_conv_flops(1, k, size, taps) + square + back_flops),
        "hybrid": int(student.electronic_flops()),
    }
    frames = 1
    times: dict[str, float] = {}
    with torch.no_grad():
        if latency:
            times = {
                "teacher": median_seconds(lambda: teacher(x), repeats, device),
                "sclc_direct": median_seconds(lambda: back(full_conv2d(x, kernels).square()), repeats, device),
                "sclc_fft": median_seconds(lambda: back(fourier_conv2d(x, kernels[:, 0]).square()), repeats, device),
                "hybrid_host": median_seconds(lambda: back(tiles * 1.0 - 0.0), repeats, device),
            }
            times["hybrid"] = times["hybrid_host"] + frames * frame["frame_s"]
        out_h, out_w = tiles.shape[-2:]
        readout = front.readout_flops((size, size))
        for factor in binning:
            h, w = out_h // factor, out_w // factor
            if min(h, w) < back.config.pool:
                continue  # fewer binned pixels than the back end's pooling grid: not this back end
            binned = torch.rand(1, front.out_channels, h, w, device=device)
            way = f"hybrid_bin{factor}"
            flops[way] = int(readout * (h * w) // (out_h * out_w)
                             + count_flops(back, lambda binned=binned: back(binned)))
            if latency:
                times[f"{way}_host"] = median_seconds(lambda binned=binned: back(binned * 1.0 - 0.0), repeats, device)
                times[way] = times[f"{way}_host"] + frames * frame["frame_s"]
    energy = {way: energy_per_image(way, flops, frame["frame_s"], frames, powers) for way in flops}
    return {"size": size, "flops": flops, **({"latency_s": times} if latency else {}), "energy_j": energy,
            "frames": frames,
            "tile": [int(out_h), int(out_w)]}


def crossover(points: list[dict[str, Any]], metric: str, hybrid_key: str = "hybrid") -> dict[str, int | None]:
    """Smallest size from which the hybrid stays cheaper than each electronic way."""
    found: dict[str, int | None] = {}
    for way in ("teacher", "sclc_direct", "sclc_fft"):
        size = None
        for point in reversed(points):
            if hybrid_key in point[metric] and _value(point[metric][hybrid_key]) < _value(point[metric][way]):
                size = point["size"]
            else:
                break
        found[way] = size
    return found


def _value(entry: Any) -> float:
    """A metric's number: itself, or an energy split's total."""
    return float(entry["total"]) if isinstance(entry, dict) else float(entry)


def run_efficiency(
    out: str | Path,
    *,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    profile: str = "sim",
    repeats: int = 7,
    device: str = "auto",
    config: ClassificationConfig | None = None,
    binning: tuple[int, ...] = DEFAULT_BINNING,
    powers: dict[str, PowerFigure] | None = None,
    latency: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every size, find the crossovers, write efficiency.json and efficiency.png."""
    config = config or ClassificationConfig()
    dev = resolve_device(device)
    frame = bench_frame_time_s(profile)
    points = []
    for size in sorted(sizes):
        progress(f"efficiency: {size}x{size}")
        points.append(measure_size(size, config, frame, repeats, dev, tuple(binning), powers, latency))
    metrics = (("flops", "flops"), ("energy", "energy_j")) + ((("latency", "latency_s"),) if latency else ())
    result = {
        "sizes": sorted(sizes),
        "points": points,
        "crossover": {**{metric: crossover(points, key) for metric, key in metrics},
                      **{f"{metric}_bin{k}": crossover(points, key, f"hybrid_bin{k}")
                         for k in binning for metric, key in metrics}},
        "binning": list(binning),
        "latency_measured": latency,
        "powers": powers_table(powers or DEFAULT_POWERS),
        "host_rate_flops": {"value": HOST_RATE[0], "source": HOST_RATE[1]},
        "bench_frame": {"profile": profile, **frame},
        "models": {"teacher": config_to_dict(config.teacher), "student": config_to_dict(config.student)},
        "machine": {"platform": platform.platform(), "device": str(dev), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "repeats": repeats,
    }
    out = Path(out)
    write_json(out / "efficiency.json", result)
    plot_efficiency(result, out / "efficiency.png")
    return result


def plot_efficiency(result: dict[str, Any], path: Path) -> None:
    """FLOPs, latency and energy against N, log-log; binned hybrids dashed; the FFT latency
    crossover marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"teacher": "teacher (electronic)", "sclc_direct": "SCLC electronic, direct",
              "sclc_fft": "SCLC electronic, FFT", "hybrid": "hybrid (optics + host)"}
    labels.update({f"hybrid_bin{k}": f"hybrid, {k}×{k} binned on the camera" for k in result.get("binning", [])})
    wanted = [("flops", "electronic FLOPs per image"), ("latency_s", "latency per image (s)"),
              ("energy_j", "energy per image (J, assumed powers and host rate)")]
    wanted = [(m, y) for m, y in wanted if any(m in p for p in result["points"])]
    fig, axes = plt.subplots(1, len(wanted), figsize=(5 * len(wanted), 4.4))
    panels = [(ax, m, y) for ax, (m, y) in zip(axes, wanted, strict=True)]
    for ax, metric, ylabel in panels:
        for way in labels:
            pts = [p for p in result["points"] if way in (p.get(metric) or {})]
            if not pts:
                continue
            style = "o--" if "_bin" in way else "o-"
            ax.loglog([p["size"] for p in pts], [_value(p[metric][way]) for p in pts], style, label=labels[way],
                      ms=4)
        ax.set_xlabel("input size N (N×N pixels)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    cross = result["crossover"].get("latency", {}).get("sclc_fft")
    if cross is not None and result.get("latency_measured", True):
        axes[1].axvline(cross, color="k", ls="--", lw=1)
        axes[1].annotate(f"hybrid faster from N={cross}", (cross, axes[1].get_ylim()[1]), ha="left", va="top",
                         fontsize=8, xytext=(4, -4), textcoords="offset points")
    axes[-1].set_title(f"frame time {1e3 * result['bench_frame']['frame_s']:.2f} ms ({result['bench_frame']['profile']}), "
                       f"{result['machine']['device']}", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
