"""What can stop or reject a fine-tuning step, each naming its cause."""

from __future__ import annotations

from drivers.errors import LabrigError

__all__ = ["FineTuneError", "LightLost", "SaturatedFrames"]


class FineTuneError(LabrigError):
    """A fine-tune cannot start or go on (bad program, calibration, data or bench)."""


class LightLost(FineTuneError):
    """The frames are at the dark level or the light was made safe under the measurement:
    never data."""


class SaturatedFrames(FineTuneError):
    """Too many tile pixels at full scale: the step that led here is rolled back."""

    def __init__(self, message: str, fraction: float) -> None:
        super().__init__(message)
        self.fraction = fraction
