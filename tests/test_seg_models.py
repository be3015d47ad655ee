"""Segmentation models: the SCLC encoder collapses exactly and its read-out is aligned
with the input; the U-Net takes any size; both rebuild from checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labrig.distill import load_model, save_checkpoint
from labrig.distill.tasks import Segmentation, task_of
from labrig.models.optical import OpticalPath, OpticsConfig
from labrig.models.sclc import SCLCConfig
from labrig.models.segmentation import DecoderConfig, SegmentationStudent, SegStudentConfig, align
from labrig.models.unet import UNet, UNetConfig


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def student(detection: str = "coherent", channels=(3, 4), kernels=(3, 5), size=(12, 10), seed=0) -> SegmentationStudent:
    torch.manual_seed(seed)
    cfg = SegStudentConfig(frontend=SCLCConfig(channels=channels, kernel_sizes=kernels, detection=detection),
                           decoder=DecoderConfig(widths=(6, 6), dilations=(1, 2), downsample=2),
                           optics=OpticsConfig(profile="sim"), num_classes=5, input_size=size)
    return SegmentationStudent(cfg)


def images(b=2, shape=(12, 10), seed=1, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(b, 1, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_encoder_stack_collapsed_and_ideal_twin_agree_in_float64() -> None:
    model = student().double().eval()
    x = images()
    out = {}
    for mode in ("stack", "collapsed", "optical"):
        model.mode = mode
        out[mode] = (model.encode(x), model(x))
    for mode in ("collapsed", "optical"):
        assert rel(out[mode][0], out["stack"][0]) < 1e-5, mode  # the camera tiles
        assert rel(out[mode][1], out["stack"][1]) < 1e-5, mode  # and the logits after the decoder
    assert out["stack"][0].shape == (2, 4, 12, 10) and out["stack"][1].shape == (2, 5, 12, 10)


def test_the_read_out_window_is_aligned_with_the_input() -> None:
    """With one layer and no square law, the aligned tile is the kernel centred on each pixel."""
    model = student("linear", channels=(1,), kernels=(5,)).double()
    x = images(1)
    w = model.front.stack.kernel(0)  # (1, 1, 5, 5), applied as a true convolution
    same = F.conv2d(x, torch.flip(w, dims=(-2, -1)), padding=2)
    torch.testing.assert_close(model.encode(x), same)
    with pytest.raises(Exception, match="smaller"):
        align(torch.zeros(1, 1, 4, 4), (5, 5))


def test_the_wide_bench_fits_eight_physical_channels_of_a_128_px_scene() -> None:
    """`sim-wide` exists for this: 144 px tiles clear of the zero order and the double-phase residual."""
    path = OpticalPath(OpticsConfig(profile="sim-wide", max_per_frame=4), "coherent")
    plan = path.plan(8, (128, 128), (17, 17), physical=True)
    assert plan.per_frame == 4 and plan.frames == 2


def test_unet_takes_any_size_and_names_its_stages() -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(width=4, depth=2, num_classes=3, input_size=(13, 11)))
    x = torch.rand(2, 1, 13, 11)
    logits, feats = net.forward_with_features(x, "enc1")
    assert logits.shape == (2, 3, 13, 11) and feats.shape == (2, 8, 6, 5)
    assert net.feature_shape() == (4, 13, 11)  # dec0: the full-resolution default hint stage
    assert net.feature_layers == ["enc0", "enc1", "enc2", "dec1", "dec0"]
    assert task_of(net) == Segmentation(3)
    with pytest.raises(Exception, match="no unet stage"):
        net.features(x, "nope")


def test_costs_and_frozen_optics() -> None:
    model = student()
    counts = model.param_count()
    assert counts["optical"] == 3 * 3 * 3 + 4 * 3 * 5 * 5 and counts["optical_collapsed"] == 4 * 7 * 7
    assert counts["electronic"] > 0 and model.flops() > 0 and model.digital_frontend_flops() > 0
    teacher = UNet(UNetConfig(width=4, depth=2, num_classes=5, input_size=(12, 10)))
    assert teacher.flops() > 0 and teacher.param_count()["optical"] == 0
    model.freeze_optics()
    assert not any(p.requires_grad for p in model.optical_parameters())
    assert all(p.requires_grad for p in model.electronic_parameters())


def test_checkpoints_rebuild_both_kinds_with_their_mode(tmp_path: Path) -> None:
    model = student().eval()
    model.mode = "optical"
    teacher = UNet(UNetConfig(width=4, depth=1, num_classes=5, input_size=(12, 10))).eval()
    x = images(dtype=torch.float32)
    for net, kind in ((model, "seg_student"), (teacher, "unet")):
        save_checkpoint(tmp_path / f"{kind}.pt", net)
        loaded, ck = load_model(tmp_path / f"{kind}.pt", kind=kind)
        assert ck.kind == kind
        torch.testing.assert_close(loaded.eval()(x), net(x))
    assert loaded.__class__ is UNet
    rebuilt, _ = load_model(tmp_path / "seg_student.pt")
    assert rebuilt.mode == "optical"
