"""In-situ (physics-aware) fine-tuning of a bench program against measured camera frames.

Uses only the device protocols (a `Bench`) and the calibrated twin: never the
simulator. See docs/insitu.md.
"""

from labrig.hil.errors import FineTuneError, LightLost, SaturatedFrames
from labrig.hil.function import BenchTiles, Residuals, filter_gray
from labrig.hil.measure import BenchMeter, rescale_exposure
from labrig.hil.trainer import MODES, FineTuneConfig, FineTuner, FineTuneResult
from labrig.hil.twin_tiles import TwinTiles

__all__ = [
    "MODES",
    "BenchMeter",
    "BenchTiles",
    "FineTuneConfig",
    "FineTuneError",
    "FineTuneResult",
    "FineTuner",
    "LightLost",
    "Residuals",
    "SaturatedFrames",
    "TwinTiles",
    "filter_gray",
    "rescale_exposure",
]
