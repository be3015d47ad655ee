"""KD loss against a hand computation; the hint loss's shapes and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from labrig.distill import HintLoss, kd_loss


def _softmax(z: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def test_kd_loss_matches_hand_computation():
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    y = [1, 2]
    temperature, alpha = 4.0, 0.3
    kl = ce = 0.0
    for si, ti, yi in zip(s, t, y, strict=True):
        ps, pt = _softmax(si, temperature), _softmax(ti, temperature)
        kl += sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
        ce += -math.log(_softmax(si, 1.0)[yi])
    expected = alpha * temperature**2 * kl / 2 + (1 - alpha) * ce / 2
    got = kd_loss(torch.tensor(s, dtype=torch.float64), torch.tensor(t, dtype=torch.float64),
                  torch.tensor(y), temperature=temperature, alpha=alpha)
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_kd_loss_limits():
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    y = torch.randint(0, 10, (5,))
    torch.testing.assert_close(kd_loss(s, t, y, alpha=0.0), torch.nn.functional.cross_entropy(s, y))
    assert float(kd_loss(t, t, y, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)  # student = teacher
    with pytest.raises(ValueError):
        kd_loss(s, t, y, temperature=0.0)


def test_kd_does_not_train_the_teacher():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2])).backward()
    assert s.grad is not None and t.grad is None


def test_hint_loss_projects_and_pools():
    hint = HintLoss(student_channels=5, teacher_channels=8)
    student = torch.randn(2, 5, 36, 36, requires_grad=True)
    teacher = torch.randn(2, 8, 14, 14)
    loss = hint(student, teacher)
    loss.backward()
    assert loss.ndim == 0 and student.grad is not None and hint.project.weight.grad is not None
