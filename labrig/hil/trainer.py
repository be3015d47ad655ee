"""In-situ fine-tuning of a bench program: the loop, its guards and its checkpoint.

Three modes:

- ``backend``: the masks stay as compiled; the back end trains on tiles measured
  on the bench (the cheapest correction: it learns the bench as it is).
- ``pat``: physics-aware training of masks and back end: the forward pass is
  the bench (`BenchTiles`), the masks' gradient the calibrated twin's VJP.
- ``twin``: the control arm: masks and back end retrained through the
  calibrated twin only (with its noise model); no bench frame is used.

Every step draws a batch of training images (seeded order), measures one frame
per image and frame group (or asks the twin), and takes one Adam step. Guards:
before training, saturated tiles lower the exposure (readout rescaled); during
training, a step whose loss or gradient is not finite, or whose frames come
back saturated, is rolled back to the state before the last update and the
mask learning rate halved, and reported; a batch taken in the dark stops the
run (never data). Drift: the measured-vs-twin tile residual is watched, and a
re-registration runs every `reregister_every` steps and whenever the residual
grows beyond `residual_growth` times its slow running mean: the last batch's
frames are registered against the twin's (`labrig.deploy.track`, the same
tracker `labrig run` uses) and every later frame is moved back by the
displacement before its tiles are cut, so the tiles stay where the calibrated
twin and the back end expect them (a `reregister` hook may move the twin
instead). A frame budget caps the bench
frames used for training; evaluation frames are counted apart. The state is
checkpointed atomically every `checkpoint_every` steps, so a fault or a
cancel resumes bit-identically where it stopped; the bench is made safe on
every exit.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from drivers.errors import LabrigError
from labrig.deploy.backend import backend_program, build_backend
from labrig.deploy.compiler import with_reference
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.deploy.program import FilterPatterns, Program
from labrig.hil.errors import FineTuneError, LightLost, SaturatedFrames
from labrig.hil.function import BenchTiles, Residuals, filter_gray
from labrig.hil.measure import BenchMeter, rescale_exposure
from labrig.hil.refit import REFIT_PARAMS, TwinRefit
from labrig.hil.twin_tiles import TwinTiles
from labrig.optics.imperfections import NAMES
from labrig.optics.residual import TwinResidual
from labrig.optics.system import Twin

__all__ = ["MODES", "FineTuneConfig", "FineTuneResult", "FineTuner"]

log = logging.getLogger(__name__)

MODES = ("backend", "pat", "twin")
LR_SCHEDULES = ("constant", "cosine")
CHECKPOINT = "checkpoint.pt"
Cancel = Callable[[], bool] | threading.Event
Progress = Callable[[int, int, dict[str, Any]], None]
Reregister = Callable[[Twin, np.ndarray, np.ndarray], dict[str, Any]]
"""An alternative re-registration: (twin, measured frames, the twin's expected frames for the
same inputs and masks; both (n, H, W) with their dark level removed) -> what changed; moves
the twin (e.g. its camera shift) to follow the bench. No extra frames: it reuses the last
batch's. Without one the frames are registered to the twin (`labrig.deploy.track`)."""

#: how fast the residual's reference level follows new values (per check)
RESIDUAL_FOLLOW = 0.1
#: exposure guard: factor per try and tries before giving up
EXPOSURE_STEP, EXPOSURE_TRIES = 0.7, 6


@dataclass(frozen=True)
class FineTuneConfig:
    """How to fine-tune; `steps` and `frames` may grow on resume, nothing else may change."""

    mode: str = "pat"
    steps: int = 200
    batch: int = 32
    frames: int | None = 30_000
    """Budget of bench frames for training (None: no budget); evaluation frames are apart."""
    lr_mask: float = 0.005
    """Adam on the filter phase (rad per step, about: Adam moves every pixel by ~lr)."""
    lr_backend: float = 1e-3
    lr_schedule: str = "constant"
    """``constant``, or ``cosine``: both learning rates decay along half a cosine to
    `lr_final` of their start over the run (the larger of the fractions of `steps` and of
    the frame budget used), so late steps refine instead of wandering on noisy gradients."""
    lr_final: float = 0.05
    """``cosine``: the learning rates' last value as a fraction of their first."""
    seed: int = 0
    eval_every: int = 50
    checkpoint_every: int = 10
    reregister_every: int = 0
    """Steps between re-registrations (0: only when the residual grows)."""
    residual_every: int = 10
    """Steps between residual checks in ``backend`` mode (``pat`` gets it from every backward)."""
    residual_growth: float = 2.0
    """Re-register when the residual exceeds this times its slow running mean (masks that
    move change the residual slowly; a bench that drifts or jumps changes it faster)."""
    residual_floor: float = 0.01
    """...and exceeds this (relative tile residual): a bench its twin matches to within
    noise (a residual near 0) has no drift to find, whatever the ratio of two tiny numbers."""
    refit_every: int = 0
    """Steps between refits of a few twin parameters on the last batches' frames (0: never;
    `labrig.hil.refit`); bench modes only."""
    refit_params: tuple[str, ...] = REFIT_PARAMS
    max_rollbacks: int = 5
    """Consecutive rolled-back steps after which the fine-tune stops as diverged."""
    twin_noise: bool = True
    """``twin`` mode (and pre-training): shot and read noise on the twin's tiles (as optics-aware training)."""
    residual_images: int = 0
    """Bench modes: before training, measure this many training images through the compiled
    masks and fit the twin's learned residual to them (`labrig.hil.residual_fit`; 0: never).
    Its frames count against the budget; ~128 images suffice."""
    residual_iterations: int = 150
    residual_refit_every: int = 0
    """Steps between refits of the residual (0: once, before training), so that it follows the
    masks as they move: while pre-training each refit measures `residual_images` more images
    through the current masks (budgeted); on the bench it reuses the frames the steps took."""
    residual_keep: int = 32
    """Measured batches kept for the residual's fits (the newest; each with the masks it saw)."""
    pretrain_steps: int = 0
    """Steps through the (residual-corrected) twin before the `steps` on the bench: masks and back
    end learn what the calibrated twin can show for the price of host time, not bench frames;
    the bench steps then correct what the twin still gets wrong."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FineTuneError(f"fine-tune mode must be one of {MODES}, got {self.mode!r}")
        if self.steps < 0 or self.batch < 1 or (self.frames is not None and self.frames < 0):
            raise FineTuneError("fine-tune steps must be >= 0, batch >= 1, frames >= 0")
        if self.lr_mask < 0 or self.lr_backend < 0:
            raise FineTuneError("fine-tune learning rates must be >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise FineTuneError(f"fine-tune lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 <= self.lr_final <= 1:
            raise FineTuneError(f"fine-tune lr_final must be in [0, 1] (a fraction of the first rate), "
                                f"got {self.lr_final}")
        if (self.residual_images < 0 or self.residual_iterations < 1 or self.pretrain_steps < 0
                or self.residual_refit_every < 0 or self.residual_keep < 2):
            raise FineTuneError("fine-tune residual_images, residual_refit_every and pretrain_steps must be >= 0, "
                                "residual_iterations >= 1, residual_keep >= 2")
        if self.mode == "twin" and self.residual_images:
            raise FineTuneError("mode 'twin' uses no bench frames: a residual fit (residual_images) needs the bench")
        if self.refit_every < 0 or self.reregister_every < 0:
            raise FineTuneError("fine-tune refit_every and reregister_every must be >= 0 (steps)")
        unknown = sorted(set(self.refit_params) - set(NAMES) - {"slm_lut"})
        if unknown or "camera_shift_px" in self.refit_params:
            raise FineTuneError(f"fine-tune refit_params: {unknown or ['camera_shift_px']} cannot be refitted "
                                "(unknown twin parameters, or the camera shift, which re-registration follows)")

    @property
    def total_steps(self) -> int:
        """Pre-training steps and bench (or twin) steps together: where the loop ends."""
        return self.pretrain_steps + self.steps

    def resumable_from(self, other: FineTuneConfig) -> list[str]:
        """What differs from a checkpoint's config, other than steps and frame budget."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [k for k in mine if k not in ("steps", "frames") and mine[k] != theirs[k]]


@dataclass
class FineTuneResult:
    status: str
    """``complete``, ``budget`` (frame budget spent), ``cancelled``, ``diverged`` or ``fault``."""
    program: Program
    steps: int
    frames: int
    eval_frames: int
    history: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    events: list[dict[str, Any]]
    error: str | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def bench_accuracy(self) -> float | None:
        return self.evals[-1].get("bench_accuracy") if self.evals else None


def _cancelled(cancel: Cancel | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


def _images(data: Any, shape: tuple[int, int], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    source = ImageSource(data, shape, limit=limit)
    if source.labels is None:
        raise FineTuneError("fine-tuning needs labelled images (a dataset or an (images, labels) pair)")
    return source.batch(0, len(source)), source.labels


class FineTuner:
    """One fine-tune of `program` against `bench` (None in ``twin`` mode) with the calibrated `twin`."""

    def __init__(
        self,
        program: Program,
        twin: Twin,
        train: Any,
        *,
        bench: Any = None,
        eval_data: Any = None,
        config: FineTuneConfig | None = None,
        out_dir: str | Path | None = None,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        calibration: dict[str, Any] | None = None,
        parent_path: str | None = None,
        reregister: Reregister | None = None,
        resume: bool = True,
    ) -> None:
        self.config = cfg = config or FineTuneConfig()
        if cfg.mode != "twin" and bench is None:
            raise FineTuneError(f"mode {cfg.mode!r} measures on a bench: open one (or use mode 'twin')")
        self.parent, self.bench, self.twin = program, bench, twin
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.calibration = calibration or {"hash": None, "path": None}
        self.parent_path = parent_path
        self.reregister = reregister
        shape = program.input.image_shape
        self.train_x, self.train_y = _images(train, shape, train_limit)
        self.eval_x, self.eval_y = (None, None) if eval_data is None else _images(eval_data, shape, eval_limit)
        self.twin_tiles = TwinTiles(program, twin)
        self.lut = twin.imperfections.slm_lut.detach()
        self.meter = None if bench is None else BenchMeter(bench, program)
        gray = torch.as_tensor(program.filter.gray.astype(np.int64))
        self.phase = torch.nn.Parameter(self.lut[gray].to(twin.dtype).clone(), requires_grad=cfg.mode != "backend")
        self.backend = build_backend(program.backend)  # eval mode: BatchNorm on its running statistics
        self.opt_backend = torch.optim.Adam(self.backend.parameters(), lr=cfg.lr_backend)
        self.opt_mask = torch.optim.Adam([self.phase], lr=cfg.lr_mask) if cfg.mode != "backend" else None
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.order = torch.randperm(len(self.train_x), generator=self.batch_gen)
        self.pos = 0
        self.step = 0
        self.frames = 0
        self.eval_frames = 0
        self.readout = program.readout
        self.mask_lr_scale = 1.0
        self.rollbacks = 0
        self.residual_base: float | None = None
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._previous: dict[str, Any] | None = None
        self.residuals = Residuals()
        self._residual_seen = 0
        self.exposure_checked = False
        self.residual_fit: dict[str, Any] | None = None
        self.residual_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.frames_before_bench = 0
        self.refitter = None
        if cfg.refit_every and self.meter is not None:
            self.refitter = TwinRefit(program.readout.rois, tuple(bench.camera.resolution), tuple(cfg.refit_params))
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._load(self.checkpoint_path)

    # -- state ----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT

    def _state(self) -> dict[str, Any]:
        return {
            "phase": self.phase.detach().clone(),
            "backend": copy.deepcopy(self.backend.state_dict()),
            "opt_backend": copy.deepcopy(self.opt_backend.state_dict()),
            "opt_mask": None if self.opt_mask is None else copy.deepcopy(self.opt_mask.state_dict()),
            "mask_lr_scale": self.mask_lr_scale,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.phase.copy_(state["phase"])
        self.backend.load_state_dict(state["backend"])
        self.opt_backend.load_state_dict(state["opt_backend"])
        if self.opt_mask is not None and state["opt_mask"] is not None:
            self.opt_mask.load_state_dict(state["opt_mask"])
        self.mask_lr_scale = state["mask_lr_scale"]

    def save_checkpoint(self) -> Path | None:
        """Everything needed to go on bit-identically, written atomically."""
        path = self.checkpoint_path
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {
            "format": "labrig-finetune-checkpoint", "version": 1,
            "config": dataclasses.asdict(self.config), "parent_digest": self.parent.digest(),
            "calibration_hash": self.calibration.get("hash"), **self._state(),
            "previous": self._previous, "batch_gen": self.batch_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(), "order": self.order, "pos": self.pos, "step": self.step,
            "frames": self.frames, "eval_frames": self.eval_frames,
            "readout": dataclasses.asdict(self.readout), "rollbacks": self.rollbacks,
            "residual_base": self.residual_base, "residuals": list(self.residuals.values),
            "history": self.history, "evals": self.evals, "events": self.events,
            "exposure_checked": self.exposure_checked, "residual_fit": self.residual_fit,
            "residual_batches": self.residual_batches, "frames_before_bench": self.frames_before_bench,
            "twin_residual": None if self.twin.residual is None else self.twin.residual.state(),
            "displacement": None if self.meter is None else self.meter.tracker.displacement.tolist(),
            "twin_refit": None if self.refitter is None else {
                n: getattr(self.twin.imperfections, n).detach().clone() for n in self.refitter.names},
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return path

    def _load(self, path: Path) -> None:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise FineTuneError(f"{path}: not a readable fine-tune checkpoint ({exc})") from exc
        if blob.get("format") != "labrig-finetune-checkpoint":
            raise FineTuneError(f"{path}: not a fine-tune checkpoint")
        if blob["parent_digest"] != self.parent.digest():
            raise FineTuneError(f"{path}: the checkpoint is of another program; use another --out or start afresh")
        if blob["calibration_hash"] != self.calibration.get("hash"):
            raise FineTuneError(f"{path}: the checkpoint was made with another calibration")
        changed = self.config.resumable_from(FineTuneConfig(**blob["config"]))
        if changed:
            raise FineTuneError(f"{path}: cannot resume with changed settings {changed}; start afresh")
        self._restore(blob)
        self._previous = blob["previous"]
        self.batch_gen.set_state(blob["batch_gen"])
        self.noise_gen.set_state(blob["noise_gen"])
        self.order, self.pos, self.step = blob["order"], blob["pos"], blob["step"]
        self.frames, self.eval_frames = blob["frames"], blob["eval_frames"]
        self._set_readout(dataclasses.replace(self.readout, **{k: tuple(v) if isinstance(v, list) else v
                                                               for k, v in blob["readout"].items()}))
        self.rollbacks, self.residual_base = blob["rollbacks"], blob["residual_base"]
        self.residuals.values = list(blob["residuals"])
        self._residual_seen = len(self.residuals.values)
        self.history, self.evals, self.events = blob["history"], blob["evals"], blob["events"]
        self.exposure_checked = blob["exposure_checked"]
        self.residual_fit = blob.get("residual_fit")
        self.residual_batches = list(blob.get("residual_batches") or [])
        self.frames_before_bench = blob.get("frames_before_bench", 0)
        if blob.get("twin_residual") is not None:
            self.twin.residual = TwinResidual.from_state(blob["twin_residual"], self.twin.dtype).requires_grad_(False)
        if self.refitter is not None and blob.get("twin_refit"):
            with torch.no_grad():
                for name, value in blob["twin_refit"].items():
                    getattr(self.twin.imperfections, name).copy_(value)
        if self.meter is not None and blob.get("displacement") is not None:
            self.meter.tracker.displacement = np.asarray(blob["displacement"], dtype=np.float64)
        self._event("resumed", f"from step {self.step} ({self.frames} bench frames used)")

    def _set_readout(self, readout: Any) -> None:
        self.readout = readout
        self.twin_tiles.set_readout(readout)
        if self.meter is not None:
            self.meter.set_readout(readout)

    def _event(self, kind: str, message: str) -> None:
        self.events.append({"step": self.step, "kind": kind, "message": message})
        log.info("fine-tune step %d: %s: %s", self.step, kind, message)

    # -- one step -------------------------------------------------------------------------------
    def _next_batch(self) -> tuple[np.ndarray, torch.Tensor]:
        n, b = len(self.train_x), min(self.config.batch, len(self.train_x))
        if self.pos + b > n:
            self.order = torch.randperm(n, generator=self.batch_gen)
            self.pos = 0
        idx = self.order[self.pos : self.pos + b].numpy()
        self.pos += b
        return self.train_x[idx], torch.as_tensor(self.train_y[idx])

    def _shown_phase(self, gray: np.ndarray) -> torch.Tensor:
        """The phase the filter SLM shows for gray levels (through the calibrated LUT)."""
        return self.lut[torch.as_tensor(gray.astype(np.int64))].to(self.twin.dtype)

    def _gray(self) -> np.ndarray:
        return filter_gray(self.phase, self.lut, self.parent.filter.gray.dtype)

    @property
    def pretraining(self) -> bool:
        """True while the steps go through the twin before the bench steps (`pretrain_steps`)."""
        return self.step < self.config.pretrain_steps

    def _tiles(self, input_gray: torch.Tensor) -> torch.Tensor:
        mode = self.config.mode
        if mode == "twin" or self.pretraining:
            return self.twin_tiles(self.phase, input_gray, self.noise_gen if self.config.twin_noise else None)
        assert self.meter is not None
        if mode == "pat":
            return BenchTiles.apply(self.phase, input_gray, self.meter, self.twin_tiles, self.lut, self.residuals)
        raw = torch.from_numpy(self.meter.measure(self._gray(), input_gray.numpy()))
        tiles = self.twin_tiles.signal(raw.to(self.twin.dtype))
        if self.step % self.config.residual_every == 0:
            with torch.no_grad():
                self.residuals.add(tiles, self.twin_tiles(self.phase, input_gray))
        return tiles

    def _train_step(self) -> dict[str, Any]:
        drawn = (self.order, self.pos, self.batch_gen.get_state())
        x, y = self._next_batch()
        try:
            return self._update(x, y)
        except LabrigError:  # a device fault: the batch was not used, the resumed run draws it again
            self.order, self.pos = drawn[:2]
            self.batch_gen.set_state(drawn[2])
            raise

    def _update(self, x: np.ndarray, y: torch.Tensor) -> dict[str, Any]:
        input_gray = torch.from_numpy(encode_images(self.parent.input, x).astype(np.int64))
        frames0 = self.meter.frames if self.meter is not None else 0
        try:
            tiles = self._tiles(input_gray)
        finally:
            if self.meter is not None:
                self.frames += self.meter.frames - frames0
        measured = self.meter is not None and self.meter.last is not None and frames0 != self.meter.frames
        if measured and self.refitter is not None:
            self.refitter.remember(*self.meter.last)
        if measured and self.config.residual_refit_every and self.config.residual_images:
            gray = self.meter.last[0]
            self._keep_residual_batch(self._shown_phase(gray),
                                      input_gray, torch.from_numpy(self.meter.last_raw))
        logits = self.backend(tiles.to(torch.float32))
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise _Diverged(f"the loss is {loss.item()}")
        self.opt_backend.zero_grad(set_to_none=True)
        if self.opt_mask is not None:
            self.opt_mask.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in (self.phase, *self.backend.parameters()) if p.grad is not None]
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            raise _Diverged("a gradient is not finite")
        self._previous = self._state()
        decay = self._lr_decay()
        for group in self.opt_backend.param_groups:
            group["lr"] = self.config.lr_backend * decay
        self.opt_backend.step()
        if self.opt_mask is not None:
            for group in self.opt_mask.param_groups:
                group["lr"] = self.config.lr_mask * self.mask_lr_scale * decay
            self.opt_mask.step()
        return {"loss": loss.item(), "batch_accuracy": float((logits.argmax(1) == y).float().mean())}

    def _lr_decay(self) -> float:
        """The schedule's factor on both learning rates at this step (1 when constant); the
        pre-training steps and the bench steps each have their own cosine."""
        cfg = self.config
        if cfg.lr_schedule == "constant":
            return 1.0
        if self.pretraining:
            done = self.step / cfg.pretrain_steps
        else:
            done = (self.step - cfg.pretrain_steps) / cfg.steps if cfg.steps else 1.0
            if cfg.mode != "twin" and cfg.frames:
                spent = self.frames - self.frames_before_bench
                done = max(done, spent / max(cfg.frames - self.frames_before_bench, 1))
        done = min(max(done, 0.0), 1.0)
        return cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * done))

    def _rollback(self, reason: str) -> None:
        self.rollbacks += 1
        if self._previous is None:
            raise FineTuneError(f"step {self.step}: {reason} before any update: nothing to roll back to "
                                "(the program itself is the problem)")
        self._restore(self._previous)  # kept: a second rollback in a row goes back to the same state
        self.mask_lr_scale *= 0.5
        self._event("rollback", f"{reason}: last update undone, mask learning rate now x{self.mask_lr_scale:g}")

    # -- guards ---------------------------------------------------------------------------------
    def _check_exposure(self) -> None:
        """Before training: lower the exposure until the compiled masks' tiles do not saturate."""
        if self.meter is None or self.exposure_checked:
            return
        x, _ = self._next_batch()
        self.pos -= len(x)  # the probe batch is not a training batch
        gray_in = encode_images(self.parent.input, x)
        for _ in range(EXPOSURE_TRIES):
            before = self.meter.frames
            try:
                self.meter.measure(self._gray(), gray_in)
                self.exposure_checked = True
                return
            except SaturatedFrames as exc:
                self._set_readout(rescale_exposure(self.parent, self.readout, EXPOSURE_STEP))
                self._event("exposure", f"{exc}; exposure x{EXPOSURE_STEP:g} -> "
                                        f"{', '.join(f'{e:.3g} s' for e in self.readout.exposure_s)}")
            finally:  # guard frames are training frames, except in twin mode (no bench training)
                used = self.meter.frames - before
                if self.config.mode == "twin":
                    self.eval_frames += used
                else:
                    self.frames += used
        raise FineTuneError(f"the tiles still saturate after lowering the exposure {EXPOSURE_TRIES} times")

    def _watch_drift(self) -> None:
        values = self.residuals.values
        cfg, due = self.config, False
        fresh = values[-1] if values and len(values) > self._residual_seen else None
        self._residual_seen = len(values)
        if cfg.reregister_every and self.step % cfg.reregister_every == 0:
            due = True
        elif (fresh is not None and self.residual_base is not None
              and fresh > max(cfg.residual_growth * self.residual_base, cfg.residual_floor)):
            self._event("drift", f"tile residual {fresh:.3f} > {cfg.residual_growth:g} x {self.residual_base:.3f}")
            due = True
        if fresh is not None and not due:  # a slow running mean: follows the masks, not a jump
            base = self.residual_base
            self.residual_base = fresh if base is None else base + RESIDUAL_FOLLOW * (fresh - base)
        if not due or self.meter is None or self.meter.last is None:
            return
        if self.reregister is None:  # register the frames to the twin's ROIs (labrig.deploy.track)
            found = self._register_frames()
            if found is None:
                return
        else:
            measured, expected = self._last_frames()
            try:
                found = self.reregister(self.twin, measured, expected)
            except ValueError as exc:  # moved too far to be drift: say so, keep training on the calibration
                self._event("reregister", f"refused: {exc}")
                return
        self.residuals.values.clear()
        self._residual_seen = 0
        self.residual_base = None
        self._event("reregister", ", ".join(f"{k}={v}" for k, v in (found or {}).items()) or "done")

    def _refit(self) -> None:
        """A few twin parameters refitted on the last batches' frames (kept only when held-back
        frames agree better); the twin's VJP follows from the next step on."""
        assert self.refitter is not None and self.meter is not None
        try:
            found = self.refitter.refit(self.twin, self.meter.tracker.correct)
        except Exception as exc:  # a refit is an improvement, never a reason to stop: report it
            self._event("refit", f"failed: {type(exc).__name__}: {exc}")
            return
        if found is not None:
            self._event("refit", ", ".join(f"{k}={v}" for k, v in found.items()))

    def _register_frames(self) -> dict[str, Any] | None:
        """The tracker's displacement updated from the last batch's frames (as taken) against
        the twin's for the same inputs and masks; None (and an event) when refused."""
        assert self.meter is not None and self.meter.last is not None
        gray, inputs, frames = self.meter.last
        with torch.no_grad():
            phase = self._shown_phase(gray)
            expected = self.twin_tiles.expected_dn(phase, torch.as_tensor(inputs.astype(np.int64))).numpy()
        try:
            event = self.meter.tracker.update(frames, expected.reshape(frames.shape))
        except ValueError as exc:  # frames with no structure to register against
            self._event("reregister", f"refused: {exc}")
            return None
        if event["kind"] == "refused":
            self._event("reregister", f"refused: {event['message']}")
            return None
        return {"displacement_px": event["displacement_px"], "step_px": event["step_px"],
                "residual": event["residual_after"]}

    def _last_frames(self) -> tuple[np.ndarray, np.ndarray]:
        """The last batch's frames and the twin's for the same inputs and shown masks, (n, H, W)
        each, every frame less its median (the dark level: most of a frame is dark)."""
        assert self.meter is not None and self.meter.last is not None
        gray, inputs, frames = self.meter.last
        with torch.no_grad():
            phase = self._shown_phase(gray)
            expected = self.twin_tiles.expected_dn(phase, torch.as_tensor(inputs.astype(np.int64))).numpy()
        measured = frames.astype(np.float64).reshape(-1, *frames.shape[-2:])
        expected = expected.astype(np.float64).reshape(measured.shape)
        return (measured - np.median(measured, axis=(1, 2), keepdims=True),
                expected - np.median(expected, axis=(1, 2), keepdims=True))

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, chunk: int = 64) -> dict[str, Any]:
        """Bench (when there is one) and twin accuracy on the evaluation images."""
        if self.eval_x is None:
            return {}
        bench_ok = twin_ok = 0
        frames0 = self.meter.frames if self.meter is not None else 0
        gray = self._gray()
        for s in range(0, len(self.eval_x), chunk):
            x, y = self.eval_x[s : s + chunk], torch.as_tensor(self.eval_y[s : s + chunk])
            gin = torch.from_numpy(encode_images(self.parent.input, x).astype(np.int64))
            twin_tiles = self.twin_tiles(self.phase, gin)
            twin_ok += int((self.backend(twin_tiles.float()).argmax(1) == y).sum())
            if self.meter is not None:
                raw = torch.from_numpy(self.meter.measure(gray, gin.numpy()))
                tiles = self.twin_tiles.signal(raw.to(self.twin.dtype))
                bench_ok += int((self.backend(tiles.float()).argmax(1) == y).sum())
        n = len(self.eval_x)
        if self.meter is not None:
            self.eval_frames += self.meter.frames - frames0
        out = {"step": self.step, "frames": self.frames, "twin_accuracy": twin_ok / n}
        if self.meter is not None:
            out["bench_accuracy"] = bench_ok / n
        return out

    # -- the loop -------------------------------------------------------------------------------
    def run(self, *, progress: Progress | None = None, cancel: Cancel | None = None,
            pause: threading.Event | None = None) -> FineTuneResult:
        """Fine-tune until `steps`, the frame budget, a cancel or a fault; checkpointed throughout."""
        cfg = self.config
        status, error = "complete", None
        t0, device_s0 = time.perf_counter(), self.meter.device_s if self.meter else 0.0
        lit = self.bench is not None and (self.bench.laser is not None or self.bench.shutter is not None)
        try:
            if lit:
                self.bench.guard.arm()
            self._check_exposure()
            if self.residual_fit is None:  # once; a resumed run has its fit already
                self._fit_residual()
            if not self.evals:
                self._record_eval()
            while self.step < cfg.total_steps:
                while pause is not None and pause.is_set() and not _cancelled(cancel):
                    time.sleep(0.05)
                if _cancelled(cancel):
                    status = "cancelled"
                    break
                if cfg.mode != "twin" and cfg.frames is not None and self.frames + self._frames_per_step() > cfg.frames:
                    status = "budget"
                    self._event("budget", f"{self.frames} of {cfg.frames} bench frames used")
                    break
                on_bench = not self.pretraining and cfg.mode != "twin"
                try:
                    metrics = self._train_step()
                    self.rollbacks = 0
                except (_Diverged, SaturatedFrames) as exc:
                    self._rollback(str(exc))
                    if self.rollbacks >= cfg.max_rollbacks:
                        status, error = "diverged", f"{cfg.max_rollbacks} steps in a row rolled back ({exc})"
                        break
                    continue
                self.step += 1
                metrics.update(step=self.step, frames=self.frames,
                               residual=self.residuals.values[-1] if self.residuals.values else None)
                self.history.append(metrics)
                if on_bench:  # drift and refits follow bench frames; pre-training takes none
                    self._watch_drift()
                if cfg.residual_refit_every and self.step % cfg.residual_refit_every == 0 and self.step != cfg.total_steps:
                    self._fit_residual()
                if on_bench and self.refitter is not None and self.step % cfg.refit_every == 0:
                    self._refit()
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._record_eval()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if progress is not None:
                    progress(self.step, cfg.total_steps, {**metrics, **(self.evals[-1] if self.evals else {})})
            if status in ("complete", "budget") and (not self.evals or self.evals[-1]["step"] != self.step):
                self._record_eval()
        except LightLost as exc:
            status, error = "fault", str(exc)
        except LabrigError as exc:
            status, error = "fault", f"{type(exc).__name__}: {exc}"
        except KeyboardInterrupt:
            status, error = "cancelled", "interrupted (Ctrl-C)"
        finally:
            if lit:
                self.bench.guard.make_safe()
        self.save_checkpoint()
        if error:
            self._event(status, error)
        timing = {"wall_s": time.perf_counter() - t0,
                  "device_s": (self.meter.device_s if self.meter else 0.0) - device_s0}
        return FineTuneResult(status, self.program(status), self.step, self.frames, self.eval_frames,
                              self.history, self.evals, self.events, error, timing)

    def _frames_per_step(self) -> int:
        if self.pretraining:
            return 0
        return min(self.config.batch, len(self.train_x)) * self.parent.frames

    def _fit_residual(self) -> None:
        """Fit the twin's learned residual: before training on `residual_images` training images
        measured through the compiled masks, then every `residual_refit_every` steps again (while
        pre-training on as many new images through the current masks; on the bench on the
        frames the steps took). Kept only if the newest, held-back batch agrees better."""
        cfg = self.config
        if self.meter is None or not cfg.residual_images:
            return
        from labrig.hil.residual_fit import fit_residual

        first = self.residual_fit is None
        if first or self.pretraining:
            gray = self._gray()
            phase = self._shown_phase(gray)
            before = self.meter.frames
            rng = np.random.default_rng([cfg.seed, 7, self.step])  # its own images: the training order stays
            picks = rng.choice(len(self.train_x), size=min(cfg.residual_images, len(self.train_x)), replace=False)
            chunk = max(1, min(cfg.batch, 16, (cfg.residual_images + 1) // 2))  # two batches at least: one is held back
            try:
                for s in range(0, len(picks), chunk):
                    gin = encode_images(self.parent.input, self.train_x[picks[s : s + chunk]])
                    raw = self.meter.measure(gray, gin)
                    self._keep_residual_batch(phase, torch.from_numpy(gin.astype(np.int64)), torch.from_numpy(raw))
            finally:
                self.frames += self.meter.frames - before
                self.frames_before_bench = self.frames
        if len(self.residual_batches) < 2:
            return
        _, fit = fit_residual(self.twin_tiles, self.residual_batches, residual=self.twin.residual, held=1,
                              iterations=cfg.residual_iterations)
        self.residual_fit = {**fit.as_dict(), "step": self.step, "frames": self.frames,
                             "fits": (self.residual_fit or {}).get("fits", 0) + 1}
        self._event("residual", f"twin residual {'kept' if fit.kept else 'rejected'}: held-back tile error "
                                f"{fit.held_error_before:.3f} -> {fit.held_error_after:.3f} "
                                f"({fit.images} images, {self.frames} bench frames used)")

    def _keep_residual_batch(self, phase: torch.Tensor, input_gray: torch.Tensor, raw: torch.Tensor) -> None:
        self.residual_batches.append((phase.detach().clone(), input_gray, raw))
        del self.residual_batches[: -self.config.residual_keep]

    def _record_eval(self) -> None:
        result = self.evaluate()
        if result:
            self.evals.append(result)

    # -- the new program ------------------------------------------------------------------------
    def program(self, status: str = "complete") -> Program:
        """The fine-tuned program: the masks' gray levels (through the calibrated LUT), the
        readout as guarded, the new back end, and its lineage in `source['finetune']`."""
        parent = self.parent
        lineage = {
            "parent_digest": parent.digest(), "parent_path": self.parent_path,
            "parent_finetune": {k: v for k, v in parent.source.get("finetune", {}).items() if k != "metrics"} or None,
            "calibration_hash": self.calibration.get("hash"), "calibration_path": self.calibration.get("path"),
            "mode": self.config.mode, "status": status, "steps": self.step, "frames": self.frames,
            "eval_frames": self.eval_frames, "bench": None if self.bench is None else self.bench.profile.name,
            "config": dataclasses.asdict(self.config), "metrics": self.history, "evals": self.evals,
            "events": self.events, "residual_fit": self.residual_fit,
            "twin_residual": None if self.twin.residual is None else self.twin.residual.state(),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        filt: FilterPatterns = dataclasses.replace(parent.filter, gray=self._gray(),
                                                   lut=self.lut.to(torch.float64).numpy())
        backend = backend_program(self.backend, parent.backend.in_channels, parent.backend.num_classes,
                                  parent.backend.classes)
        program = dataclasses.replace(
            parent, filter=filt, readout=self.readout, backend=backend,
            source={**parent.source, "finetune": _jsonable(lineage)},
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        images = parent.reference.images  # the twin's expectations for them, as the compiler makes them
        return with_reference(program, images) if len(images) else program


class _Diverged(Exception):
    """A step whose loss or gradient is not finite (rolled back, never raised to the caller)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
