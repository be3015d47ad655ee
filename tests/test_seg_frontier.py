"""The segmentation frontier: variants change only what they name, the context branch runs
and is counted, adding it kept older job keys, and the experiment reports every design."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from test_seg_experiment import items, tiny

from labrig.cli import main
from labrig.experiments.seg_frontier import (
    VARIANTS,
    FrontierConfig,
    receptive_field_px,
    run_frontier,
)
from labrig.models.segmentation import DecoderConfig, SegmentationStudent, SegStudentConfig
from labrig.models.serialize import config_from_dict, config_to_dict


def test_variants_change_only_what_they_name() -> None:
    config = FrontierConfig.cpu()
    base = config.student("baseline", 11)
    wide = config.student("dilation +1 layer (…, 8)", 11)
    assert wide.decoder.dilations == (1, 2, 4, 8) and wide.frontend == base.frontend
    assert config.student("2× optical channels", 11).frontend.channels == (8, 16)
    assert config.student("larger optical kernels (+4 px a layer)", 11).frontend.kernel_sizes == (13, 13)
    assert config.student("pooled context (1, 2, 4 bins)", 11).decoder.context_bins == (1, 2, 4)
    assert receptive_field_px(base) == 17 + 1 + 2 * 2 * (1 + 2 + 4)  # optics, pool, dilated 3x3s at 1/2
    assert receptive_field_px(wide) > receptive_field_px(base)
    assert receptive_field_px(config.student("pooled context (1, 2, 4 bins)", 11)) is None  # the whole image
    assert set(config.variants) < set(VARIANTS)


def test_context_branch_sees_the_scene_and_costs_flops() -> None:
    plain = SegStudentConfig(decoder=DecoderConfig(widths=(8,), dilations=(1,), norm="log1p"), optics=None,
                             input_size=(32, 32))  # no per-image scale: that alone is global
    ctx = replace(plain, decoder=replace(plain.decoder, context_bins=(1, 2)))
    a, b = SegmentationStudent(plain).eval(), SegmentationStudent(ctx).eval()
    assert b(torch.rand(2, 1, 32, 32)).shape == (2, 11, 32, 32)
    assert b.flops() > a.flops()
    # a change far away moves a context-branch pixel, not a plain one (its field is local)
    x = torch.rand(1, 1, 32, 32)
    far = x.clone()
    far[..., 28:, 28:] += 1.0
    with torch.no_grad():
        assert torch.equal(a(x)[..., :2, :2], a(far)[..., :2, :2])
        assert not torch.allclose(b(x)[..., :2, :2], b(far)[..., :2, :2])


def test_the_new_decoder_fields_keep_older_dicts_and_round_trip() -> None:
    d = config_to_dict(DecoderConfig())
    assert "context_bins" not in d and "context_width" not in d  # job keys of older runs unchanged
    ctx = DecoderConfig(context_bins=(1, 4), context_width=8)
    assert config_from_dict(DecoderConfig, config_to_dict(ctx)) == ctx


def test_frontier_end_to_end_on_tiny_data(tmp_path: Path, monkeypatch) -> None:
    data, out = items(tmp_path / "items"), tmp_path / "runs"
    config = FrontierConfig(base=replace(tiny(), optical_finetune=None), seeds=(0,),
                            variants=("baseline", "pooled context (1, 2, 4 bins)"))
    part = run_frontier(data, out, replace(config, variants=("baseline",)), device="cpu", progress=False,
                        log=lambda _: None, train_only=True)
    assert part["partial"] and list(part["variants"]) == ["baseline"]
    monkeypatch.setattr(FrontierConfig, "quick", classmethod(lambda cls: config))
    code = main(["experiment", "seg-frontier", "--quick", "--data", str(data), "--no-progress", "--device", "cpu",
                 "--report", str(tmp_path / "f.json"), "--out", str(out)])
    assert code == 0
    report = json.loads((tmp_path / "f.json").read_text())
    assert list(report["variants"]) == ["baseline", "pooled context (1, 2, 4 bins)"]
    v = report["variants"]["pooled context (1, 2, 4 bins)"]
    assert v["electronic_mflops"] > report["variants"]["baseline"]["electronic_mflops"]
    assert 0 <= v["miou"] <= 1 and report["teacher"]["electronic_mflops"] > 0
    assert (tmp_path / "f.png").stat().st_size > 5_000 and (tmp_path / "f.md").is_file()
