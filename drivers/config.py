"""Typed access to one table of a TOML profile, with errors that name key and file.

Used by `labrig.profiles` and by every driver factory, so a malformed
profile fails the same way whichever layer reads the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from drivers.errors import ConfigError

_MISSING = object()

#: keys of the device tables that describe optics (read by labrig.geometry for the optical twin; drivers `accept` them)
MODULATOR_KEYS = ("resolution", "pitch_m", "bit_depth", "fill_factor", "modulation")
CAMERA_KEYS = (
    "resolution", "pitch_m", "bit_depth", "fill_factor", "quantum_efficiency", "full_well_e",
    "conversion_dn_per_e", "read_noise_e", "dark_current_e_per_s", "offset_dn",
)


#: the largest device side and pixel count a profile may declare (today's largest sensors and SLMs
#: are ~14k per side and ~150 Mpx)
MAX_SIDE = 32768
MAX_PIXELS = 1 << 28


class Section:
    """A read-only view of a TOML table that remembers where it came from.

    `where` is a dotted path such as ``devices.camera``; `source` the file (or
    ``<embedded sim>``). Every getter raises `ConfigError` naming both. Keys that
    were never read can be reported with `unused()` to catch typos.
    """

    def __init__(self, data: Mapping[str, Any], where: str = "", source: str = "<profile>") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: [{where}] must be a table, got {type(data).__name__}")
        self.data = dict(data)
        self.where = where
        self.source = source
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key(name)}: {message}")

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def _raw(self, name: str, default: Any) -> Any:
        self._read.add(name)
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            raise self.error(name, "required key is missing")
        return default

    def section(self, name: str, required: bool = True) -> Section:
        value = self._raw(name, _MISSING if required else {})
        if not isinstance(value, Mapping):
            raise self.error(name, f"must be a table, got {value!r}")
        return Section(value, self.key(name), self.source)

    def get_str(self, name: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> str:
        value = self._raw(name, default)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(name, f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    def get_bool(self, name: str, default: Any = _MISSING) -> bool:
        value = self._raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def get_float(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
        positive: bool = False,
    ) -> float:
        value = self._raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(name, f"must be finite, got {value!r}")
        if positive and value <= 0:
            raise self.error(name, f"must be > 0, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"must be >= {min:g}, got {value!r}")
        if max is not None and value > max:
            raise self.error(name, f"must be <= {max:g}, got {value!r}")
        return value

    def get_int(
        self, name: str, default: Any = _MISSING, *, min: int | None = None, max: int | None = None
    ) -> int:
        value = self._raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"must be >= {min}, got {value!r}")
        if max is not None and value > max:
            raise self.error(name, f"must be <= {max}, got {value!r}")
        return value

    def get_floats(self, name: str, length: int | None = None, default: Any = _MISSING) -> list[float]:
        value = self._raw(name, default)
        if not isinstance(value, list | tuple) or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in value
        ):
            raise self.error(name, f"expected a list of numbers, got {value!r}")
        if length is not None and len(value) != length:
            raise self.error(name, f"expected {length} numbers, got {len(value)}")
        return [float(v) for v in value]

    def get_shape(self, name: str, default: Any = _MISSING) -> tuple[int, int]:
        """A [rows, cols] pair of positive integers, each at most `MAX_SIDE` (no device has more;
        a typo such as 100000 must be this key's error, not an 80 GB allocation somewhere else)."""
        value = self._raw(name, default)
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)
        ):
            raise self.error(name, f"expected [rows, cols] of positive integers, got {value!r}")
        if max(value) > MAX_SIDE or value[0] * value[1] > MAX_PIXELS:
            raise self.error(name, f"{value[0]} x {value[1]} pixels is beyond any device (at most {MAX_SIDE} "
                                   f"per side and {MAX_PIXELS:,} in all)")
        return int(value[0]), int(value[1])

    def get_range(self, name: str, default: Any = _MISSING) -> tuple[float, float]:
        lo, hi = self.get_floats(name, 2, default)
        if lo > hi:
            raise self.error(name, f"range [{lo:g}, {hi:g}] has min > max")
        return lo, hi

    def accept(self, *names: str) -> None:
        """Mark keys as known without reading them here (another layer reads them)."""
        self._read.update(names)

    def unused(self) -> list[str]:
        """Keys present in the table that nobody read (likely typos)."""
        return sorted(self.key(k) for k in self.data if k not in self._read)

    def check_unused(self) -> None:
        extra = [k for k in self.data if k not in self._read]
        if extra:
            raise ConfigError(
                f"{self.source}: unknown key(s) {', '.join(self.key(k) for k in sorted(extra))}"
            )
