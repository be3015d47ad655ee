"""Teachers: both families build for 28-64 px inputs, expose hint layers, count FLOPs."""

from __future__ import annotations

import pytest
import torch

from labrig.models import ModelConfigError, TeacherCNN, TeacherConfig, build_model, config_to_dict


@pytest.mark.parametrize("arch,size,channels", [("small", 28, 1), ("small", 64, 3), ("alexnet", 28, 1), ("alexnet", 64, 3)])
def test_teacher_shapes(arch, size, channels):
    cfg = TeacherConfig(arch=arch, in_channels=channels, input_size=(size, size), width=16, hidden=32)
    model = TeacherCNN(cfg).eval()
    x = torch.rand(2, channels, size, size)
    assert model(x).shape == (2, 10)
    logits, feats = model.forward_with_features(x, model.feature_layers[0])
    torch.testing.assert_close(logits, model(x))
    assert feats.shape[1:] == model.feature_shape(model.feature_layers[0])
    assert model.features(x).shape[1:] == model.feature_shape()  # default: last stage


def test_small_teacher_flops_match_a_hand_count():
    cfg = TeacherConfig(blocks=1, convs_per_block=1, width=4, hidden=8, batch_norm=False, dropout=0.0)
    model = TeacherCNN(cfg)
    conv = 2 * 1 * 9 * 4 * 28 * 28 + 4 * 28 * 28  # MACs x2 + bias
    relu = 4 * 28 * 28
    pool = 4 * 28 * 28 + 4 * 14 * 14  # max pool reads its input; adaptive avg pool to 3x3 reads 14x14
    fc = (2 * 36 + 1) * 8 + 8 + (2 * 8 + 1) * 10  # Linear, ReLU, Linear
    assert model.flops() == conv + relu + pool + fc
    assert model.param_count()["optical"] == 0


def test_hint_layer_is_checked_and_config_round_trips():
    with pytest.raises(ModelConfigError, match="hint_layer"):
        TeacherCNN(TeacherConfig(hint_layer="block9"))
    with pytest.raises(ModelConfigError, match="arch"):
        TeacherConfig(arch="resnet")
    cfg = TeacherConfig(arch="alexnet", input_size=(32, 32), hint_layer="conv2")
    rebuilt = build_model("teacher", config_to_dict(cfg))
    assert rebuilt.config == cfg
