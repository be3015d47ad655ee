"""One error hierarchy for every device, real or simulated.

Callers catch `DeviceError` to handle any device failure; the subclasses say
what kind, so a runner can retry a timeout but stop on a disconnect.
"""

from __future__ import annotations

from typing import Any


class LabrigError(Exception):
    """Base of every error labrig raises on purpose."""


class ConfigError(LabrigError, ValueError):
    """A profile or setting is malformed; the message names the key and the file."""


class DeviceError(LabrigError):
    """A device refused a command or failed; the message names the device."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer (or deliver a frame) in time."""


class DeviceDisconnected(DeviceError, ConnectionError):
    """The device went away (cable, power, driver); it must be reopened."""


class DeviceNotOpen(DeviceError):
    """A command was sent to a device that is closed."""


class OutOfRange(DeviceError, ValueError):
    """A setting is outside the device's bounds; the message gives both."""


class Unsupported(DeviceError):
    """The device lacks a feature (an absent GenICam node): say so, never pretend it was set."""


class PatternError(DeviceError, ValueError):
    """A pattern for an SLM has the wrong shape, dtype or range."""


class SafetyError(DeviceError):
    """A safety precondition (shutter, interlock) is not met."""


class FrameDropped(DeviceError):
    """A frame was lost or arrived incomplete; the next grab may succeed."""


class WriteFailed(DeviceError):
    """A device did not take a pattern or command (an SLM write error); sending it again may succeed."""


#: errors after which the same frame or pattern can simply be tried again
TRANSIENT_ERRORS: tuple[type[DeviceError], ...] = (DeviceTimeout, FrameDropped, WriteFailed)


def completed_frames(exc: BaseException) -> Any:
    """The frames a batched grab delivered before it raised `exc` (None if it kept none).

    A camera's ``grab_batch`` attaches them as ``exc.completed`` so that a fault in the
    middle of a batch costs only the frame it hit, never the frames before it."""
    return getattr(exc, "completed", None)
