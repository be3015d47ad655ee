"""The SCLC front end is linear and collapses exactly: layer stack, collapsed
kernels and the ideal optical twin agree (float64, rel. 1e-5 asked; ~1e-14 seen),
for coherent, incoherent and linear detection, with spatial and time multiplexing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from labrig.models import (
    ModelConfigError,
    OpticsConfig,
    SCLCConfig,
    SCLCFrontEnd,
    full_conv2d,
)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def front(detection="coherent", complex_kernels=False, layout="auto", channels=(4, 3), kernels=(3, 4), seed=0):
    torch.manual_seed(seed)
    cfg = SCLCConfig(channels=channels, kernel_sizes=kernels, complex_kernels=complex_kernels, detection=detection)
    return SCLCFrontEnd(cfg, OpticsConfig(layout=layout)).double()


def images(b=2, shape=(12, 10), seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, *shape, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------- collapse
def test_full_conv2d_is_scipy_full_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 2, generator=g, dtype=torch.float64)
    y = full_conv2d(x, w)
    ref = np.stack([
        np.stack([sum(convolve2d(x[b, i].numpy(), w[o, i].numpy(), mode="full") for i in range(3)) for o in range(4)])
        for b in range(2)
    ])
    assert y.shape == (2, 4, 9, 7)
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("complex_kernels", [False, True])
def test_collapse_is_the_impulse_response_of_the_stack(complex_kernels):
    """Pushing an impulse through the uncollapsed stack reads off the collapsed kernel."""
    torch.manual_seed(3)
    cfg = SCLCConfig(in_channels=2, channels=(3, 5, 2), kernel_sizes=(3, 2, 4), complex_kernels=complex_kernels)
    fe = SCLCFrontEnd(cfg).double()
    h = fe.collapsed_kernels()
    assert h.shape == (2, 2, 7, 7) and cfg.collapsed_size == 7  # Σ(k-1)+1
    for i in range(2):
        impulse = torch.zeros(1, 2, 1, 1, dtype=torch.float64)
        impulse[0, i] = 1
        assert rel(fe.stack(impulse)[0], h[:, i]) < 1e-13


@pytest.mark.parametrize("detection", ["coherent", "incoherent", "linear"])
@pytest.mark.parametrize("layout", ["multiplexed", "per_channel"])
def test_stack_collapsed_and_ideal_optics_agree(detection, layout):
    fe = front(detection, layout=layout)
    x = images()
    stack = fe(x, "stack").detach()
    assert stack.shape == (2, 3, 12 + 6 - 1, 10 + 6 - 1)
    assert rel(fe(x, "collapsed"), stack) < 1e-5
    assert rel(fe(x, "optical"), stack) < 1e-5
    if detection == "incoherent":  # signed kernels: a PSF pair, subtracted
        assert float(stack.min()) < 0 < float(stack.max())
    if detection == "coherent":
        assert float(stack.min()) >= 0


@pytest.mark.parametrize("detection", ["coherent", "linear"])
def test_complex_kernels_agree_through_the_twin(detection):
    fe = front(detection, complex_kernels=True)
    x = images()
    stack = fe(x, "stack")
    assert stack.shape[1] == (6 if detection == "linear" else 3)  # linear: re and im channels
    assert rel(fe(x, "collapsed"), stack) < 1e-5
    assert rel(fe(x, "optical"), stack) < 1e-5


def test_float32_twin_agrees_with_float64_stack():
    fe = front("coherent")
    x = images()
    ref = fe(x, "stack")
    fe32 = fe.float()
    out = fe32(x.float(), "optical")
    assert out.dtype == torch.float32
    assert rel(out.double(), ref) < 1e-4


# ------------------------------------------------------------------------- linearity
@pytest.mark.parametrize("mode", ["stack", "collapsed", "optical"])
def test_no_nonlinearity_before_the_camera(mode):
    """Scaling the input by c scales the field by c and the coherent intensity by c^2."""
    fe = front("coherent", complex_kernels=True)
    x = images()
    c = 2.7
    field, field_c = fe.field(x, mode), fe.field(c * x, mode)
    assert rel(field_c, c * field) < 1e-12
    a, b = fe.field(x, mode), fe.field(images(seed=5), mode)
    assert rel(fe.field(x + images(seed=5), mode), a + b) < 1e-12  # additive too
    assert rel(fe(c * x, mode), c**2 * fe(x, mode)) < 1e-12


def test_incoherent_is_linear_in_input_intensity():
    fe = front("incoherent")
    x = images()
    for mode in ("stack", "collapsed", "optical"):
        assert rel(fe(3.0 * x, mode), 3.0 * fe(x, mode)) < 1e-12


# ------------------------------------------------------------------------- config
def test_optical_modes_need_optics_and_one_input_channel():
    with pytest.raises(ModelConfigError, match="OpticsConfig"):
        SCLCFrontEnd(SCLCConfig(mode="optical"))
    with pytest.raises(ModelConfigError, match="in_channels = 1"):
        SCLCFrontEnd(SCLCConfig(in_channels=3, mode="optical"), OpticsConfig())
    with pytest.raises(ModelConfigError, match="camera measures intensity"):
        SCLCFrontEnd(SCLCConfig(detection="linear", mode="optics_aware"), OpticsConfig())


def test_bad_configs_are_named():
    with pytest.raises(ModelConfigError, match="equal length"):
        SCLCConfig(channels=(4, 4), kernel_sizes=(3,))
    with pytest.raises(ModelConfigError, match="real kernels"):
        SCLCConfig(detection="incoherent", complex_kernels=True)
    with pytest.raises(ModelConfigError, match="mode"):
        SCLCConfig(mode="fast")
    with pytest.raises(ModelConfigError, match="do not fit"):
        front("coherent", layout="multiplexed", channels=(2, 300))(images(), "optical")
