"""A configured bench: a TOML profile, devices found through plugins, and laser safety.

    from labrig.bench import open_bench
    with open_bench("sim") as bench:
        frame = bench.camera.grab()
"""

from labrig.bench.bench import Bench, open_bench
from labrig.bench.plugins import PluginError, available_kinds, create_device, device_class
from labrig.bench.profile import BUILD_ORDER, ROLES, Profile, embedded_profiles, load_profile
from labrig.bench.safety import SafetyGuard

__all__ = [
    "BUILD_ORDER",
    "ROLES",
    "Bench",
    "PluginError",
    "Profile",
    "SafetyGuard",
    "available_kinds",
    "create_device",
    "device_class",
    "embedded_profiles",
    "load_profile",
    "open_bench",
]
