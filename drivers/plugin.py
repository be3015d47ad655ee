"""What a device plugin receives when a bench builds it from a profile.

A device class registered under the ``labrig.devices`` entry-point group
implements ``from_config(section, context) -> Device``. The context gives it
the whole profile (read-only) and a dict shared by the devices of one bench,
which is how simulated devices find their common optical world.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.base import Device
from drivers.config import Section


@dataclass
class DeviceContext:
    profile: Section
    """The whole profile, for devices that need more than their own table (e.g. [optics])."""
    role: str
    """The role this device fills in the bench: input, filter, camera, shutter or laser."""
    shared: dict[str, Any] = field(default_factory=dict)
    """Objects shared by the devices of one bench (kept until the bench closes)."""


class DevicePlugin(Protocol):
    """The interface an entry point under ``labrig.devices`` must point to."""

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> Device: ...
