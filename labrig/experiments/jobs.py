"""One training job of an experiment: build, (initialise,) train, test, record.

A job is plain data (`Job`), identified by what decides its result (model,
training, loss, initialisation), not by its name: its checkpoints and result
live in ``<out>/jobs/<key>/``. A job whose result exists is loaded, not
retrained, so an interrupted experiment resumes where it stopped, a finished
one re-reports instantly, and two experiments sharing an output folder share
every identical run (the classification experiment's students are cells of
the KD study). Results hold what a report
needs: test accuracy (in every evaluated mode), validation accuracy, epochs,
wall time, parameter counts and electronic FLOPs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labrig.data.base import ImageDataset
from labrig.distill import (
    DistillConfig,
    TrainConfig,
    Trainer,
    ddp,
    evaluate,
    load_model,
    read_checkpoint,
    restore_weights,
    save_checkpoint,
    seed_everything,
)
from labrig.distill.trainer import BEST, LAST, Cancel
from labrig.filelock import FileLock
from labrig.io import atomic_write
from labrig.models.registry import build_model
from labrig.models.serialize import config_to_dict

RESULT = "result.json"
SETTINGS = "settings.json"
LOCK = ".lock"


@dataclass(frozen=True)
class Job:
    """A model to train and test. `init_from` is the key of a finished job whose best
    weights start this one (the paper protocol's stage 2); `freeze_optics`
    trains the back end only; `eval_modes` are the student front-end modes the
    test set is scored in (the first is the headline `test_accuracy`)."""

    name: str
    kind: str
    model: dict[str, Any]
    train: TrainConfig
    distill: DistillConfig = field(default_factory=DistillConfig)
    init_from: str | None = None
    freeze_optics: bool = False
    eval_modes: tuple[str, ...] = ("collapsed",)
    validate: bool = True
    """Score the validation split after every epoch (and keep the best epoch); off for
    short fine-tunes whose evaluation is costly (the optics-aware twin)."""
    tags: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """What decides the result: a stored result with other settings is stale. Progress
        bars do not decide it, so ``--no-progress`` reuses runs made with them."""
        train = {k: v for k, v in config_to_dict(self.train).items() if k != "progress"}
        return {"kind": self.kind, "model": self.model, "train": train,
                "distill": config_to_dict(self.distill), "init_from": self.init_from,
                "freeze_optics": self.freeze_optics, "eval_modes": list(self.eval_modes),
                **({} if self.validate else {"validate": False})}

    @property
    def key(self) -> str:
        """A hash of `settings`: the job's identity and folder name."""
        text = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass
class JobData:
    """Train/validation/test splits and what KD needs, shared by every job of an experiment."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    teacher: nn.Module | None = None
    teacher_logits: torch.Tensor | None = None
    """The teacher's logits on `train` (no augmentation): KD without a teacher forward pass."""


def job_dir(out: Path, job: Job | str) -> Path:
    """The folder of a job (or of a job key)."""
    return Path(out) / "jobs" / (job if isinstance(job, str) else job.key)


def load_result(out: Path, job: Job) -> dict[str, Any] | None:
    """The stored result of `job`, or None if absent or made with other settings."""
    path = job_dir(out, job) / RESULT
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if result.get("settings") != json.loads(json.dumps(job.settings())):
        return None
    return result


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Atomic, indented JSON (the folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def model_costs(model: nn.Module) -> dict[str, Any]:
    """Parameter counts and electronic FLOPs per image of a teacher or student."""
    costs: dict[str, Any] = {"params": model.param_count(), "electronic_flops": int(model.flops())}
    if getattr(model, "kind", None) == "student":
        costs["digital_frontend_flops"] = int(model.digital_frontend_flops())
    return costs


def test_accuracies(model: nn.Module, job: Job, test: ImageDataset, batch_size: int, device: str) -> dict[str, float]:
    """Test accuracy in each of the job's evaluation modes (teachers: one plain pass)."""
    if job.kind != "student":
        return {"test": evaluate(model, test, batch_size=batch_size, device=device)["accuracy"]}
    scores = {}
    keep = model.mode
    try:
        for mode in job.eval_modes:
            model.mode = mode
            scores[mode] = evaluate(model, test, batch_size=batch_size, device=device)["accuracy"]
    finally:
        model.mode = keep
    return scores


def run_job(
    job: Job,
    data: JobData,
    out: Path,
    *,
    device: str = "auto",
    cancel: Cancel | None = None,
) -> dict[str, Any] | None:
    """Train and test `job` (or load its stored result); None if cancelled. Progress
    bars follow the job's own `TrainConfig.progress`.

    Training resumes from the job's last epoch checkpoint if one exists. A job is
    trained by one process at a time: another experiment sharing `out` waits for
    it and then loads its result (a file lock; not across torchrun ranks).
    """
    done = load_result(out, job)
    if done is not None:
        return done
    folder = job_dir(out, job)
    with _exclusive(folder):
        done = load_result(out, job)
        if done is not None:
            return done
        return _train_and_test(job, data, out, folder, device=device, cancel=cancel)


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold the job folder's lock (main process only; released if the process dies)."""
    if not is_main_process():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK, what=f"training job {folder.name}").acquire(wait_s=None)
    try:
        yield
    finally:
        lock.release()


def _train_and_test(job: Job, data: JobData, out: Path, folder: Path, *, device: str,
                    cancel: Cancel | None) -> dict[str, Any] | None:
    _forget_stale_checkpoints(folder, job)
    ddp.barrier()
    seed_everything(job.train.seed)
    model = build_model(job.kind, job.model)
    if job.init_from is not None:
        restore_weights(model, read_checkpoint(job_dir(out, job.init_from) / BEST))
    if job.freeze_optics:
        model.freeze_optics()
    kd_from_logits = job.distill.method == "kd" and data.teacher_logits is not None \
        and not (job.train.augment.crop_padding or job.train.augment.hflip)
    trainer = Trainer(
        model, job.train, distill=job.distill, cancel=cancel,
        teacher=None if job.distill.method == "none" or kd_from_logits else data.teacher,
        teacher_logits=data.teacher_logits if kd_from_logits else None,
    )
    started = time.perf_counter()
    fit = trainer.fit(data.train, data.val if job.validate else None, checkpoint_dir=folder, resume="auto")
    if fit.cancelled:
        return None
    if not job.validate and is_main_process():  # no best epoch to keep: the job's weights are the last ones
        save_checkpoint(folder / BEST, model, metrics=fit.history[-1] if fit.history else {}, epoch=fit.epochs_run)
    seconds = time.perf_counter() - started
    scores = test_accuracies(model, job, data.test, job.train.eval_batch_size, device)
    headline = next(iter(scores.values()))
    result = {
        "name": job.name,
        "key": job.key,
        "tags": job.tags,
        "settings": job.settings(),
        "test_accuracy": headline,
        "test_accuracy_by_mode": scores,
        "val_accuracy": fit.final.get("accuracy"),
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "train_seconds": seconds,
        "images_per_s": _mean([h["images_per_s"] for h in fit.history]),
        "history": fit.history,
        "checkpoint": str(folder / BEST),
        **model_costs(model),
    }
    if is_main_process():
        write_json(folder / RESULT, result)
    ddp.barrier()  # every rank may now read the checkpoints and result rank 0 wrote
    return result


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 under it: the one process that writes results."""
    info = ddp.current()
    return info is None or info.is_main


def _forget_stale_checkpoints(folder: Path, job: Job) -> None:
    """Resume only what these settings started: checkpoints of other settings are removed."""
    marker = folder / SETTINGS
    settings = json.loads(json.dumps(job.settings()))
    if marker.is_file():
        try:
            same = json.loads(marker.read_text()) == settings
        except (OSError, json.JSONDecodeError):
            same = False
        if same:
            return
    if not is_main_process():
        return
    for name in (LAST, BEST, RESULT):
        (folder / name).unlink(missing_ok=True)
    write_json(marker, settings)


def load_job_model(out: Path, job: Job, device: str = "cpu") -> nn.Module:
    """The best weights of a finished job, rebuilt from its checkpoint."""
    model, _ = load_model(job_dir(out, job) / BEST, kind=job.kind, device=device)
    return model


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
