"""Gradients through the whole twin (float64 gradcheck) and the straight-through
phase quantiser."""

from __future__ import annotations

import math

import pytest
import torch
from optics_helpers import bench
from torch import nn
from torch.func import functional_call

from labrig.optics import (
    Imperfections,
    Twin,
    gamma_phase_lut,
    ideal_phase_lut,
    nearest_gray_level,
    quantize_phase,
)

LASER_W = 4e-9
EXPOSURE_S = 5e-5
N = 16
N_IN = (6, 5)

# imperfection values away from kinks (sub-pixel shifts, no lattice edges meeting)
VALUES = {
    "input_shift_px": [0.23, -0.17],
    "filter_shift_px": [0.31, -0.12],
    "camera_shift_px": [0.29, -0.37],
    "camera_rotation_rad": 0.013,
    "camera_scale": 1.021,
    "input_rotation_rad": -0.011,
    "zernike_rad": [0.3, -0.2, 0.15, 0.1, -0.25, 0.05],
    "slm_crosstalk_px": 0.45,
    "illumination_waist_m": 1.5e-4,
    "illumination_center_m": [1e-5, -2e-5],
    "camera_gain": 1.1,
    "camera_offset_dn": 2.5,
}
# gradcheck perturbs every input by the same eps: parameters in metres enter in these units
UNITS = {"illumination_waist_m": 1e-4, "illumination_center_m": 1e-5}



class _Chain(nn.Module):
    """amplitude, filter phase -> expected DN (the training path, continuous phase)."""

    def __init__(self, twin: Twin) -> None:
        super().__init__()
        self.twin = twin

    def forward(self, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        t = self.twin.filter_transmission_from_phase(phase, quantize=False)
        power = self.twin.camera_power(self.twin.output_power(amplitude, t, LASER_W))
        return self.twin.expected_dn(power, EXPOSURE_S)


def _chain() -> _Chain:
    geometry = bench(N, N_IN)
    return _Chain(Twin(geometry, Imperfections(geometry, **VALUES), dtype=torch.float64))


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    amplitude = 0.3 + 0.7 * torch.rand(N_IN, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(N, N, generator=g, dtype=torch.float64)
    return amplitude.requires_grad_(), phase.requires_grad_()


def _call(chain: _Chain, names: tuple[str, ...]):
    def fn(amplitude, phase, *params):
        values = {f"twin.imperfections.{n}": p * UNITS.get(n, 1.0) for n, p in zip(names, params, strict=True)}
        return functional_call(chain, values, (amplitude, phase))

    def params():
        return tuple(
            (getattr(chain.twin.imperfections, n).detach().clone() / UNITS.get(n, 1.0)).requires_grad_() for n in names
        )

    return fn, params()


def test_signal_is_in_the_linear_range():
    """The gradchecks below are meaningful only away from full-well / ADC clipping."""
    chain = _chain()
    with torch.no_grad():
        dn = chain(*_inputs())
    spec = chain.twin.geometry.camera
    clip = min(spec.max_dn, spec.offset_dn + spec.full_well_e * spec.conversion_dn_per_e * 1.1)
    assert 200 < float(dn.max()) < 0.8 * clip
    assert float(dn.min()) > 0


def test_gradcheck_amplitude_and_phase():
    chain = _chain()
    fn, _ = _call(chain, ())
    assert torch.autograd.gradcheck(fn, _inputs(), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


GROUPS = [
    ("camera_shift_px", "camera_rotation_rad", "camera_scale", "camera_gain", "camera_offset_dn"),
    ("zernike_rad", "slm_crosstalk_px", "filter_shift_px"),
    ("illumination_waist_m", "illumination_center_m", "input_shift_px", "input_rotation_rad"),
]


@pytest.mark.parametrize("names", GROUPS, ids=["camera", "fourier", "input"])
def test_gradcheck_imperfections(names):
    """Full (not fast-mode) Jacobian w.r.t. the imperfection parameters, together
    with the input amplitudes and the filter phase."""
    chain = _chain()
    fn, params = _call(chain, names)
    amplitude, phase = _inputs(1)
    # amplitude and phase get the cheap check; parameters the full Jacobian
    assert torch.autograd.gradcheck(
        lambda *p: fn(amplitude.detach(), phase.detach(), *p), params, eps=1e-6, atol=1e-6, rtol=1e-4
    )
    assert torch.autograd.gradcheck(fn, (amplitude, phase, *params), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradients_reach_every_parameter():
    """Every listed imperfection gets a nonzero gradient (none is silently cut off)."""
    chain = _chain()
    names = tuple(n for g in GROUPS for n in g)
    fn, params = _call(chain, names)
    amplitude, phase = _inputs(2)
    fn(amplitude, phase, *params).square().mean().backward()
    for n, p in zip(names, params, strict=True):
        assert p.grad is not None and float(p.grad.abs().max()) > 0, n
    assert float(amplitude.grad.abs().max()) > 0 and float(phase.grad.abs().max()) > 0


# ---------------------------------------------------------------------------- quantiser
def _circular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi).abs()


LUTS = {
    "ideal-8": ideal_phase_lut(8),
    "ideal-256": ideal_phase_lut(256),
    "gamma-short": gamma_phase_lut(64, 1.8 * math.pi, 1.3),  # does not reach 2 pi
    "gamma-long": gamma_phase_lut(64, 2.4 * math.pi, 0.8),  # wraps past 2 pi
    "shuffled": ideal_phase_lut(16)[torch.randperm(16, generator=torch.Generator().manual_seed(0))] - 3.0,
}


@pytest.mark.parametrize("name", list(LUTS))
def test_nearest_gray_level_is_circularly_nearest(name):
    lut = LUTS[name]
    g = torch.Generator().manual_seed(1)
    phase = (torch.rand(4000, generator=g, dtype=torch.float64) - 0.3) * 6 * math.pi  # negative and > 2 pi too
    level = nearest_gray_level(phase, lut)
    assert level.dtype == torch.long and int(level.min()) >= 0 and int(level.max()) < len(lut)
    best = _circular_distance(phase[:, None], lut[None, :]).min(-1).values
    torch.testing.assert_close(_circular_distance(phase, lut[level]), best, rtol=0, atol=1e-12)


def test_nearest_gray_level_across_the_wrap():
    lut = ideal_phase_lut(8)
    phases = torch.tensor([2 * math.pi - 0.01, -0.01, 0.01, 7 * math.pi / 4 + 0.01, 4 * math.pi + 0.2, -math.pi / 4 + 0.5],
                          dtype=torch.float64)
    assert nearest_gray_level(phases, lut).tolist() == [0, 0, 0, 7, 0, 0]
    short = gamma_phase_lut(64, 1.8 * math.pi, 1.0)  # top level at 1.8 pi * 63/64
    top = float(short[-1])
    near_zero = 0.5 * (top + 2 * math.pi) + 0.05  # past the midpoint of the gap: nearer to level 0 across 2 pi
    near_top = 0.5 * (top + 2 * math.pi) - 0.05
    assert nearest_gray_level(torch.tensor([near_zero, near_top], dtype=torch.float64), short).tolist() == [0, 63]


@pytest.mark.parametrize("name", list(LUTS))
def test_quantize_phase_forward_shows_lut_values(name):
    """Forward: exp(i shown) = exp(i LUT[nearest level]); the value stays congruent to
    the wanted phase (within pi of it)."""
    lut = LUTS[name]
    g = torch.Generator().manual_seed(2)
    phase = (torch.rand(64, 64, generator=g, dtype=torch.float64) - 0.5) * 8 * math.pi
    shown = quantize_phase(phase, lut)
    level = nearest_gray_level(phase, lut)
    torch.testing.assert_close(_circular_distance(shown, lut[level]), torch.zeros_like(shown), rtol=0, atol=1e-12)
    assert float((shown - phase).abs().max()) <= math.pi + 1e-12
    if name == "ideal-256":
        assert float((shown - phase).abs().max()) <= math.pi / 256 + 1e-12


def test_quantize_phase_backward_is_identity():
    lut = ideal_phase_lut(16)
    g = torch.Generator().manual_seed(3)
    phase = (4 * math.pi * torch.rand(32, 32, generator=g, dtype=torch.float64)).requires_grad_()
    weight = torch.randn(32, 32, generator=g, dtype=torch.float64)
    (weight * quantize_phase(phase, lut)).sum().backward()
    assert torch.equal(phase.grad, weight)
    assert quantize_phase(phase.detach(), lut).grad_fn is None


def test_twin_quantised_gradient_is_the_surrogate():
    """Through the twin, the quantised path's gradient at phase p equals the
    continuous path's gradient at the quantised phase q(p) (straight-through)."""
    chain = _chain()
    twin = chain.twin
    amplitude, phase = _inputs(4)
    amplitude = amplitude.detach()
    weight = torch.randn(twin.geometry.camera.resolution, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def loss(t):
        return (weight * twin.expected_dn(twin.camera_power(twin.output_power(amplitude, t, LASER_W)), EXPOSURE_S)).sum()

    loss(twin.filter_transmission_from_phase(phase, quantize=True)).backward()
    q = quantize_phase(phase.detach(), twin.imperfections.slm_lut).requires_grad_()
    loss(twin.filter_transmission_from_phase(q, quantize=False)).backward()
    assert not torch.allclose(q.detach(), phase.detach())
    torch.testing.assert_close(phase.grad, q.grad, rtol=1e-12, atol=1e-12 * float(q.grad.abs().max()))
