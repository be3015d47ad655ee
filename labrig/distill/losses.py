"""Distillation losses: Hinton's soft-target KD and a FitNets-style feature hint.

KD = α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y). The T²
keeps the soft term's gradient scale independent of T (Hinton et al. 2015);
the SCLC paper uses T = 10, α = 0.5. KL is averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)), batch mean (no T² factor)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def _check_kd(temperature: float, alpha: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 10.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """α · T² · KL(teacher ‖ student at T) + (1 − α) · CE(student, labels).

    The teacher's logits are detached: the teacher is not trained by its student.
    """
    _check_kd(temperature, alpha)
    soft = soft_target_kl(student_logits, teacher_logits, temperature) * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard


class HintLoss(nn.Module):
    """MSE between projected student optical channels and a teacher layer.

    The student's (normalised) camera tiles (B, K, H, W) go through a learned
    1x1 convolution to the teacher's channel count and are adaptive-average
    pooled to its spatial size; the teacher activations are the target
    (detached). The projection is a training-only regressor (FitNets): it is
    not part of the deployed student.
    """

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        target = teacher_features.detach()
        projected = F.adaptive_avg_pool2d(self.project(student_features), target.shape[-2:])
        return F.mse_loss(projected, target)


def dense_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> torch.Tensor:
    """`kd_loss` per pixel for dense prediction: logits (B, C, H, W), labels (B, H, W).

    Every labelled pixel is one KD sample (soft targets at `temperature` plus
    cross-entropy), averaged over the labelled pixels; pixels labelled
    `ignore_index` (boundaries, padding) enter neither term, so the teacher's
    guess there is not taught either.
    """
    _check_kd(temperature, alpha)
    labels = labels.long()
    valid = labels != ignore_index
    count = valid.sum()
    if not bool(count):
        return student_logits.sum() * 0
    # along the class axis in place, masked by multiplication: no permuted or gathered
    # copies of the (B, C, H, W) logits, whose backward would scatter them back
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    soft = (kl * valid).sum() / count * temperature**2
    hard = F.cross_entropy(student_logits, labels, ignore_index=ignore_index)
    return alpha * soft + (1 - alpha) * hard
