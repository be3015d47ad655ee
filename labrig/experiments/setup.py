"""What every classification experiment starts from: the data splits and the teacher.

The splits are seeded and stratified; `train_limit`/`test_limit` take a
stratified-by-shuffle prefix for quick runs. The teacher is trained once (a
`Job` like any other, so it resumes and is reused) or loaded from a
checkpoint, and its logits on the training set are computed once for every KD
student.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from labrig.data import load_dataset, train_val_split
from labrig.data.base import ImageDataset
from labrig.data.errors import DataError
from labrig.distill import load_model, teacher_logits_for
from labrig.distill.trainer import Cancel
from labrig.experiments.jobs import (
    Job,
    JobData,
    load_job_model,
    model_costs,
    run_job,
    test_accuracies,
    write_json,
)
from labrig.io import atomic_write
from labrig.models.errors import ModelConfigError

LOGITS = "teacher_logits.pt"


def limit_dataset(dataset: ImageDataset, limit: int | None, seed: int) -> ImageDataset:
    """A seeded random `limit` images of `dataset` (all of it for None)."""
    if limit is None or limit >= len(dataset):
        return dataset
    if limit < dataset.num_classes:
        raise DataError(f"a limit of {limit} images leaves classes of {dataset.name} unseen")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(order[:limit])


def splits_for(data_dir: str | Path, config: Any) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """`load_splits` with the data settings of a `ClassificationConfig`."""
    return load_splits(data_dir, input_size=config.input_size, val_fraction=config.val_fraction,
                       split_seed=config.split_seed, train_limit=config.train_limit,
                       val_limit=config.val_limit, test_limit=config.test_limit)


def load_splits(
    data_dir: str | Path,
    *,
    input_size: int,
    val_fraction: float,
    split_seed: int,
    train_limit: int | None = None,
    val_limit: int | None = None,
    test_limit: int | None = None,
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """(train, val, test) at `input_size`; the validation part comes out of the training split."""
    full = load_dataset(data_dir, split="train", size=input_size)
    test = load_dataset(data_dir, split="test", size=input_size)
    train, val = train_val_split(full, val_fraction, seed=split_seed)
    return (limit_dataset(train, train_limit, split_seed), limit_dataset(val, val_limit, split_seed + 2),
            limit_dataset(test, test_limit, split_seed + 1))


def prepare_teacher(
    data: JobData,
    out: Path,
    job: Job,
    *,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    cancel: Cancel | None = None,
) -> dict | None:
    """Train `job` (or load `checkpoint`), put the teacher and its training-set logits
    into `data`, and return the teacher's result (None if cancelled)."""
    if checkpoint is not None:
        teacher, ck = load_model(checkpoint, kind="teacher")
        if tuple(ck.config.get("input_size", ())) != tuple(data.train.image_shape[1:]):
            raise ModelConfigError(
                f"teacher {checkpoint} takes {ck.config.get('input_size')} images, the data is "
                f"{data.train.image_shape[1:]}")
        result = {"name": "teacher", "checkpoint": str(checkpoint), "loaded": True,
                  "test_accuracy": test_accuracies(teacher, job, data.test, 512, device)["test"],
                  "val_accuracy": ck.metrics.get("val_accuracy"), **model_costs(teacher)}
        write_json(out / "teacher.json", result)
    else:
        result = run_job(job, data, out, device=device, cancel=cancel)
        if result is None:
            return None
        teacher = load_job_model(out, job)
    data.teacher = teacher
    data.teacher_logits = cached_logits(teacher, data.train, out / LOGITS, device)
    return result


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's weights and buffers: which teacher a logits cache belongs to."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_logits(teacher: torch.nn.Module, train: ImageDataset, path: Path, device: str, *,
                  store_dtype: torch.dtype = torch.float32, batch_size: int = 512) -> torch.Tensor:
    """The teacher's training-set logits, computed once and kept beside the runs
    (recomputed when the teacher, the training set or `store_dtype` differs)."""
    key = fingerprint(teacher)
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True, mmap=True)
            logits = cached["logits"]
            if cached["teacher"] == key and logits.shape[0] == len(train) and logits.dtype == store_dtype:
                return logits
        except Exception:  # a stale or broken cache is recomputed, never trusted
            pass
    logits = teacher_logits_for(teacher, train, device=device, store_dtype=store_dtype, batch_size=batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save({"teacher": key, "logits": logits}, tmp))
    return logits
