"""The 4f output holds the full linear convolution where `full_conv_from_output` looks."""

from __future__ import annotations

import pytest
import torch
from scipy.signal import convolve2d

from labrig.optics.conv import fourier_conv2d, full_conv_from_output, kernel_to_mask
from labrig.optics.grid import place_centered
from labrig.optics.lens import centered_fft2


@pytest.mark.parametrize(("n", "k"), [((28, 28), (5, 5)), ((28, 28), (4, 4)), ((27, 28), (5, 4)), ((9, 12), (6, 3))])
def test_full_conv_from_output(n, k) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(*n, generator=gen, dtype=torch.float64)
    h = torch.randn(*k, generator=gen, dtype=torch.complex128)
    grid = (64, 64)
    out = centered_fft2(centered_fft2(place_centered(x.to(torch.complex128), grid)) * kernel_to_mask(h, grid))
    direct = torch.from_numpy(convolve2d(x.numpy(), h.numpy(), mode="full"))
    torch.testing.assert_close(full_conv_from_output(out, n, k), direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fourier_conv2d(x, h), direct, rtol=1e-12, atol=1e-12)
