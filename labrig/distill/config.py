"""Training configs: one optimiser/schedule config shared by every kind of run
(teacher, no-KD student, KD student), so KD and no-KD differ only in the loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from labrig.models.errors import ModelConfigError

Optimizer = Literal["adamw", "adam", "sgd"]
Schedule = Literal["cosine", "step", "none"]
Method = Literal["none", "kd", "hint"]


@dataclass(frozen=True)
class AugmentConfig:
    """Per-batch augmentation: random crop from a zero-padded image (0: off), horizontal flip."""

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ModelConfigError(f"crop_padding must be >= 0, got {self.crop_padding}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, batching, stopping and runtime of one training run.

    The learning rate follows a per-step schedule (linear warm-up, then cosine
    or step decay), computed from the step count alone, so a resumed run sees
    exactly the rates an uninterrupted one would.
    """

    epochs: int = 20
    """Passes over the training set, or, with `reference_train_size`, the budget in those units."""
    reference_train_size: int | None = None
    """The training-set size `epochs` was chosen for. When set, the budget is the optimisation
    steps `epochs` takes on that size: a smaller set (a lab's own data) runs more epochs to the
    same step count, capped by `max_epochs`; a larger one keeps `epochs`. None: epochs as given."""
    max_epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: Optimizer = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = True
    schedule: Schedule = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    patience: int | None = None
    """Stop after this many epochs without a better validation accuracy (None: never)."""
    min_delta: float = 0.0
    restore_best: bool = True
    """At the end, load the weights of the best validation epoch."""
    max_steps_per_epoch: int | None = None
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    progress: bool = True
    sync_batchnorm: bool = False
    """Under DDP on CUDA, use SyncBatchNorm (batch statistics over all ranks)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ModelConfigError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ModelConfigError(f"optimizer must be adamw, adam or sgd, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "none"):
            raise ModelConfigError(f"schedule must be cosine, step or none, got {self.schedule!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ModelConfigError("lr must be > 0, weight_decay and warmup_epochs >= 0")
        if self.patience is not None and self.patience < 1:
            raise ModelConfigError(f"patience must be >= 1 or None, got {self.patience}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ModelConfigError("max_steps_per_epoch must be >= 1 or None")
        if self.reference_train_size is not None and self.reference_train_size < 1:
            raise ModelConfigError("reference_train_size must be >= 1 or None")
        if self.max_epochs < self.epochs:
            raise ModelConfigError(f"max_epochs ({self.max_epochs}) must be >= epochs ({self.epochs})")

    def reference_steps(self) -> int | None:
        """Optimisation steps the budget promises (None without `reference_train_size`)."""
        if self.reference_train_size is None:
            return None
        per_epoch = max(1, self.reference_train_size // self.batch_size)  # as the trainer: full batches
        if self.max_steps_per_epoch is not None:
            per_epoch = min(per_epoch, self.max_steps_per_epoch)
        return self.epochs * per_epoch

    def unit_steps(self, steps_per_epoch: int) -> int:
        """Optimisation steps of one budget epoch: an epoch of the reference size when one is
        set (so warm-up and step decay keep their place in the schedule on a smaller set),
        else of the training set itself."""
        if self.reference_train_size is None:
            return steps_per_epoch
        per_epoch = max(1, self.reference_train_size // self.batch_size)
        return min(per_epoch, self.max_steps_per_epoch) if self.max_steps_per_epoch is not None else per_epoch

    def epochs_for(self, steps_per_epoch: int) -> int:
        """Epochs to run when one epoch is `steps_per_epoch` optimisation steps (see
        `reference_train_size`): the fewest that reach the reference steps, within
        [`epochs`, `max_epochs`]."""
        steps = self.reference_steps()
        if steps is None:
            return self.epochs
        return max(self.epochs, min(self.max_epochs, math.ceil(steps / max(1, steps_per_epoch))))


@dataclass(frozen=True)
class DistillConfig:
    """What the student learns from: labels only (``none``, the no-KD baseline),
    Hinton KD (``kd``: α·T²·KL + (1−α)·CE), or KD plus `hint_weight` times the
    feature-hint MSE between the student's optical channels and a teacher stage
    (``hint``)."""

    method: Method = "none"
    temperature: float = 10.0
    alpha: float = 0.5
    hint_weight: float = 1.0
    hint_layer: str | None = None
    """Teacher stage for the hint (None: the teacher's `hint_layer` or last stage)."""

    def __post_init__(self) -> None:
        if self.method not in ("none", "kd", "hint"):
            raise ModelConfigError(f"distill method must be none, kd or hint, got {self.method!r}")
        if self.temperature <= 0 or not 0 <= self.alpha <= 1 or self.hint_weight < 0:
            raise ModelConfigError("temperature must be > 0, alpha in [0, 1], hint_weight >= 0")
