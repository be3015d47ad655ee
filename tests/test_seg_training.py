"""Training segmentation with the one `Trainer`: the U-Net teacher learns, dense KD
lowers the student's loss, hints and precomputed soft targets work per pixel,
validation selects on mIoU, and pixel-moving augmentation is refused."""

from __future__ import annotations

import pytest
import torch

from labrig.data.segmentation import IGNORE, SegmentationDataset
from labrig.distill import DistillConfig, TrainConfig, Trainer, seed_everything, teacher_logits_for
from labrig.distill.config import AugmentConfig
from labrig.models.errors import ModelConfigError
from labrig.models.sclc import SCLCConfig
from labrig.models.segmentation import DecoderConfig, SegmentationStudent, SegStudentConfig
from labrig.models.unet import UNet, UNetConfig

SIZE = 16


def toy(n: int = 96, seed: int = 0) -> SegmentationDataset:
    """Noise with a bright square (class 1) and a dim bar (class 2); a ragged ignored border."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.2
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.uint8)
    for i in range(n):
        r, c = torch.randint(1, SIZE - 6, (2,), generator=g).tolist()
        images[i, 0, r : r + 5, c : c + 5] += 0.8
        masks[i, r : r + 5, c : c + 5] = 1
        row = int(torch.randint(0, SIZE, (1,), generator=g))
        if not masks[i, row].any():
            images[i, 0, row, 2:14] += 0.4
            masks[i, row, 2:14] = 2
    masks[:, :, 0] = IGNORE
    return SegmentationDataset((images.clamp(0, 1) * 255).to(torch.uint8), masks, ["bg", "square", "bar"], name="toy")


def teacher(seed: int = 0) -> UNet:
    seed_everything(seed)
    return UNet(UNetConfig(width=4, depth=1, num_classes=3, input_size=(SIZE, SIZE)))


def student(seed: int = 0) -> SegmentationStudent:
    seed_everything(seed)
    return SegmentationStudent(SegStudentConfig(
        frontend=SCLCConfig(channels=(4,), kernel_sizes=(5,)),
        decoder=DecoderConfig(widths=(8,), dilations=(1,), downsample=1), optics=None, num_classes=3,
        input_size=(SIZE, SIZE)))


def config(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, eval_batch_size=48, lr=1e-2, device="cpu", progress=False, seed=0)
    return TrainConfig(**{**base, **kw})


def test_teacher_learns_and_validation_selects_on_miou() -> None:
    train, val = toy(), toy(48, seed=1)
    trainer = Trainer(teacher(), config())
    before = trainer.evaluate(val)
    result = trainer.fit(train, val)
    assert {"val_miou", "val_accuracy", "val_loss"} <= set(result.history[0])
    assert result.final["loss"] < before["loss"]
    best = max(h["val_miou"] for h in result.history)
    assert result.best_accuracy == best == result.final["miou"]  # the best epoch is picked by mIoU


def test_dense_kd_lowers_the_student_loss_and_hints_run() -> None:
    train, val = toy(), toy(48, seed=1)
    t = teacher()
    Trainer(t, config(epochs=2)).fit(train)
    kd = Trainer(student(), config(epochs=3), teacher=t, distill=DistillConfig(method="kd", temperature=4.0))
    before = kd.evaluate(val)["loss"]
    result = kd.fit(train, val)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] and result.final["loss"] < before
    hint = Trainer(student(), config(epochs=1, max_steps_per_epoch=2), teacher=t,
                   distill=DistillConfig(method="hint", hint_layer="dec0"))
    assert hint.hint is not None and hint.fit(train).history[0]["train_loss"] > 0


def test_precomputed_soft_targets_match_a_live_teacher_per_pixel() -> None:
    train = toy(32)
    t = teacher()
    logits = teacher_logits_for(t, train, device="cpu")
    assert logits.shape == (32, 3, SIZE, SIZE)
    kd = DistillConfig(method="kd", temperature=4.0)
    live = Trainer(student(), config(epochs=1), teacher=t, distill=kd).fit(train)
    cached = Trainer(student(), config(epochs=1), teacher_logits=logits, distill=kd).fit(train)
    assert cached.history[0]["train_loss"] == pytest.approx(live.history[0]["train_loss"], rel=1e-5)


def test_augmentation_that_would_move_pixels_from_their_labels_is_refused() -> None:
    with pytest.raises(ModelConfigError, match="labels"):
        Trainer(student(), config(augment=AugmentConfig(hflip=True)))


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    from pathlib import Path

    from labrig.distill import ddp

    torch.set_num_threads(1)
    info = ddp.init_distributed(backend="gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                                device="cpu")
    try:
        t = teacher()
        model = student()
        result = Trainer(model, config(epochs=2, batch_size=16), teacher=t, distributed=info,
                         distill=DistillConfig(method="kd", temperature=4.0)).fit(toy(64), toy(24, seed=1))
        torch.save({"state": model.state_dict(), "final": result.final}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        ddp.cleanup()


def test_dense_kd_under_two_ddp_ranks_keeps_them_in_step(tmp_path) -> None:
    import torch.multiprocessing as mp

    from labrig.distill import evaluate

    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["final"] == ranks[1]["final"] and 0 <= ranks[0]["final"]["miou"] <= 1
    # the ranks' shares, reduced, score like one process on the whole validation set
    model = student()
    model.load_state_dict(ranks[0]["state"])
    assert evaluate(model, toy(24, seed=1), device="cpu")["miou"] == pytest.approx(ranks[0]["final"]["miou"])
