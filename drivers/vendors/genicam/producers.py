"""GenTL producers and device discovery: which .cti files to load, which camera to open.

Kept apart from the camera because finding producers, enumerating devices and
sharing one harvester per producer list is needed without opening a camera
(`enumerate_devices`, `live_acquirers`), and is the only part that owns
process-wide state (`_HARVESTERS`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import DeviceError

__all__ = [
    "GENTL_PATH_VAR",
    "SELECTOR_KEYS",
    "DeviceSelector",
    "enumerate_devices",
    "find_producers",
    "live_acquirers",
]

GENTL_PATH_VAR = "GENICAM_GENTL64_PATH"

#: device-information fields a profile may select a camera by (profile key -> harvesters name)
SELECTOR_KEYS: dict[str, str] = {
    "serial_number": "serial_number",
    "model": "model",
    "user_id": "user_defined_name",
    "device_id": "id_",
    "vendor": "vendor",
}


def find_producers(cti: Sequence[str | os.PathLike[str]] = (), *, base: Path | None = None,
                   environ: Mapping[str, str] | None = None) -> list[Path]:
    """The GenTL producer files to load: `cti` (files or folders), else ``$GENICAM_GENTL64_PATH``.

    Relative paths are taken relative to `base` (the profile's folder). A named
    file that does not exist is an error: harvesters would skip it silently.
    """
    env = os.environ if environ is None else environ
    entries: list[Path] = []
    if cti:
        for item in cti:
            path = Path(item).expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            if not path.exists():
                raise DeviceError(f"GenTL producer {path} does not exist")
            entries.append(path)
    else:
        entries = [Path(p) for p in env.get(GENTL_PATH_VAR, "").split(os.pathsep) if p]
    files: list[Path] = []
    for entry in entries:
        found = sorted(entry.glob("*.cti")) if entry.is_dir() else [entry] if entry.is_file() else []
        for path in found:
            resolved = path.resolve()
            if resolved not in files:
                files.append(resolved)
    if not files:
        where = ", ".join(map(str, entries)) if cti else f"${GENTL_PATH_VAR}={env.get(GENTL_PATH_VAR, '')!r}"
        raise DeviceError(
            f"no GenTL producer (.cti) found in {where}; name one with cti = [...] "
            f"or install your camera vendor's producer"
        )
    return files


@dataclass(frozen=True)
class DeviceSelector:
    """Which camera of the enumerated ones: fields to match, then an index among the matches."""

    fields: Mapping[str, str] = field(default_factory=dict)
    """Profile key (serial_number, model, user_id, device_id, vendor) -> required value."""
    index: int | None = None

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.fields.items()]
        if self.index is not None:
            parts.append(f"index={self.index}")
        return ", ".join(parts) or "any camera"

    def pick(self, devices: Sequence[Mapping[str, Any]]) -> int:
        """Position of the selected device in `devices` (harvesters' property dicts)."""
        matches = [
            i for i, info in enumerate(devices)
            if all(str(info.get(SELECTOR_KEYS[k]) or "") == v for k, v in self.fields.items())
        ]
        listing = "; ".join(_describe_device(d) for d in devices) or "none"
        if self.index is not None:
            if not 0 <= self.index < len(matches):
                raise DeviceError(
                    f"no camera at index {self.index} of {len(matches)} matching "
                    f"{self.describe()}; cameras found: {listing}"
                )
            return matches[self.index]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DeviceError(f"no camera matches {self.describe()}; cameras found: {listing}")
        raise DeviceError(
            f"{len(matches)} cameras match {self.describe()}; add serial_number (or index) "
            f"to pick one: {listing}"
        )


def _describe_device(info: Mapping[str, Any]) -> str:
    return (f"{info.get('vendor') or '?'} {info.get('model') or '?'} "
            f"serial={info.get('serial_number') or '?'} id={info.get('id_') or '?'}"
            + (f" user_id={info['user_defined_name']}" if info.get("user_defined_name") else ""))


class _Harvesters:
    """One harvester per process and set of producers (a producer library loads only once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], list[Any]] = {}  # key -> [harvester, users]
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()

    def acquire(self, files: Sequence[Path]) -> Any:
        from harvesters.core import Harvester

        key = tuple(str(f) for f in files)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                for other in self._entries:
                    shared = set(other) & set(key)
                    if shared:
                        raise DeviceError(
                            f"GenTL producer {sorted(shared)[0]} is already loaded with a different "
                            "producer list by another camera; give every GenICam camera the same cti list"
                        )
                harvester = Harvester()
                try:
                    for path in files:
                        harvester.add_file(str(path))
                    harvester.update()
                except BaseException:
                    harvester.reset()
                    raise
                entry = self._entries[key] = [harvester, 0]
                self.live.add(harvester)
            entry[1] += 1
            return entry[0]

    def release(self, harvester: Any) -> None:
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry[0] is harvester:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._entries[key]
                        harvester.reset()  # destroys acquirers, closes producers
                    return

    def users(self, harvester: Any) -> int:
        with self._lock:
            return next((e[1] for e in self._entries.values() if e[0] is harvester), 0)


_HARVESTERS = _Harvesters()


def live_acquirers() -> int:
    """Image acquirers still valid in harvesters this module created (0 when every camera closed)."""
    return sum(
        1 for h in list(_HARVESTERS.live) for ia in list(h.image_acquirers) if ia.is_valid()
    )


def enumerate_devices(cti: Sequence[str | os.PathLike[str]] = ()) -> list[dict[str, Any]]:
    """Vendor, model, serial number, ids and access status of every camera the producers see."""
    harvester = _HARVESTERS.acquire(find_producers(cti))
    try:
        return [_device_info(d) for d in harvester.device_info_list]
    finally:
        _HARVESTERS.release(harvester)


def _device_info(info: Any) -> dict[str, Any]:
    props = dict(info.property_dict)
    props.pop("parent", None)
    props.pop("thisown", None)
    return props
