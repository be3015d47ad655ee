"""Segmentation metrics and losses against hand-computed cases: mIoU, pixel accuracy,
the ignore label (255) in every metric and loss, dense KD."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from labrig.data.segmentation import SegmentationDataset
from labrig.distill import evaluate
from labrig.distill.losses import dense_kd_loss, kd_loss
from labrig.distill.tasks import Segmentation, confusion_matrix, iou_per_class, mean_iou, task_of
from labrig.models.errors import ModelConfigError

# one 2 x 3 image; the last pixel is ignored (and predicted wrong, so counting it would show)
LABELS = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
PREDICTED = torch.tensor([[[0, 1, 1], [1, 1, 0]]])


def logits_for(predicted: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(predicted, classes).permute(0, 3, 1, 2).double() * 5


def test_confusion_and_iou_by_hand() -> None:
    cm = confusion_matrix(PREDICTED, LABELS, 3)
    # rows: truth, columns: prediction; the ignored pixel is in no cell
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    # IoU0 = 1 / (1 + 0 FP + 1 FN), IoU1 = 2 / (2 + 2 FP + 0 FN), IoU2 = 0 / (0 + 0 + 1)
    assert iou_per_class(cm).tolist() == [0.5, 0.5, 0.0]
    assert mean_iou(cm) == pytest.approx(1 / 3)


def test_a_class_absent_from_labels_and_predictions_is_not_averaged() -> None:
    cm = confusion_matrix(PREDICTED, LABELS, 5)
    iou = iou_per_class(cm)
    assert math.isnan(iou[3]) and math.isnan(iou[4])
    assert mean_iou(cm) == pytest.approx(1 / 3)


def test_task_metrics_by_hand_and_additive_over_batches() -> None:
    task = Segmentation(3)
    logits = logits_for(PREDICTED, 3)
    metrics = task.summarise(task.batch_totals(logits, LABELS))
    assert metrics["miou"] == pytest.approx(1 / 3)
    assert metrics["accuracy"] == pytest.approx(3 / 5)  # 5 labelled pixels, 3 right
    assert metrics["count"] == 5
    ce = F.cross_entropy(logits, LABELS, ignore_index=255, reduction="sum") / 5
    assert metrics["loss"] == pytest.approx(float(ce))
    # two images scored together = the sums of each: mIoU is not a mean of per-batch mIoUs
    both_logits = torch.cat((logits, logits_for(LABELS.clamp(max=2), 3)))
    both_labels = torch.cat((LABELS, LABELS))
    together = task.batch_totals(both_logits, both_labels)
    apart = task.batch_totals(both_logits[:1], both_labels[:1]) + task.batch_totals(both_logits[1:], both_labels[1:])
    torch.testing.assert_close(together, apart)


def test_evaluate_scores_a_segmentation_dataset_with_the_ignore_label() -> None:
    images = torch.zeros(1, 1, 2, 3, dtype=torch.uint8)
    data = SegmentationDataset(images, LABELS.to(torch.uint8), ["a", "b", "c"])

    class Fixed(torch.nn.Module):
        task = "segmentation"

        class config:  # what task_of reads
            num_classes = 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return logits_for(PREDICTED, 3).to(x.dtype).expand(len(x), -1, -1, -1)

    model = Fixed()
    assert task_of(model) == Segmentation(3)
    metrics = evaluate(model, data, device="cpu")
    assert metrics["miou"] == pytest.approx(1 / 3) and metrics["accuracy"] == pytest.approx(3 / 5)


def test_labels_outside_the_classes_are_an_error_not_a_silent_drop() -> None:
    with pytest.raises(ModelConfigError, match="labels span"):
        confusion_matrix(PREDICTED, torch.tensor([[[0, 0, 7], [1, 2, 255]]]), 3)
    with pytest.raises(ModelConfigError, match="ignore_index"):
        Segmentation(300, ignore_index=255)


def test_dense_kd_is_per_pixel_kd_over_the_labelled_pixels_only() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 3, 3), generator=g)
    y[0, 0, :] = 255
    loss = dense_kd_loss(s, t, y, temperature=3.0, alpha=0.7)
    valid = (y != 255).reshape(-1)
    flat = lambda z: z.permute(0, 2, 3, 1).reshape(-1, 4)[valid]  # noqa: E731
    torch.testing.assert_close(loss, kd_loss(flat(s), flat(t), y.reshape(-1)[valid], 3.0, 0.7))
    # the student's output at ignored pixels does not matter
    loss.backward()
    assert torch.all(s.grad[0, :, 0, :] == 0) and s.grad.abs().sum() > 0
    # alpha = 0 is the plain cross-entropy with the ignore label
    torch.testing.assert_close(dense_kd_loss(s, t, y, alpha=0.0), F.cross_entropy(s, y, ignore_index=255))


def test_losses_of_a_wholly_ignored_batch_are_zero_not_nan() -> None:
    s = torch.randn(1, 3, 2, 2, requires_grad=True)
    y = torch.full((1, 2, 2), 255)
    for loss in (Segmentation(3).loss(s, y), Segmentation(3).distill_loss(s, s.detach(), y, 4.0, 0.5)):
        assert float(loss.detach()) == 0.0
        loss.backward()
