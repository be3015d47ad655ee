"""A small linear correction of each tile, fitted when a program is compiled through a calibration.

No phase-only SLM pattern reproduces the ideal program's tiles exactly on a real
bench: the SLM's pixel crosstalk blurs the double-phase pairs (a pedestal of
stray light under every tile), and a camera that sits a fraction of a pixel off
the tiles, or turned, samples them blurred. The back end was trained on the
ideal tiles, so the compiler also fits, per tile, a K x K filter and an offset
(`fit_correction`: ridge least squares towards the identity, on probe images
through the calibrated twin) that maps what the bench will give onto what the
student expects. It is part of the readout (`Readout.correction`), applied in
student units after the dark level and scale (`apply_correction`), the same for
bench frames (`TileReader`) and for the twin's tiles (`labrig.hil.TwinTiles`),
so in-situ training keeps it fixed in front of the back end. K = 1 is a gain and
an offset per tile. It is host work of K² multiply-adds per tile pixel.

With `mix`, each corrected tile is a K x K filter of *every* tile of the same
image (a T -> T convolution, T K² multiply-adds per tile pixel). The tiles are
the same input seen through different masks, so where the SLM's fringing has
blurred one channel's mask away from its design, the other channels carry what
it lost: the channels' measured responses span the designed ones better than
each alone does.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["apply_correction", "fit_correction", "relative_error"]


def apply_correction(tiles: torch.Tensor, correction: dict[str, np.ndarray | torch.Tensor]) -> torch.Tensor:
    """(B, T, th, tw) tiles -> the same corrected (`{}`: unchanged). Differentiable in `tiles`.
    A weight (T, k, k) filters each tile on its own; (T, T, k, k) mixes the tiles (`mix`)."""
    if not correction:
        return tiles
    weight = torch.as_tensor(correction["weight"], dtype=tiles.dtype, device=tiles.device)
    bias = torch.as_tensor(correction["bias"], dtype=tiles.dtype, device=tiles.device)
    k = weight.shape[-1]
    if weight.ndim == 4:
        return torch.nn.functional.conv2d(tiles, weight, bias, padding=k // 2)
    return torch.nn.functional.conv2d(tiles, weight[:, None], bias, padding=k // 2, groups=weight.shape[0])


def _design(tiles: np.ndarray, k: int) -> np.ndarray:
    """(B, th, tw) one tile's images -> (B*th*tw, k*k) the zero-padded k x k neighbourhoods
    (cross-correlation order, as `conv2d` applies its weight)."""
    p = k // 2
    a = np.pad(tiles, ((0, 0), (p, p), (p, p)))
    h, w = tiles.shape[-2:]
    return np.stack([a[:, i:i + h, j:j + w].reshape(-1) for i in range(k) for j in range(k)], axis=1)


def fit_correction(measured: np.ndarray, target: np.ndarray, kernel: int, ridge: float = 1e-3,
                   mix: bool = False) -> dict[str, np.ndarray]:
    """Per tile, the `kernel` x `kernel` filter and offset that take `measured` (B, T, th, tw) closest
    to `target` (same shape) in least squares, the filter pulled towards the identity (no change)
    by `ridge` times the mean diagonal of its normal equations (the offset is free).
    Returns {"weight": (T, k, k), "bias": (T,)}; with `mix` every tile's filter reads all the
    tiles: {"weight": (T, T, k, k), "bias": (T,)}."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"the readout correction's kernel must be odd and positive, not {kernel}")
    if measured.shape != target.shape:
        raise ValueError(f"measured tiles {measured.shape} and target tiles {target.shape} differ in shape")
    if mix:
        return _fit_mixing(measured, target, kernel, ridge)
    channels, centre = measured.shape[1], (kernel * kernel) // 2
    weight = np.zeros((channels, kernel, kernel))
    bias = np.zeros(channels)
    identity = np.zeros(kernel * kernel + 1)
    identity[centre] = 1.0
    for c in range(channels):
        a = np.concatenate((_design(measured[:, c].astype(np.float64), kernel),
                            np.ones((measured[:, c].size, 1))), axis=1)
        b = target[:, c].astype(np.float64).reshape(-1)
        normal = a.T @ a
        pull = np.full(normal.shape[0], ridge * float(np.diag(normal)[:-1].mean()))
        pull[-1] = 0.0  # the offset is free
        x = np.linalg.solve(normal + np.diag(pull), a.T @ b + pull * identity)
        weight[c] = x[:-1].reshape(kernel, kernel)
        bias[c] = x[-1]
    return {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}


def _fit_mixing(measured: np.ndarray, target: np.ndarray, kernel: int, ridge: float,
                chunk: int = 32) -> dict[str, np.ndarray]:
    """`fit_correction(mix=True)`: one design (every tile's neighbourhoods and a one) serves all
    the targets, so its normal equations are built once, `chunk` images at a time (bounded memory)."""
    channels, taps = measured.shape[1], kernel * kernel
    features = channels * taps + 1
    normal = np.zeros((features, features))
    rhs = np.zeros((features, channels))
    for a0 in range(0, len(measured), chunk):
        part = measured[a0 : a0 + chunk].astype(np.float64)
        design = np.concatenate([_design(part[:, c], kernel) for c in range(channels)]
                                + [np.ones((part[:, 0].size, 1))], axis=1)
        normal += design.T @ design
        rhs += design.T @ target[a0 : a0 + chunk].astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, channels)
    pull = np.full(features, ridge * float(np.diag(normal)[:-1].mean()))
    pull[-1] = 0.0  # the offsets are free
    identity = np.zeros((features, channels))
    identity[np.arange(channels) * taps + taps // 2, np.arange(channels)] = 1.0  # each tile's own centre tap
    x = np.linalg.solve(normal + np.diag(pull), rhs + pull[:, None] * identity)
    weight = x[:-1].T.reshape(channels, channels, kernel, kernel)  # (out tile, in tile, k, k) as conv2d
    return {"weight": weight.astype(np.float32), "bias": x[-1].astype(np.float32)}


def relative_error(tiles: np.ndarray, target: np.ndarray) -> float:
    """‖tiles − target‖ / ‖target‖ over everything."""
    return float(np.linalg.norm(tiles - target) / max(float(np.linalg.norm(target)), 1e-30))
