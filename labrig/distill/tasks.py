"""What a prediction task means to the trainer: its loss, its KD loss and its metrics.

The `Trainer` is the same for every task; only these differ. Classification
scores one label per image (accuracy). Segmentation scores one label per pixel,
with `ignore_index` pixels (VOC's 255: boundaries, padding) left out of the
loss and every metric, and is selected on the mean intersection-over-union
(mIoU), the field's standard. A model names its task with a ``task``
attribute (`task_of`); models without one are classifiers.

Metrics are built from sums (`batch_totals`), so they add across batches and
DDP ranks before `summarise` turns them into ratios: an mIoU averaged per
batch would be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from labrig.distill.losses import dense_kd_loss, kd_loss
from labrig.models.errors import ModelConfigError

IGNORE_INDEX = 255


class Task(Protocol):
    """The trainer's view of a task."""

    name: str
    score: str
    """The validation metric that selects the best epoch (higher is better)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                     temperature: float, alpha: float) -> torch.Tensor: ...

    def train_totals(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def batch_totals(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def zero_totals(self, device: torch.device | str) -> torch.Tensor: ...

    def summarise(self, totals: torch.Tensor) -> dict[str, float]: ...


def _totals(*values: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])


@dataclass(frozen=True)
class Classification:
    """One label per image: cross-entropy, Hinton KD, accuracy."""

    name: ClassVar[str] = "classification"
    score: ClassVar[str] = "accuracy"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                     temperature: float, alpha: float) -> torch.Tensor:
        return kd_loss(student, teacher, labels, temperature, alpha)

    def train_totals(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(loss x images, images, correct, scored): the running train loss and accuracy."""
        n = len(labels)
        return _totals(loss.detach().double() * n, n, (logits.argmax(1) == labels).sum(), n, device=logits.device)

    def batch_totals(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(cross-entropy sum, correct, images)."""
        return _totals(F.cross_entropy(logits.double(), labels, reduction="sum"),
                       (logits.argmax(1) == labels).sum(), len(labels), device=logits.device)

    def zero_totals(self, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(3, dtype=torch.float64, device=device)

    def summarise(self, totals: torch.Tensor) -> dict[str, float]:
        count = float(totals[2])
        return {"loss": float(totals[0]) / max(count, 1), "accuracy": float(totals[1]) / max(count, 1),
                "count": count}


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted; ignored pixels left out.

    A label outside [0, C) that is not `ignore_index` is an error, not a silent drop.
    """
    valid = labels != ignore_index
    truth, guess = labels[valid].long(), predicted[valid].long()
    if truth.numel() and (int(truth.min()) < 0 or int(truth.max()) >= num_classes):
        raise ModelConfigError(f"labels span [{int(truth.min())}, {int(truth.max())}] "
                               f"but there are {num_classes} classes (ignore label {ignore_index})")
    return torch.bincount(truth * num_classes + guess, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) per class (float64); NaN for a class absent from
    both the labels and the predictions (it has no IoU and does not enter the mean)."""
    cm = confusion.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes that occur (in the labels or the predictions)."""
    iou = iou_per_class(confusion)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if bool(present.any()) else float("nan")


@dataclass(frozen=True)
class Segmentation:
    """One label per pixel: logits (B, C, H, W), labels (B, H, W) with `ignore_index`.

    The loss is the cross-entropy averaged over the labelled pixels; KD is
    Hinton's per pixel (`dense_kd_loss`); metrics are pixel accuracy and mIoU
    from one confusion matrix over the whole dataset.
    """

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    name: ClassVar[str] = "segmentation"
    score: ClassVar[str] = "miou"

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ModelConfigError(f"segmentation needs >= 2 classes, got {self.num_classes}")
        if 0 <= self.ignore_index < self.num_classes:
            raise ModelConfigError(f"ignore_index {self.ignore_index} is a class index (< {self.num_classes})")

    def _check(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
            raise ModelConfigError(f"segmentation needs logits (B, C, H, W) and labels (B, H, W), got "
                                   f"{tuple(logits.shape)} and {tuple(labels.shape)}")
        return labels.long()

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check(logits, labels)
        if not bool((labels != self.ignore_index).any()):
            return logits.sum() * 0  # nothing labelled: no gradient, not NaN
        return F.cross_entropy(logits, labels, ignore_index=self.ignore_index)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                     temperature: float, alpha: float) -> torch.Tensor:
        return dense_kd_loss(student, teacher, self._check(student, labels), temperature, alpha, self.ignore_index)

    def train_totals(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(loss x images, images, correct pixels, labelled pixels)."""
        labels = self._check(logits, labels)
        valid = labels != self.ignore_index
        correct = ((logits.argmax(1) == labels) & valid).sum()
        return _totals(loss.detach().double() * len(labels), len(labels), correct, valid.sum(), device=logits.device)

    def batch_totals(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(cross-entropy sum, labelled pixels, confusion matrix flattened)."""
        labels = self._check(logits, labels)
        valid = labels != self.ignore_index
        ce = F.cross_entropy(logits.double(), labels, ignore_index=self.ignore_index, reduction="sum")
        cm = confusion_matrix(logits.argmax(1), labels, self.num_classes, self.ignore_index)
        return torch.cat((_totals(ce, valid.sum(), device=logits.device), cm.flatten().double()))

    def zero_totals(self, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(2 + self.num_classes**2, dtype=torch.float64, device=device)

    def summarise(self, totals: torch.Tensor) -> dict[str, float]:
        count = float(totals[1])
        cm = totals[2:].reshape(self.num_classes, self.num_classes)
        return {"loss": float(totals[0]) / max(count, 1), "accuracy": float(cm.diagonal().sum()) / max(count, 1),
                "miou": mean_iou(cm), "count": count}

    def confusion(self, totals: torch.Tensor) -> torch.Tensor:
        """The confusion matrix (C, C) inside `batch_totals` sums."""
        return totals[2:].reshape(self.num_classes, self.num_classes).round().long()


CLASSIFICATION = Classification()


def task_of(model: nn.Module) -> Task:
    """The task a model is trained for (DDP wrappers unwrapped).

    Its ``task`` attribute: a `Task`, or the name ``"segmentation"`` (then the
    classes are ``config.num_classes``), so models need not import the trainer's
    code; no attribute means classification.
    """
    net = getattr(model, "module", model)
    task = getattr(net, "task", None)
    if task is None or task == "classification":
        return CLASSIFICATION
    if task == "segmentation":
        return Segmentation(int(net.config.num_classes))
    if isinstance(task, str):
        raise ModelConfigError(f"{type(net).__name__}: unknown task {task!r}")
    return task
