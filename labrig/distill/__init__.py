"""Training: knowledge distillation from a nonlinear teacher into the SCLC student.

`Trainer` runs teachers, no-KD students, KD and hint-KD students with one
optimiser/schedule config; `paper_protocol` chains pre-training, freezing the
optics and distilling into the back end. Checkpoints are atomic and resumable;
`ddp` runs the same trainer under torchrun.
"""

from labrig.distill import ddp
from labrig.distill.augment import augment, random_crop, random_hflip
from labrig.distill.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_model,
    read_checkpoint,
    restore_weights,
    save_checkpoint,
)
from labrig.distill.config import AugmentConfig, DistillConfig, TrainConfig
from labrig.distill.losses import HintLoss, kd_loss, soft_target_kl
from labrig.distill.protocols import ProtocolConfig, ProtocolResult, paper_protocol
from labrig.distill.trainer import (
    FitResult,
    Trainer,
    TrainState,
    evaluate,
    seed_everything,
    teacher_logits_for,
)

__all__ = [
    "AugmentConfig", "Checkpoint", "CheckpointError", "DistillConfig", "FitResult", "HintLoss",
    "ProtocolConfig", "ProtocolResult", "TrainConfig", "TrainState", "Trainer", "augment", "ddp",
    "evaluate", "kd_loss", "load_model", "paper_protocol", "random_crop", "random_hflip",
    "read_checkpoint", "restore_weights", "save_checkpoint", "seed_everything", "soft_target_kl",
    "teacher_logits_for",
]
