"""Nuisance parameters: what a real bench has beyond the twin, fitted so it does not bias the twin's own.

A bench's Fourier-plane phase is never exactly the twin's six Zernike terms: the
SLM's flatness error, trefoil and higher orders add a smooth phase the twin has
no parameter for. Fitting only the named terms to such frames bends them to
mimic the rest (on `sim` by up to 3 rad). Here the fits get extra freedom:

* `PUPIL_MODES` - Zernike terms of radial order 3..`order` that the twin lacks,
  orthonormalised over the Fourier grid against piston, tilt and the twin's
  named terms. Being orthogonal to the named terms, they leave them exactly the
  projection of the whole pupil phase onto the named subspace - the part of an
  unmodelled phase that looks like a named term stays in it (no measurement
  can tell them apart: it is reported as such, see docs/calibration.md), the
  rest goes to the nuisance modes.
* `APODISATION` - a smooth amplitude fall-off exp(-b (u^2 + v^2)) over the
  Fourier plane (u, v = +-1 at its edges): the input modulator's finite pixels
  (a sinc envelope over the spectrum) widen every point image the same way.
* `OUTPUT_ENVELOPE` - a smooth power fall-off exp(-e (u^2 + v^2)) over the output
  plane (the filter SLM's pixels diffract into such an envelope; lens 2 vignettes).

`NuisanceTwin` is a `Twin` whose pupil carries both; `with_nuisance(work)` turns
a `working_twin` into one (values zero: the twin's own pupil). Their fitted
values are reported as products, never as the twin's named imperfections, and a
session carries them to later routines (`carry` / `carried`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from labrig.optics.aberrations import zernike_basis, zernike_phase
from labrig.optics.system import Twin, _zero

#: parameter names of the nuisance terms (on the working twin's `Imperfections` only)
PUPIL_MODES = "pupil_nuisance_rad"
APODISATION = "pupil_apodisation"
OUTPUT_ENVELOPE = "output_envelope"
NAMES = (PUPIL_MODES, APODISATION, OUTPUT_ENVELOPE)
#: highest radial order of the nuisance Zernike terms
DEFAULT_ORDER = 6
#: the twin's named terms as (n, m) (Noll: m > 0 cosine, m < 0 sine); excluded from the nuisance set
_NAMED_NM = {(2, 0), (2, -2), (2, 2), (3, -1), (3, 1), (4, 0)}


def _radial(n: int, m: int, rho: np.ndarray) -> np.ndarray:
    m = abs(m)
    out = np.zeros_like(rho)
    for k in range((n - m) // 2 + 1):
        c = (-1) ** k * math.factorial(n - k) / (
            math.factorial(k) * math.factorial((n + m) // 2 - k) * math.factorial((n - m) // 2 - k))
        out += c * rho ** (n - 2 * k)
    return out


def nuisance_terms(order: int) -> list[tuple[int, int]]:
    """(n, m) of the Zernike terms of radial order 3..`order` the twin does not have."""
    return [(n, m) for n in range(3, order + 1) for m in range(-n, n + 1, 2) if (n, m) not in _NAMED_NM]


@lru_cache(maxsize=8)
def _basis_cached(shape: tuple[int, int], extent: tuple[float, float], order: int) -> np.ndarray:
    ny, nx = shape
    y = (np.arange(ny) - ny // 2) * extent[0] / ny
    x = (np.arange(nx) - nx // 2) * extent[1] / nx
    yy, xx = np.meshgrid(y, x, indexing="ij")
    radius = 0.5 * min(extent)
    rho, theta = np.hypot(yy, xx) / radius, np.arctan2(yy, xx)
    named = zernike_basis(torch.as_tensor(rho), torch.as_tensor(theta)).numpy().reshape(6, -1)
    fixed = np.vstack([np.ones(rho.size), yy.ravel() / radius, xx.ravel() / radius, named])
    modes = []
    for n, m in nuisance_terms(order):
        ang = np.cos(m * theta) if m >= 0 else np.sin(-m * theta)
        modes.append((_radial(n, m, rho) * ang).ravel())
    # orthogonal to piston, tilt and the named terms; orthonormal among themselves (RMS 1 rad each)
    q_fixed, _ = np.linalg.qr(fixed.T)
    m_arr = np.array(modes).T
    m_arr = m_arr - q_fixed @ (q_fixed.T @ m_arr)
    q, r = np.linalg.qr(m_arr)
    keep = np.abs(np.diag(r)) > 1e-8 * np.abs(np.diag(r)).max()
    return (q[:, keep] * math.sqrt(rho.size)).T.reshape(-1, ny, nx)


def pupil_basis(twin: Twin, order: int = DEFAULT_ORDER) -> torch.Tensor:
    """(K, N, N) nuisance phase modes over the twin's Fourier grid (RMS 1 rad per unit coefficient)."""
    grid = twin.geometry.fourier_grid
    return torch.as_tensor(_basis_cached(tuple(grid.shape), tuple(float(e) for e in grid.extent_m), order))


def apodisation_coordinate(twin: Twin, plane: str = "fourier") -> torch.Tensor:
    """u^2 + v^2 over the Fourier (or output) grid (u, v = +-1 at its edges)."""
    grid = twin.geometry.fourier_grid if plane == "fourier" else twin.geometry.output_grid
    y, x = grid.mesh(torch.float64)
    hy, hx = 0.5 * grid.extent_m[0], 0.5 * grid.extent_m[1]
    return (y / hy) ** 2 + (x / hx) ** 2


class NuisanceTwin(Twin):
    """A working twin whose pupil also carries the nuisance phase modes and apodisation."""

    nuisance_order: int = DEFAULT_ORDER

    def pupil(self) -> torch.Tensor | None:
        imp = self.imperfections
        z = imp.zernike_rad
        modes, apod = getattr(imp, PUPIL_MODES), getattr(imp, APODISATION)
        if _zero(z) and _zero(modes) and _zero(apod):
            return None
        w = zernike_phase(z, self.geometry.fourier_grid)
        if not _zero(modes):
            basis = pupil_basis(self, self.nuisance_order).to(w.dtype)
            w = w + torch.einsum("k,kyx->yx", modes.to(w.dtype), basis)
        amplitude = torch.ones_like(w)
        if not _zero(apod):
            amplitude = torch.exp(-apod.to(w.dtype) * apodisation_coordinate(self).to(w.dtype))
        return torch.polar(amplitude, w)

    def camera_power(self, output_power: torch.Tensor) -> torch.Tensor:
        env = getattr(self.imperfections, OUTPUT_ENVELOPE)
        if not _zero(env):
            output_power = output_power * torch.exp(
                -env.to(output_power.dtype) * apodisation_coordinate(self, "output").to(output_power.dtype))
        return super().camera_power(output_power)


def with_nuisance(work: Twin, values: dict[str, Any] | None = None, order: int = DEFAULT_ORDER) -> NuisanceTwin:
    """Turn a `working_twin` (float64) into a `NuisanceTwin` in place: nuisance parameters added to
    its imperfections (from `values`, e.g. an earlier routine's `carried`, else zero)."""
    imp = work.imperfections
    work.__class__ = NuisanceTwin
    work.nuisance_order = order  # type: ignore[attr-defined]
    k = pupil_basis(work, order).shape[0]
    values = values or {}
    modes = torch.zeros(k, dtype=torch.float64)
    given = values.get(PUPIL_MODES)
    if given is not None and len(given) == k:
        modes = torch.as_tensor(np.asarray(given, dtype=np.float64))
    scalars = {n: torch.tensor(float(values.get(n, 0.0)), dtype=torch.float64) for n in (APODISATION, OUTPUT_ENVELOPE)}
    for name, value in ((PUPIL_MODES, modes), *scalars.items()):
        if not hasattr(imp, name):
            imp.register_parameter(name, nn.Parameter(value, requires_grad=False))
        else:
            getattr(imp, name).data = value
    return work  # type: ignore[return-value]


def nuisance_values(work: Twin) -> dict[str, Any]:
    """The fitted nuisance values of a `NuisanceTwin` (lists/floats, for a result's products)."""
    imp = work.imperfections
    if not hasattr(imp, PUPIL_MODES):
        return {}
    return {PUPIL_MODES: getattr(imp, PUPIL_MODES).detach().tolist(),
            APODISATION: float(getattr(imp, APODISATION)), OUTPUT_ENVELOPE: float(getattr(imp, OUTPUT_ENVELOPE))}


def carried(twin: Twin) -> dict[str, Any]:
    """Nuisance values an earlier routine of this session left on `twin` (empty if none)."""
    return dict(getattr(twin, "calibration_nuisance", {}) or {})


def carry(twin: Twin, products: dict[str, Any]) -> None:
    """Keep a result's nuisance products on the session's twin for the routines after it."""
    found = {k: products[k] for k in NAMES if k in products}
    if found:
        twin.calibration_nuisance = {**carried(twin), **found}  # type: ignore[attr-defined]
