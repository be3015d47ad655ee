"""The student: parameter split, electronic FLOPs, freezing, config round trip, dtypes, devices."""

from __future__ import annotations

import pytest
import torch

from labrig.models import (
    BackendConfig,
    ModelConfigError,
    OpticsConfig,
    SCLCConfig,
    StudentConfig,
    StudentModel,
    build_model,
    config_from_dict,
    config_to_dict,
    resolve_device,
)


def small(**backend) -> StudentConfig:
    return StudentConfig(frontend=SCLCConfig(channels=(4, 3), kernel_sizes=(3, 3)), backend=BackendConfig(**backend))


def test_param_count_splits_optical_and_electronic():
    model = StudentModel(small(pool=2))
    counts = model.param_count()
    assert counts["optical"] == 4 * 1 * 9 + 3 * 4 * 9
    assert counts["optical_collapsed"] == 3 * 1 * 5 * 5
    assert counts["electronic"] == 2 * 3 + (3 * 2 * 2) * 10 + 10  # BN affine + fc
    assert counts["total"] == counts["optical"] + counts["electronic"]


def test_electronic_flops_by_hand():
    model = StudentModel(small(pool=2, norm="scale"))
    h = w = 28 + 5 - 1
    n = 3 * h * w
    readout = 2 * n  # dark subtraction and scaling per tile pixel
    expected = readout + 3 * n + 2 * n + n + (2 * 12 + 1) * 10  # scale, BN, pool, fc
    assert model.electronic_flops() == expected
    assert model.digital_frontend_flops() > model.electronic_flops()  # what the optics saves


def test_freeze_optics_keeps_counts_and_stops_gradients():
    model = StudentModel(small())
    model.freeze_optics()
    assert not any(p.requires_grad for p in model.optical_parameters())
    assert all(p.requires_grad for p in model.electronic_parameters())
    assert model.param_count()["optical"] == 4 * 9 + 12 * 9


def test_config_round_trip_and_unknown_keys():
    cfg = StudentConfig(
        frontend=SCLCConfig(channels=(8,), kernel_sizes=(7,), detection="incoherent"),
        backend=BackendConfig(kind="mlp", hidden=(32, 16)),
        optics=OpticsConfig(layout="per_channel", max_per_frame=3),
    )
    data = config_to_dict(cfg)
    assert config_from_dict(StudentConfig, data) == cfg
    model = build_model("student", data)
    assert model.config == cfg
    assert build_model("student", config_to_dict(StudentConfig(optics=None))).front.optics is None
    data["backend"]["widht"] = 3
    with pytest.raises(ModelConfigError, match="widht"):
        config_from_dict(StudentConfig, data)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["stack", "collapsed", "optical"])
def test_dtypes_and_modes(dtype, mode):
    model = StudentModel(small()).to(dtype)
    model.mode = mode
    out = model(torch.rand(2, 1, 28, 28, dtype=dtype))
    assert out.shape == (2, 10) and out.dtype == dtype


def test_mlp_and_linear_detection_with_complex_kernels():
    cfg = StudentConfig(frontend=SCLCConfig(channels=(3,), kernel_sizes=(5,), detection="linear", complex_kernels=True),
                        backend=BackendConfig(kind="mlp", norm="scale"))
    model = StudentModel(cfg)
    assert model.front.out_channels == 6
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_device_auto():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelConfigError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["collapsed", "optical", "optics_aware"])
def test_cuda_matches_cpu(mode):
    torch.manual_seed(0)
    model = StudentModel(small()).double()
    model.mode = mode
    model.front.optics.config = OpticsConfig(noise=False, quantize_slm=False, quantize_input=False, quantize_camera=False)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    cpu = model.front(x).detach()
    gpu = model.cuda().front(x.cuda()).detach().cpu()
    assert float((gpu - cpu).abs().max() / cpu.abs().max()) < 1e-6


def test_config_records_the_current_mode():
    model = StudentModel(small())
    model.mode = "optical"
    assert model.config.frontend.mode == "optical"
    assert build_model("student", config_to_dict(model.config)).mode == "optical"


def test_calibrated_imperfections_replace_the_ideal_ones():
    from labrig.optics import Imperfections

    model = StudentModel(small()).double()
    optics = model.front.optics
    optics.set_imperfections(Imperfections(optics.geometry, camera_gain=1.1))
    assert optics.twin.imperfections.camera_gain.dtype == torch.float64
    assert float(optics.twin.imperfections.camera_gain) == pytest.approx(1.1)
