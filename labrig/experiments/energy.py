"""Energy per image: the electrical power of each part times the time it is needed for one image.

The hybrid needs the bench (laser, input modulator, filter SLM, camera) for its
frame time and the host for its read-out and back end; an electronic network
needs the host for its whole work. The host's time is its FLOPs at an assumed
sustained rate (`HOST_RATE`), not a measured latency: measured single-image
latencies on a shared CPU vary a hundredfold with the load, FLOPs do not.
Powers are *assumptions* stated with their source (a datasheet figure where
one was checked, else an order of magnitude for that class of device); none
was measured here. The host's base (idle) power is left out of every way
alike: it is paid whatever runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

BENCH_PARTS = ("laser", "input", "filter", "camera")


@dataclass(frozen=True)
class PowerFigure:
    """One part's electrical power while it works, and where the number comes from."""

    watts: float
    part: str
    source: str

    def __post_init__(self) -> None:
        if not self.watts >= 0:
            raise ValueError(f"{self.part}: power must be >= 0 W, got {self.watts}")


#: the assumed figures (edit here, or pass your own to `energy_per_image`)
DEFAULT_POWERS: dict[str, PowerFigure] = {
    "laser": PowerFigure(5.0, "laser: ~10 mW CW diode-laser module with driver and TEC (electrical)",
                         "assumption: order of magnitude for compact TEC-stabilised diode modules; not checked"),
    "input": PowerFigure(3.0, "input modulator: DMD and its controller board, no LEDs (laser-lit)",
                         "assumption: order of magnitude for DMD evaluation boards without their light engine"),
    "filter": PowerFigure(5.0, "filter SLM: phase-only LCoS panel and driver electronics",
                          "assumption: order of magnitude for LCoS SLM driver units; not checked"),
    "camera": PowerFigure(3.0, "camera: USB3 machine-vision CMOS camera",
                          "datasheet class: Point Grey Flea3 USB3 technical reference, '5 V, <3 W'; "
                          "USB3 bus power is at most 4.5 W"),
    "host": PowerFigure(30.0, "host CPU package above idle while computing",
                        "assumption: a desktop CPU under a single-image load; not measured (no power counters "
                        "on this machine)"),
}


HOST_RATE = (20e9, "assumption: 20 GFLOP/s sustained by the host on single images; the previous "
                   "results page measured 22-49 GFLOP/s for the teacher on this CPU when it was quiet")
"""The host's FLOP rate for the energy model, and where the figure comes from."""


def energy_per_image(way: str, flops: dict[str, float], frame_s: float, frames: int = 1,
                     powers: dict[str, PowerFigure] | None = None,
                     host_rate_flops: float = HOST_RATE[0]) -> dict[str, float]:
    """Energy (J) per image of `way`, split by part: the host's power for its FLOPs at
    `host_rate_flops`; a hybrid way (its name starts with ``hybrid``) adds every bench
    part's power for `frames` × `frame_s`."""
    powers = powers or DEFAULT_POWERS
    if host_rate_flops <= 0:
        raise ValueError(f"host rate must be > 0 FLOP/s, got {host_rate_flops}")
    parts = {}
    if way.startswith("hybrid"):
        optics_s = frames * frame_s
        parts = {part: powers[part].watts * optics_s for part in BENCH_PARTS}
    parts["host"] = powers["host"].watts * flops[way] / host_rate_flops
    parts["total"] = sum(parts.values())
    return parts


def powers_table(powers: dict[str, PowerFigure] | None = None) -> list[dict[str, object]]:
    """The assumed figures as rows (for the report)."""
    return [{"key": key, **asdict(p)} for key, p in (powers or DEFAULT_POWERS).items()]
