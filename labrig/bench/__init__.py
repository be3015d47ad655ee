"""A configured bench: the devices of a profile (`labrig.profiles`), found through plugins, and laser safety.

    from labrig.bench import open_bench
    with open_bench("sim") as bench:
        frame = bench.camera.grab()
"""

from labrig.bench.bench import Bench, open_bench
from labrig.bench.plugins import PluginError, available_kinds, create_device, device_class
from labrig.bench.safety import SafetyGuard

__all__ = [
    "Bench",
    "PluginError",
    "SafetyGuard",
    "available_kinds",
    "create_device",
    "device_class",
    "open_bench",
]
