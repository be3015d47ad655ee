"""The paper's training protocol, built from `Trainer` runs.

Stage 1 pre-trains the whole student (optics and back end) on labels; stage 2
freezes the optics (the masks are now fixed, as on the bench) and distils the
teacher into the electronic back end only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labrig.data.base import ImageDataset
from labrig.distill.config import DistillConfig, TrainConfig
from labrig.distill.trainer import Cancel, FitResult, Trainer
from labrig.models.student import StudentModel


@dataclass(frozen=True)
class ProtocolConfig:
    """Both stages' training settings and the stage-2 distillation recipe."""

    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    pretrain_distill: DistillConfig = field(default_factory=DistillConfig)
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(method="kd"))
    reset_backend: bool = False
    """Re-initialise the back end before stage 2 (else it continues from stage 1)."""


@dataclass
class ProtocolResult:
    pretrain: FitResult
    distill: FitResult


def paper_protocol(
    student: StudentModel,
    teacher: Any,
    train: ImageDataset,
    val: ImageDataset | None,
    config: ProtocolConfig | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    cancel: Cancel | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    teacher_logits: Any = None,
) -> ProtocolResult:
    """Pre-train the student, freeze its optics, distil into the back end.

    Checkpoints go to ``checkpoint_dir/pretrain`` and ``checkpoint_dir/distill``.
    The student is left with its optics frozen. `teacher_logits` (see `Trainer`)
    stand in for the teacher in a stage-2 ``kd`` without augmentation.
    """
    config = config or ProtocolConfig()
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    stage1 = Trainer(student, config.pretrain, teacher=teacher if config.pretrain_distill.method != "none" else None,
                     distill=config.pretrain_distill, cancel=cancel, on_epoch=on_epoch)
    first = stage1.fit(train, val, checkpoint_dir=folder / "pretrain" if folder else None)
    if first.cancelled:
        return ProtocolResult(first, first)
    student.freeze_optics()
    if config.reset_backend:
        for module in student.back.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    stage2 = Trainer(student, config.finetune, teacher=teacher, distill=config.distill,
                     cancel=cancel, on_epoch=on_epoch,
                     teacher_logits=teacher_logits if config.distill.method == "kd" else None)
    second = stage2.fit(train, val, checkpoint_dir=folder / "distill" if folder else None)
    return ProtocolResult(first, second)
