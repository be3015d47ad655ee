"""Bench profiles: TOML data that every floor reads (the bench, the twin, the compiler).

They sit on the lowest floor, beside `labrig.optics` and `drivers.base`, so a
model or the compiler can read a bench's geometry without importing the bench.
The embedded profiles (``sim``, ``sim-ideal``, ``sim-wide``) are the ``*.toml``
files of this package; ``examples/`` holds profiles of real rigs to copy.
"""

from labrig.profiles.profile import (
    BUILD_ORDER,
    ILLUMINATIONS,
    ROLES,
    Profile,
    embedded_profiles,
    example_profiles,
    load_profile,
)

__all__ = [
    "BUILD_ORDER",
    "ILLUMINATIONS",
    "ROLES",
    "Profile",
    "embedded_profiles",
    "example_profiles",
    "load_profile",
]
