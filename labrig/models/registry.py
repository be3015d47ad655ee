"""Build any labrig model from (kind, config dict): what a checkpoint stores."""

from __future__ import annotations

from typing import Any

from torch import nn

from labrig.models.errors import ModelConfigError
from labrig.models.segmentation import SegmentationStudent, SegStudentConfig
from labrig.models.serialize import config_from_dict, config_to_dict
from labrig.models.student import StudentConfig, StudentModel
from labrig.models.teacher import TeacherCNN, TeacherConfig
from labrig.models.unet import UNet, UNetConfig

MODEL_KINDS: dict[str, tuple[type, type[nn.Module]]] = {
    "teacher": (TeacherConfig, TeacherCNN),
    "student": (StudentConfig, StudentModel),
    "unet": (UNetConfig, UNet),
    "seg_student": (SegStudentConfig, SegmentationStudent),
}


def model_kind(model: nn.Module) -> str:
    kind = getattr(model, "kind", None)
    if kind not in MODEL_KINDS:
        raise ModelConfigError(f"{type(model).__name__} is not a labrig model ({', '.join(MODEL_KINDS)})")
    return kind


def model_config(model: nn.Module) -> dict[str, Any]:
    """The model's config as plain data."""
    model_kind(model)
    return config_to_dict(model.config)


def build_model(kind: str, config: dict[str, Any] | Any) -> nn.Module:
    """A fresh model of `kind` (a key of `MODEL_KINDS`) from a config (dict or dataclass)."""
    if kind not in MODEL_KINDS:
        raise ModelConfigError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    config_cls, model_cls = MODEL_KINDS[kind]
    return model_cls(config_from_dict(config_cls, config, kind))
