"""A bench's `BenchGeometry` read from its profile ([optics] and the device tables).

Shared by the simulated devices (which build their world from it) and the
host side (which builds its twin from it), so both see the same bench.
"""

from __future__ import annotations

from drivers.config import Section
from labrig.optics.specs import BenchGeometry, CameraSpec, ModulatorSpec


def modulator_spec(table: Section, modulation: str) -> ModulatorSpec:
    return ModulatorSpec(
        resolution=table.get_shape("resolution"),
        pitch_m=table.get_float("pitch_m", positive=True),
        bit_depth=table.get_int("bit_depth", 8, min=1, max=16),
        fill_factor=table.get_float("fill_factor", 1.0, min=0.01, max=1.0),
        modulation=modulation,
    )


def camera_spec(table: Section) -> CameraSpec:
    return CameraSpec(
        resolution=table.get_shape("resolution"),
        pitch_m=table.get_float("pitch_m", positive=True),
        bit_depth=table.get_int("bit_depth", 12, min=1, max=16),
        fill_factor=table.get_float("fill_factor", 1.0, min=0.01, max=1.0),
        quantum_efficiency=table.get_float("quantum_efficiency", 0.6, min=0.0, max=1.0),
        full_well_e=table.get_float("full_well_e", 20000.0, positive=True),
        conversion_dn_per_e=table.get_float("conversion_dn_per_e", 0.2, positive=True),
        read_noise_e=table.get_float("read_noise_e", 4.0, min=0.0),
        dark_current_e_per_s=table.get_float("dark_current_e_per_s", 20.0, min=0.0),
        offset_dn=table.get_float("offset_dn", 32.0, min=0.0),
    )


def geometry_from_profile(root: Section) -> BenchGeometry:
    """Geometry of the bench a profile describes; errors name the key and file."""
    optics = root.section("optics")
    devices = root.section("devices")
    for role in ("input", "filter", "camera"):
        if role not in devices:
            raise devices.error(role, "the optical twin needs an input modulator, a filter SLM and a camera")
    filt = devices.section("filter")
    modulation = filt.get_str("modulation", "phase", choices=("phase", "amplitude"))
    return BenchGeometry(
        wavelength_m=optics.get_float("wavelength_m", positive=True),
        focal1_m=optics.get_float("focal1_m", positive=True),
        focal2_m=optics.get_float("focal2_m", positive=True),
        illumination=optics.get_str("illumination", "coherent", choices=("coherent", "incoherent")),
        transmission=optics.get_float("transmission", 1.0, positive=True, max=1.0),
        input=modulator_spec(devices.section("input"), "amplitude"),
        filter=modulator_spec(filt, modulation),
        camera=camera_spec(devices.section("camera")),
    )
