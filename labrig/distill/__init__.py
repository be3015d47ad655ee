"""Training: knowledge distillation from a nonlinear teacher into the SCLC student.

`Trainer` runs teachers, no-KD students, KD and hint-KD students with one
optimiser/schedule config; `paper_protocol` chains pre-training, freezing the
optics and distilling into the back end. Checkpoints are atomic and resumable;
`ddp` runs the same trainer under torchrun. `tasks` says what a loss and a
score mean for classification and for segmentation (per-pixel, mIoU).
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
from labrig.distill.losses import HintLoss, dense_kd_loss, kd_loss, soft_target_kl
from labrig.distill.protocols import ProtocolConfig, ProtocolResult, paper_protocol
from labrig.distill.tasks import (
    CLASSIFICATION,
    IGNORE_INDEX,
    Classification,
    Segmentation,
    Task,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    task_of,
)
from labrig.distill.trainer import (
    FitResult,
    Trainer,
    TrainState,
    evaluate,
    seed_everything,
    teacher_logits_for,
)

__all__ = [
    "CLASSIFICATION", "IGNORE_INDEX", "AugmentConfig", "Checkpoint", "CheckpointError", "Classification",
    "DistillConfig", "FitResult", "HintLoss", "ProtocolConfig", "ProtocolResult", "Segmentation", "Task",
    "TrainConfig", "TrainState", "Trainer", "augment", "confusion_matrix", "ddp", "dense_kd_loss", "evaluate",
    "iou_per_class", "kd_loss", "load_model", "mean_iou", "paper_protocol", "random_crop", "random_hflip",
    "read_checkpoint", "restore_weights", "save_checkpoint", "seed_everything", "soft_target_kl", "task_of",
    "teacher_logits_for",
]
