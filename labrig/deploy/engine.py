"""The deploy jobs as the faces call them: compile a checkpoint for a bench, run a program and report.

`labrig compile` / `labrig run` and the console's Model and Run docks call
these and nothing else, so a program compiled or a run made in either face is
the same: the faces only collect arguments and show what comes back. Each job
takes `progress(done, total, info)` and `cancel` (a callable or a
`threading.Event`) as arguments; a cancelled compile raises `Cancelled`, a
cancelled run stops cleanly between chunks (see `run_program`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.data.base import ImageDataset
from labrig.data.errors import DataError
from labrig.deploy.compiler import DEFAULT_EXPOSURE_FILL, MAX_CALIBRATION, compile_program
from labrig.deploy.errors import Cancelled, RunAborted, RunFileError
from labrig.deploy.images import ImageSource
from labrig.deploy.program import Program
from labrig.deploy.refine import RefineConfig
from labrig.deploy.result import RunResult, write_report
from labrig.deploy.run import DEFAULT_BATCH, run_program
from labrig.deploy.track import DriftConfig
from labrig.distill.checkpoint import Checkpoint, load_model
from labrig.distill.tasks import confusion_matrix
from labrig.io import check_writable_target
from labrig.profiles import Profile
from labrig.progress import Cancel, Progress, is_cancelled

__all__ = [
    "RunOutcome",
    "StudentCheckpoint",
    "compile_checkpoint",
    "load_images",
    "load_student",
    "run_and_report",
]


@dataclass
class StudentCheckpoint:
    """A trained student rebuilt from its checkpoint, ready to compile (in eval mode)."""

    model: torch.nn.Module
    checkpoint: Checkpoint

    @property
    def path(self) -> Path:
        return self.checkpoint.path


def load_student(path: str | Path) -> StudentCheckpoint:
    """Rebuild the student a checkpoint file holds (CPU, eval mode)."""
    model, checkpoint = load_model(path, kind="student")
    return StudentCheckpoint(model.eval(), checkpoint)


def load_images(data: ImageDataset | str | Path | Any, split: str) -> Any:
    """`data` as given (a dataset, an array, an (images, labels) pair), or the `split` of a
    dataset folder."""
    if isinstance(data, str | Path):
        if not str(data).strip():
            raise DataError("no dataset folder given")
        return load_dataset(data, split=split)
    return data


def _first(data: Any, n: int) -> Any:
    """The first `n` images of a dataset or an array."""
    if isinstance(data, ImageDataset):
        return data if n >= len(data) else data.subset(range(n))
    if isinstance(data, tuple) and len(data) == 2:
        return data[0][:n], data[1][:n]
    return data[:n]


def compile_checkpoint(
    student: StudentCheckpoint | str | Path,
    profile: Profile | str | Path | None,
    data: ImageDataset | str | Path | Any,
    *,
    calibration_images: int = MAX_CALIBRATION,
    exposure_fill: float | None = None,
    calibration: Any = None,
    refine: RefineConfig | None = None,
    allow_stale: bool = False,
    bench: Bench | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Program:
    """Compile a student checkpoint for the bench `profile` describes (None: ``sim``).

    `data`: the training data the exposure is chosen on (a dataset, a dataset folder
    whose train split is read, or (N, H, W) images in [0, 1]); its first
    `calibration_images` images are used, and a dataset's class names go into the
    program. The program records the checkpoint and its metrics as its source.
    `calibration` (a calibration file or object), `refine`, `allow_stale` and `bench`
    compile for the bench as measured (`compile_program`).
    """
    steps = 3

    def step(done: int, stage: str) -> None:
        if is_cancelled(cancel):
            raise Cancelled(f"compiling cancelled ({stage})")
        if progress is not None:
            progress(done, steps, {"stage": stage})

    step(0, "loading the student")
    if not isinstance(student, StudentCheckpoint):
        student = load_student(student)
    step(1, "reading the calibration images")
    images = _first(load_images(data, "train"), max(1, int(calibration_images)))
    classes = tuple(getattr(images, "classes", ()) or ())
    step(2, "compiling")
    program = compile_program(
        student.model, profile if profile is not None else "sim", images,
        exposure_fill=exposure_fill or DEFAULT_EXPOSURE_FILL, classes=classes,
        source={"checkpoint": str(student.path), "metrics": student.checkpoint.metrics},
        calibration=calibration, refine=refine, allow_stale=allow_stale, bench=bench,
    )
    if progress is not None:
        progress(steps, steps, {"stage": "compiled"})
    return program


@dataclass
class RunOutcome:
    """How a run ended: its result (complete, cancelled or partial), the images it ran
    (for browsing them with their tiles), the report written, and what stopped it."""

    result: RunResult
    images: ImageSource
    num_classes: int
    """Classes of the program's back end."""
    class_names: tuple[str, ...] = ()
    """Their names, when the program knows them."""
    report: Path | None = None
    failure: BaseException | None = None
    """A device fault (`RunAborted`) or Ctrl-C that ended the run early; `result` is the
    partial run, the run file holds it and the same call resumes it."""

    def confusion(self) -> np.ndarray | None:
        """(classes, classes) counts over the images with a known label (rows: true, columns:
        predicted), or None when no label is known."""
        r = self.result
        if r.labels is None or not len(r.predictions) or not self.num_classes:
            return None
        n = min(len(r.labels), len(r.predictions))
        cm = confusion_matrix(torch.as_tensor(r.predictions[:n]), torch.as_tensor(r.labels[:n]),
                              self.num_classes, ignore_index=-1)
        return cm.numpy()

    def raise_failure(self) -> None:
        """Re-raise what stopped the run, if anything did."""
        if self.failure is not None:
            raise self.failure


def check_run_targets(out_path: str | Path | None, report: str | Path | None) -> None:
    """Refuse run and report paths that are not regular files or new paths, and a report that
    would replace the run file: checked before any light goes on (the report is written last)."""
    for path in (report, out_path):
        if path is not None:
            check_writable_target(path)
    if report is not None and out_path is not None and Path(report).resolve() == Path(out_path).resolve():
        raise RunFileError(f"--report and --out are the same file ({out_path}): the report would replace the run file")


def run_and_report(
    bench: Bench,
    program: Program,
    data: ImageDataset | str | Path | Any,
    out_path: str | Path | None,
    *,
    split: str = "test",
    report: str | Path | None = None,
    limit: int | None = None,
    batch: int = DEFAULT_BATCH,
    device: str = "auto",
    resume: bool = True,
    twin: bool = False,
    save_frames: bool = False,
    save_tiles: bool = True,
    timeout_s: float = 1.0,
    calibration: Any = None,
    ignore_calibration: bool = False,
    allow_stale: bool = False,
    drift: DriftConfig | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    bar: bool = False,
) -> RunOutcome:
    """Run `program` on the open `bench` over `data` (a dataset, a dataset folder whose
    `split` is read, or images) into the run file `out_path`, and write the JSON `report`.

    A run that a device fault or Ctrl-C stops part way still comes back, with its partial
    result, the report written and the exception in `failure` (`raise_failure` re-raises
    it); a failure before the first image (a program that does not fit, bad data, a
    program compiled for another calibration) raises. `calibration`, `ignore_calibration`
    and `allow_stale` are `run_program`'s; `drift` (a `DriftConfig`) re-registers the frames
    against the program's twin during the run (`labrig.deploy.track`). `bar` shows a terminal
    progress bar.
    """
    check_run_targets(out_path, report)
    images_data = load_images(data, split)
    images = ImageSource(images_data, program.input.image_shape, limit=limit)
    failure: BaseException | None = None
    try:
        result = run_program(bench, program, images_data, out_path, device=device, batch=batch, resume=resume,
                             cancel=cancel, progress=bar, on_progress=progress, limit=limit,
                             save_frames=save_frames, save_tiles=save_tiles, twin=twin, timeout_s=timeout_s,
                             calibration=calibration, ignore_calibration=ignore_calibration,
                             allow_stale=allow_stale, drift=drift)
    except (RunAborted, KeyboardInterrupt) as exc:
        partial = getattr(exc, "result", None)
        if partial is None:
            raise
        result, failure = partial, exc
    written = write_report(result, report) if report is not None else None
    names = tuple(program.backend.classes)
    return RunOutcome(result, images, int(program.backend.num_classes),
                      names if len(names) == program.backend.num_classes else (), written, failure)
