"""A small trained student and its program, shared by the deploy tests (built once per session)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from model_helpers import SIZE, toy_dataset

from labrig.data import ImageDataset
from labrig.deploy import Program, compile_program
from labrig.distill import TrainConfig, Trainer, seed_everything
from labrig.models import OpticsConfig, SCLCConfig, StudentConfig, StudentModel


def make_student(seed: int = 0, channels: int = 4, **optics) -> StudentModel:
    seed_everything(seed)
    return StudentModel(StudentConfig(
        frontend=SCLCConfig(channels=(channels, channels), kernel_sizes=(3, 3)),
        input_size=(SIZE, SIZE), optics=OpticsConfig(profile="sim-ideal", **optics)))


@functools.lru_cache(maxsize=1)
def trained_student() -> StudentModel:
    """Three quick epochs on the toy task: well above chance, a few seconds."""
    model = make_student()
    Trainer(model, TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False, seed=1, device="cpu")).fit(train_set())
    return model.eval()


@functools.lru_cache(maxsize=1)
def train_set() -> ImageDataset:
    return toy_dataset(320)


@functools.lru_cache(maxsize=1)
def held_out() -> ImageDataset:
    return toy_dataset(160, seed=5)


@functools.lru_cache(maxsize=1)
def program() -> Program:
    """The trained student compiled for `sim-ideal` (do not modify its arrays)."""
    student = trained_student()
    with torch.no_grad():
        return compile_program(student, "sim-ideal", train_set(), classes=train_set().classes)


def fault_profile(tmp_path: Path, faults: str, name: str = "faulty.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[bench]\nname = "faulty"\nextends = "sim-ideal"\n\n[faults]\n{faults}\n')
    return path
