"""GenICam cameras through harvesters: any GenTL producer (.cti) as a labrig `Camera`.

A bench profile names the producers (``cti = [...]``, else every ``*.cti`` in the
directories of ``GENICAM_GENTL64_PATH``) and the camera (serial number, model,
user id, device id, vendor, or an index into what matches). Features are set by
their SFNC node names; a feature the camera lacks is a `DeviceError` naming the
node, never a silent no-op, because a bench that ignored an exposure setting
produces wrong data without a sign.

On-camera binning (`GenICamCamera.set_binning`, profile key ``binning``) uses the
SFNC ``BinningHorizontal``/``BinningVertical`` nodes (and their ``...Mode``); a
camera without them raises `drivers.errors.Unsupported` naming the nodes, and
`binning_support()` says what a camera offers before anyone asks.

Frames are Mono8/10/12/14/16 (packed variants too, unpacked by harvesters);
anything else (RGB, Bayer, 3-D) is refused with the formats the camera offers
that would work. Every buffer is handed back to the producer (`with buffer:`),
stale frames queued before a grab are dropped (so a frame follows the SLM pattern
shown before it), and a lost device is reported as `DeviceDisconnected` and can
be reopened with `reconnect()` (or automatically, ``reconnect_attempts``).

A GenTL producer library can be loaded once per process, so cameras that use
the same producers share one harvester; it is reset when its last camera closes.
harvesters replaces the process's SIGINT handler whenever it opens a camera (its
handler swallows Ctrl-C); the driver puts the previous one back, so the bench's
safety handler stays in charge.

The package: `producers` (GenTL producer files, device discovery, the shared
harvesters), `nodes` (feature access by node name), `frames` (pixel formats,
image component to array) and `camera` (`GenICamCamera`, its settings and profile).
"""

from drivers.vendors.genicam.camera import (
    BINNING_NODES,
    Binning,
    GenICamCamera,
    GenICamSettings,
    Roi,
)
from drivers.vendors.genicam.frames import PIXEL_FORMATS, frame_from_component
from drivers.vendors.genicam.nodes import Feature, NodeAccess, list_features
from drivers.vendors.genicam.producers import (
    GENTL_PATH_VAR,
    SELECTOR_KEYS,
    DeviceSelector,
    enumerate_devices,
    find_producers,
    live_acquirers,
)

__all__ = [
    "BINNING_NODES",
    "GENTL_PATH_VAR",
    "PIXEL_FORMATS",
    "SELECTOR_KEYS",
    "Binning",
    "DeviceSelector",
    "Feature",
    "GenICamCamera",
    "GenICamSettings",
    "NodeAccess",
    "Roi",
    "enumerate_devices",
    "find_producers",
    "frame_from_component",
    "list_features",
    "live_acquirers",
]
