"""The simulated optical table: what the simulated devices share.

One `SimWorld` per bench holds the geometry, the hidden truth, the fault plan,
what each modulator shows, the laser and shutter state and a simulated clock.
Frames come from `labrig.optics.Twin` with the truth as its imperfections, so
with the truth off the simulated camera reads exactly what the twin predicts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np
import torch

from drivers.config import Section
from drivers.errors import DeviceDisconnected, DeviceError, DeviceTimeout, FrameDropped, WriteFailed
from labrig.geometry import geometry_from_profile
from labrig.optics.specs import BenchGeometry
from labrig.optics.system import PixelRect, Twin
from sim_backend.truth import FaultPlan, Truth, read_faults, read_truth
from sim_backend.unmodelled import Unmodelled, unmodelled_from_profile

#: the key under which the devices of one bench share their world
SHARED_KEY = "sim.world"
#: frames rendered per chunk on the batched path (bounds memory)
BATCH_CHUNK = 64
#: prepared masks kept for recently shown filter patterns (a 256^2 complex64 mask is 0.5 MiB)
MASK_CACHE = 8


class SimWorld:
    """State and physics of one simulated bench."""

    def __init__(self, geometry: BenchGeometry, truth: Truth, faults: FaultPlan,
                 unmodelled: Unmodelled | None = None) -> None:
        self.geometry = geometry
        self.truth = truth
        self.unmodelled = unmodelled or Unmodelled.off()  # what the twin lacks (sim_backend/unmodelled.py)
        self.faults = faults
        self.twin = Twin(geometry, truth.imperfections, dtype=torch.float32)
        self._camera_shift0 = truth.imperfections.camera_shift_px.detach().clone()
        self.noise_generator = torch.Generator().manual_seed(truth.seed)
        self.fault_rng = np.random.default_rng(faults.seed)
        self.input_gray = torch.zeros(geometry.input.resolution, dtype=torch.long)
        self.filter_gray = torch.zeros(geometry.filter.resolution, dtype=torch.long)
        self._prepared: torch.Tensor | None = None
        self._masks: dict[bytes, torch.Tensor] = {}  # recent filter patterns' masks (`prepared_mask`)
        self.laser_enabled = False
        self.laser_power_w = 0.0
        self.shutter_open = False
        self.time_s = 0.0
        self.frames = 0
        self.connected = True
        self.disconnect_fired = False

    @classmethod
    def from_profile(cls, root: Section) -> SimWorld:
        geometry = geometry_from_profile(root)
        truth = read_truth(root, geometry)
        return cls(geometry, truth, read_faults(root), unmodelled_from_profile(root, truth.enabled, truth.seed))

    # -- what the devices do ----------------------------------------------------------
    def show_input(self, pattern: np.ndarray) -> None:
        self.input_gray = torch.from_numpy(pattern.astype(np.int64))

    def show_filter(self, pattern: np.ndarray) -> None:
        self.filter_gray = torch.from_numpy(pattern.astype(np.int64))
        self._prepared = None

    def slm_write_fails(self) -> bool:
        p = self.faults.slm_write_error_prob
        return p > 0 and self.fault_rng.random() < p

    @property
    def beam_power_w(self) -> float:
        """Laser power reaching the optics: zero unless emitting and the shutter is open."""
        return self.laser_power_w if (self.laser_enabled and self.shutter_open) else 0.0

    def prepared_mask(self) -> torch.Tensor:
        """The filter's effective mask, recomputed only for a pattern not shown lately: a
        time-multiplexed program switches between a few patterns every chunk, and the
        mask depends only on the pattern and the (fixed) truth."""
        if self._prepared is None:
            key = hashlib.sha1(self.filter_gray.numpy().tobytes()).digest()
            cached = self._masks.pop(key, None)
            if cached is None:
                with torch.no_grad():
                    t = self.twin.filter_transmission(self.filter_gray)
                    extra = self.unmodelled.filter_factor(self.geometry, t.dtype)  # unmodelled: Fourier plane
                    cached = self.twin.prepare_mask(t if extra is None else t * extra)
            self._masks[key] = cached  # most recent last
            while len(self._masks) > MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
            self._prepared = cached
        return self._prepared

    # -- frames ---------------------------------------------------------------------
    def _advance(self, frames: int, exposure_s: float) -> None:
        self.time_s += frames * (exposure_s + self.truth.latency_s)
        self.frames += frames
        drift = torch.tensor(self.truth.drift_px_per_s, dtype=self._camera_shift0.dtype)
        if bool(torch.any(drift != 0)):
            self.twin.imperfections.camera_shift_px.data = self._camera_shift0 + drift * self.time_s

    def _check_faults(self, timeout_s: float, pending: int = 0) -> None:
        """Raise the fault planned for the next frame, if any. `pending` frames are already
        rendered in this batch but not yet counted (the batched path counts them at the end)."""
        plan = self.faults
        limit = plan.disconnect_after_frames
        if limit and not self.disconnect_fired and self.frames + pending >= limit:
            self.disconnect_fired = True  # one disconnect; the camera reconnects unless it is permanent
            self.connected = False
        if not self.connected:
            raise DeviceDisconnected("sim camera: device disconnected (fault injection)")
        if plan.frame_timeout_prob and self.fault_rng.random() < plan.frame_timeout_prob:
            time.sleep(min(timeout_s, 0.05))
            raise DeviceTimeout(f"sim camera: no frame within {timeout_s:g} s (fault injection)")
        if plan.dropped_frame_prob and self.fault_rng.random() < plan.dropped_frame_prob:
            self.frames += 1
            raise FrameDropped("sim camera: frame dropped (fault injection)")

    def reconnect(self) -> None:
        """The camera is opened again: it comes back unless the plan says the disconnect is permanent."""
        if self.disconnect_fired and self.faults.disconnect_permanent:
            raise DeviceDisconnected("sim camera: the device did not come back (permanent disconnect, fault injection)")
        self.connected = True

    def _render(
        self, input_gray: torch.Tensor, exposure_s: float, gain: float, out: np.ndarray,
        rois: Sequence[PixelRect] | None = None,
    ) -> None:
        """Frames for input gray levels into `out` (uint16): input amplitude -> input
        field (its lit window) -> filter (the prepared mask) -> output power -> camera
        power -> electrons -> DN, noise only inside `rois` when given. With the truth
        off this is `Twin.frame_prepared` exactly."""
        with torch.no_grad():
            # the twin's own stages (`Twin.frame_prepared`), or them plus what the twin lacks
            # (`Unmodelled.frame`) when the unmodelled truth is on
            render = self.unmodelled.renderer(self.twin)
            dn = render(
                input_gray, self.prepared_mask(), laser_power_w=self.beam_power_w, exposure_s=exposure_s,
                gain=gain, noise=self.truth.noise, generator=self.noise_generator, region=rois,
            )
        np.copyto(out, dn.numpy(), casting="unsafe")  # integers in [0, max_dn]: exact

    def grab(self, exposure_s: float, gain: float, timeout_s: float) -> np.ndarray:
        """One frame of what the modulators show now."""
        self._check_faults(timeout_s)
        if self.truth.latency_s:
            time.sleep(self.truth.latency_s)
        self._advance(1, exposure_s)
        out = np.empty(self.geometry.camera.resolution, dtype=np.uint16)
        self._render(self.input_gray, exposure_s, gain, out)
        return out

    def render_batch(
        self, input_grays: np.ndarray, exposure_s: float, gain: float,
        rois: Sequence[PixelRect] | None = None, timeout_s: float = 1.0,
    ) -> np.ndarray:
        """Frames for many input patterns at once (the fast path): as if each were
        shown on the input modulator and grabbed in turn, with every fault of that path
        injected frame by frame (input SLM write errors, timeouts, dropped frames, the
        disconnect). A fault raises after the frames before it are rendered; they ride on
        the exception as ``exc.completed`` so the caller keeps them and goes on from there.

        `rois`: the camera rectangles (top, left, bottom, right) the caller reads:
        noise is drawn there only, the rest of each frame is the noise-free reading.
        Work and memory are bounded by `BATCH_CHUNK` frames at a time."""
        inputs = torch.from_numpy(np.ascontiguousarray(input_grays).astype(np.int64))
        out = np.empty((inputs.shape[0], *self.geometry.camera.resolution), dtype=np.uint16)
        done = 0
        try:
            while done < inputs.shape[0]:
                ready, fault = 0, None
                for _ in range(min(BATCH_CHUNK, inputs.shape[0] - done)):
                    try:
                        if self.slm_write_fails():
                            raise WriteFailed("sim input SLM: write to the SLM failed (fault injection)")
                        self._check_faults(timeout_s, pending=ready)
                    except DeviceError as exc:
                        fault = exc
                        break
                    ready += 1
                if ready:
                    self._advance(ready, exposure_s)
                    self._render(inputs[done : done + ready], exposure_s, gain, out[done : done + ready], rois)
                    self.input_gray = inputs[done + ready - 1]
                    done += ready
                if fault is not None:
                    raise fault
        except DeviceError as exc:
            exc.completed = out[:done]  # type: ignore[attr-defined]  # see drivers.errors.completed_frames
            raise
        return out


def world_for(context_shared: dict, root: Section) -> SimWorld:
    """The world of this bench, created by the first simulated device that asks."""
    world = context_shared.get(SHARED_KEY)
    if world is None:
        world = SimWorld.from_profile(root)
        context_shared[SHARED_KEY] = world
    return world
