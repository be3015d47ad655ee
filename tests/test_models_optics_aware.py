"""The optics-aware path: masks trained through the twin with a physical filter
(normalised, double-phase, SLM-quantised), a quantised input and a noisy,
rounded camera. It must run forward and backward with finite gradients for
the optical parameters, and stay on the ideal path's scale."""

from __future__ import annotations

import pytest
import torch

from labrig.models import OpticsConfig, SCLCConfig, SCLCFrontEnd, StudentConfig, StudentModel


def images(b=4, size=28, seed=1, dtype=torch.float32):
    return torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("detection", ["coherent", "incoherent"])
def test_forward_backward_gives_finite_mask_gradients(detection):
    torch.manual_seed(0)
    cfg = StudentConfig(frontend=SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3), detection=detection,
                                            mode="optics_aware"))
    model = StudentModel(cfg)
    x = images()
    out = model.front(x)
    assert out.shape == (4, 4, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(4))
    loss.backward()
    for p in model.optical_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert float(p.grad.abs().max()) > 0  # the straight-through quantisers pass gradients
    # the twin's imperfections are what the host knows, not trained here
    assert all(p.grad is None for p in model.front.optics.twin.parameters())


def test_physical_path_stays_close_to_the_ideal_one():
    """With 4 tiles on a frame the physical filter, the auto-exposed noisy camera and
    the quantisers deviate from the ideal twin by a few percent (more tiles per
    frame: more double-phase spill)."""
    torch.manual_seed(0)
    fe = SCLCFrontEnd(SCLCConfig(channels=(4, 4), kernel_sizes=(3, 3)), OpticsConfig()).double()
    x = images(dtype=torch.float64)
    with torch.no_grad():
        ideal, physical = fe(x, "optical"), fe(x, "optics_aware")
    assert float((physical - ideal).norm() / ideal.norm()) < 0.15


def test_noise_is_drawn_from_the_global_generator_and_can_be_off():
    torch.manual_seed(0)
    fe = SCLCFrontEnd(SCLCConfig(channels=(2, 2), kernel_sizes=(3, 3), mode="optics_aware"), OpticsConfig())
    x = images(b=2)
    with torch.no_grad():
        torch.manual_seed(5)
        a = fe(x)
        torch.manual_seed(5)
        b = fe(x)
        c = fe(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    quiet = SCLCFrontEnd(fe.config, OpticsConfig(noise=False))
    quiet.load_state_dict(fe.state_dict())
    with torch.no_grad():
        assert torch.equal(quiet(x), quiet(x))


def test_time_multiplexing_when_tiles_are_capped():
    torch.manual_seed(0)
    fe = SCLCFrontEnd(SCLCConfig(channels=(3, 5), kernel_sizes=(3, 3), mode="optics_aware"),
                      OpticsConfig(max_per_frame=2))
    plan = fe.optics.plan(5, (28, 28), (5, 5), physical=True)
    assert (plan.per_frame, plan.frames) == (2, 3)
    with torch.no_grad():
        assert fe(images(b=2)).shape == (2, 5, 32, 32)


def test_noise_free_unquantised_single_channel_frames_match_the_ideal_twin():
    """What is left when noise, quantisers and multiplexing are off is only the
    encoding (double phase, fill factor) and the read-out scaling: it must vanish."""
    torch.manual_seed(0)
    off = OpticsConfig(layout="per_channel", noise=False, quantize_slm=False, quantize_input=False,
                       quantize_camera=False)
    fe = SCLCFrontEnd(SCLCConfig(channels=(3, 3), kernel_sizes=(3, 3)), off).double()
    x = images(b=2, dtype=torch.float64)
    with torch.no_grad():
        ideal, physical = fe(x, "optical"), fe(x, "optics_aware")
    assert float((physical - ideal).norm() / ideal.norm()) < 1e-3


def test_auto_exposure_keeps_the_camera_out_of_saturation():
    torch.manual_seed(0)
    fe = SCLCFrontEnd(SCLCConfig(channels=(2, 1), kernel_sizes=(3, 3)), OpticsConfig(noise=False)).double()
    x = images(b=2, dtype=torch.float64)
    with torch.no_grad():
        ideal = fe(x, "optical")
        fixed = SCLCFrontEnd(fe.config, OpticsConfig(noise=False, exposure_s=1e-2)).double()
        fixed.load_state_dict(fe.state_dict())
        saturated = fixed(x, "optics_aware")
        auto = fe(x, "optics_aware")
    assert float((auto - ideal).norm() / ideal.norm()) < 0.05
    assert float(saturated.max()) < 0.5 * float(ideal.max())  # clipped at full well
