"""Checkpoints: round trip, clear errors for corrupt / foreign / wrong-kind files,
and a resumed run that ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import threading
from pathlib import Path

import model_helpers
import pytest
import torch
from model_helpers import SIZE, toy_dataset

from drivers.errors import LabrigError
from labrig.distill import (
    AugmentConfig,
    CheckpointError,
    DistillConfig,
    TrainConfig,
    Trainer,
    load_model,
    read_checkpoint,
    save_checkpoint,
    seed_everything,
)
from labrig.models import (
    StudentConfig,
    StudentModel,
    TeacherCNN,
    TeacherConfig,
)


def student(seed: int = 0) -> StudentModel:
    return model_helpers.student(seed, kind="mlp", hidden=(16,), dropout=0.2)



def teacher(seed: int = 0) -> TeacherCNN:
    seed_everything(seed)
    return TeacherCNN(TeacherConfig(input_size=(SIZE, SIZE), width=8, blocks=2, hidden=32))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = student()
    return save_checkpoint(tmp_path / "student.pt", model, metrics={"val_accuracy": 0.5}, epoch=3)


def test_round_trip(saved: Path):
    model, ck = load_model(saved, kind="student")
    original = student()
    x = torch.rand(2, 1, SIZE, SIZE)
    model.eval(), original.eval()
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)
    assert model.config == original.config
    assert ck.metrics == {"val_accuracy": 0.5} and ck.epoch == 3 and ck.kind == "student"
    assert ck.versions["torch"] == torch.__version__


def test_float64_model_loads_as_float64(tmp_path: Path):
    path = save_checkpoint(tmp_path / "t.pt", teacher().double())
    model, _ = load_model(path)
    assert next(model.parameters()).dtype == torch.float64


def test_truncated_file_is_a_clear_error(saved: Path):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        read_checkpoint(saved)
    assert str(saved) in str(info.value) and isinstance(info.value, LabrigError)


def test_garbage_empty_and_missing_files(tmp_path: Path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (garbage, empty):
        with pytest.raises(CheckpointError, match=str(path)):
            read_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


def test_foreign_and_wrong_kind_files(tmp_path: Path, saved: Path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a labrig checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="holds a student, expected a teacher"):
        load_model(saved, kind="teacher")


def test_writes_are_atomic(tmp_path: Path):
    """A failing write leaves the previous checkpoint intact and no temporary file."""
    path = save_checkpoint(tmp_path / "m.pt", student())
    before = path.read_bytes()

    class Boom(torch.nn.Module):
        kind = "student"
        config = StudentConfig()

        def state_dict(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, Boom())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("method", ["none", "hint"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path, method: str):
    train, val = toy_dataset(256), toy_dataset(60, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False, seed=4, warmup_epochs=0.5,
                      augment=AugmentConfig(crop_padding=1, hflip=True))
    distill = DistillConfig(method=method, temperature=3.0)
    t = teacher() if method != "none" else None

    def run(model, **kw):
        return Trainer(model, cfg, teacher=t, distill=distill, **kw)

    full = student()
    whole = run(full).fit(train, val, checkpoint_dir=tmp_path / "whole")

    stop = threading.Event()
    interrupted = run(student(), cancel=stop, on_epoch=lambda r: stop.set() if r["epoch"] == 2 else None)
    first = interrupted.fit(train, val, checkpoint_dir=tmp_path / "split")
    assert first.cancelled and first.epochs_run == 2
    resumed_model = student(seed=123)  # different init: the checkpoint must overwrite it
    second = run(resumed_model).fit(train, val, checkpoint_dir=tmp_path / "split", resume=True)

    assert second.epochs_run == 3 and not second.cancelled
    assert [h["train_loss"] for h in second.history] == [h["train_loss"] for h in whole.history]
    assert second.best_epoch == whole.best_epoch
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(student(), TrainConfig(epochs=1, progress=False)).fit(toy_dataset(256), checkpoint_dir=tmp_path, resume=True)
    result = Trainer(student(), TrainConfig(epochs=1, progress=False)).fit(
        toy_dataset(256), checkpoint_dir=tmp_path, resume="auto")
    assert result.epochs_run == 1 and result.checkpoint == tmp_path / "last.pt"
