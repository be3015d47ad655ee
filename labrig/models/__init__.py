"""Models: nonlinear teachers and the SCLC student (linear optical front end +
electronic back end), with the front end runnable as a layer stack, as
collapsed kernels, or through the bench's digital twin."""

from labrig.models.backends import BackendConfig, ElectronicBackend, TileNorm
from labrig.models.detection import DETECTIONS, detect, intensity, psf_pair
from labrig.models.errors import ModelConfigError
from labrig.models.flops import count_flops
from labrig.models.optical import FramePlan, OpticalPath, OpticsConfig, bench_geometry
from labrig.models.registry import MODEL_KINDS, build_model, model_config, model_kind
from labrig.models.runtime import resolve_device, resolve_dtype
from labrig.models.sclc import MODES, LinearConvStack, SCLCConfig, SCLCFrontEnd, full_conv2d
from labrig.models.serialize import config_from_dict, config_to_dict
from labrig.models.student import StudentConfig, StudentModel
from labrig.models.teacher import ARCHS, TeacherCNN, TeacherConfig

__all__ = [
    "ARCHS", "DETECTIONS", "MODEL_KINDS", "MODES", "BackendConfig", "ElectronicBackend",
    "FramePlan", "LinearConvStack", "ModelConfigError", "OpticalPath", "OpticsConfig",
    "SCLCConfig", "SCLCFrontEnd", "StudentConfig", "StudentModel", "TeacherCNN",
    "TeacherConfig", "TileNorm", "bench_geometry", "build_model", "config_from_dict",
    "config_to_dict", "count_flops", "detect", "full_conv2d", "intensity", "model_config",
    "model_kind", "psf_pair", "resolve_device", "resolve_dtype",
]
