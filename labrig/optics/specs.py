"""Static descriptions of the bench's parts (what a datasheet says), in SI units."""

from __future__ import annotations

from dataclasses import dataclass

from labrig.optics.grid import Grid

PLANCK_J_S = 6.62607015e-34
SPEED_OF_LIGHT_M_S = 299792458.0


@dataclass(frozen=True)
class ModulatorSpec:
    """A pixelated modulator: the input modulator or the filter SLM.

    `fill_factor` is the active fraction of each pixel's area; `modulation` is
    what the LUT maps gray levels to: phase (radians) or intensity transmission.
    """

    resolution: tuple[int, int]
    pitch_m: float
    bit_depth: int = 8
    fill_factor: float = 1.0
    modulation: str = "phase"

    def __post_init__(self) -> None:
        if self.modulation not in ("phase", "amplitude"):
            raise ValueError(f"modulation must be 'phase' or 'amplitude', got {self.modulation!r}")
        if not 0 < self.fill_factor <= 1:
            raise ValueError(f"fill_factor must be in (0, 1], got {self.fill_factor}")

    @property
    def levels(self) -> int:
        return 1 << self.bit_depth


@dataclass(frozen=True)
class CameraSpec:
    """An area sensor: geometry, photon-to-DN chain and noise (datasheet values)."""

    resolution: tuple[int, int]
    pitch_m: float
    bit_depth: int = 12
    fill_factor: float = 1.0
    quantum_efficiency: float = 0.6
    full_well_e: float = 20000.0
    conversion_dn_per_e: float = 0.2
    read_noise_e: float = 4.0
    dark_current_e_per_s: float = 20.0
    offset_dn: float = 32.0

    @property
    def max_dn(self) -> int:
        return (1 << self.bit_depth) - 1


@dataclass(frozen=True)
class BenchGeometry:
    """Everything fixed about a 4f bench: wavelength, lenses and the three planes.

    The filter SLM's pixels define the simulation grid: the Fourier plane is
    sampled once per SLM pixel, the input plane at wavelength f1 / (N p) and the
    output plane at wavelength f2 / (N p) (the lens scaling).
    """

    wavelength_m: float
    focal1_m: float
    focal2_m: float
    input: ModulatorSpec
    filter: ModulatorSpec
    camera: CameraSpec
    illumination: str = "coherent"
    transmission: float = 1.0

    def __post_init__(self) -> None:
        if self.illumination not in ("coherent", "incoherent"):
            raise ValueError(f"illumination must be 'coherent' or 'incoherent', got {self.illumination!r}")
        for name in ("wavelength_m", "focal1_m", "focal2_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        window = self.input_grid.extent_m
        size = (self.input.resolution[0] * self.input.pitch_m, self.input.resolution[1] * self.input.pitch_m)
        if size[0] > window[0] * (1 + 1e-9) or size[1] > window[1] * (1 + 1e-9):
            raise ValueError(
                f"the input modulator ({size[0] * 1e3:.3g} x {size[1] * 1e3:.3g} mm) is larger than the "
                f"input window the filter SLM samples ({window[0] * 1e3:.3g} x {window[1] * 1e3:.3g} mm = "
                "wavelength * focal1 / filter pitch): shorten focal1_m or use fewer input pixels"
            )

    @property
    def fourier_grid(self) -> Grid:
        return Grid(self.filter.resolution, (self.filter.pitch_m, self.filter.pitch_m))

    @property
    def input_grid(self) -> Grid:
        return self.fourier_grid.fourier(self.wavelength_m, self.focal1_m)

    @property
    def output_grid(self) -> Grid:
        return self.fourier_grid.fourier(self.wavelength_m, self.focal2_m)

    @property
    def magnification(self) -> float:
        """Lateral magnification input -> output; negative: the image is inverted."""
        return -self.focal2_m / self.focal1_m

    @property
    def photon_energy_j(self) -> float:
        return PLANCK_J_S * SPEED_OF_LIGHT_M_S / self.wavelength_m
