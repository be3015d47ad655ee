"""Convolution through the Fourier plane: the arithmetic a 4f system performs.

`kernel_to_mask` gives the Fourier-plane transmission that makes a 4f system
convolve with a kernel; `fourier_conv2d` is the same linear convolution done
digitally (the fast path for training). `full_conv_from_output` reads the
full convolution back out of a 4f output plane (tested against a direct
convolution for odd and even sizes).
"""

from __future__ import annotations

import math

import torch

from labrig.optics.grid import (
    crop_centered,
    fast_size,
    invert_centered,
    linear_conv_size,
    place_centered,
)
from labrig.optics.lens import centered_fft2, centered_ifft2


def _is_complex(t: torch.Tensor) -> bool:
    return torch.is_complex(t)


def fourier_conv2d(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Full linear 2-D convolution of x (..., n1, n2) with h (..., k1, k2) via FFT.

    Batch dims broadcast. Output (..., n1 + k1 - 1, n2 + k2 - 1), identical to
    ``scipy.signal.convolve2d(x, h, mode="full")``; complex if either input is.
    """
    n1, n2 = x.shape[-2:]
    k1, k2 = h.shape[-2:]
    out_shape = (linear_conv_size(n1, k1), linear_conv_size(n2, k2))
    fft_shape = (fast_size(out_shape[0]), fast_size(out_shape[1]))
    if not (_is_complex(x) or _is_complex(h)):
        xf = torch.fft.rfft2(x, s=fft_shape)
        hf = torch.fft.rfft2(h, s=fft_shape)
        y = torch.fft.irfft2(xf * hf, s=fft_shape)
    else:
        xf = torch.fft.fft2(x, s=fft_shape)
        hf = torch.fft.fft2(h, s=fft_shape)
        y = torch.fft.ifft2(xf * hf)
    return y[..., : out_shape[0], : out_shape[1]]


def full_conv_offset(n: tuple[int, int], k: tuple[int, int]) -> tuple[int, int]:
    """(n//2 + k//2) - L//2 per dim (L = n + k - 1): 0 or 1, the misalignment
    between a centred full convolution and the product of a centred image and
    kernel. After the 4f inversion the full convolution's index L//2 sits
    ``-full_conv_offset`` samples from the axis (see `full_conv_from_output`)."""
    return tuple(
        (ni // 2 + ki // 2) - linear_conv_size(ni, ki) // 2 for ni, ki in zip(n, k, strict=True)
    )


def full_conv_from_output(output: torch.Tensor, n: tuple[int, int], k: tuple[int, int]) -> torch.Tensor:
    """The (n + k - 1) full convolution from a 4f output plane (..., N, N), for a
    centred image of size n and a kernel of size k placed by `kernel_to_mask`."""
    shape = (linear_conv_size(n[0], k[0]), linear_conv_size(n[1], k[1]))
    offset = tuple(-o for o in full_conv_offset(n, k))
    return crop_centered(invert_centered(output), shape, offset)


def kernel_to_mask(h: torch.Tensor, shape: tuple[int, int], shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """Fourier-plane transmission (..., *shape) that convolves a centred field with h.

    The kernel's index k//2 is placed on the axis. `shift` (samples, may be
    fractional) moves the kernel, i.e. multiplies the mask by a linear phase
    (a grating): the output moves by ``shift`` before the 4f inversion.
    The mask is the unnormalised DFT, so a mask with |H| > 1 is not passive;
    the compiler rescales it for a real SLM.
    """
    h = h if torch.is_complex(h) else h.to(torch.complex128 if h.dtype == torch.float64 else torch.complex64)
    mask = centered_fft2(place_centered(h, shape)) * math.sqrt(shape[0] * shape[1])
    if shift != (0.0, 0.0):
        mask = mask * linear_phase(shape, shift, dtype=mask.real.dtype, device=mask.device)
    return mask


def mask_to_kernel(mask: torch.Tensor) -> torch.Tensor:
    """The centred impulse response (on the full grid) that a mask implements."""
    n = mask.shape[-2] * mask.shape[-1]
    return centered_ifft2(mask) / math.sqrt(n)


def linear_phase(
    shape: tuple[int, int], shift: tuple[float, float], dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """exp(-2 pi i f . s): the Fourier-plane grating that shifts an image by s samples."""
    fy = (torch.arange(shape[0], dtype=dtype, device=device) - shape[0] // 2) / shape[0]
    fx = (torch.arange(shape[1], dtype=dtype, device=device) - shape[1] // 2) / shape[1]
    phase = -2 * math.pi * (fy[:, None] * shift[0] + fx[None, :] * shift[1])
    return torch.polar(torch.ones_like(phase), phase)
