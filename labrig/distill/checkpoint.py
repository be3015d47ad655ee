"""Model checkpoints: state dict + model config + metrics (+ optimiser and epoch to resume).

One file per checkpoint, written atomically (`labrig.io.atomic_write`), read
with ``torch.load(weights_only=True)`` (plain data and tensors only, no code).
Anything unreadable, truncated, foreign or of the wrong kind is a
`CheckpointError` that names the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import labrig
from drivers.errors import LabrigError
from labrig.io import atomic_write
from labrig.models.errors import ModelConfigError
from labrig.models.registry import build_model, model_config, model_kind

FORMAT = "labrig-checkpoint"
VERSION = 1


class CheckpointError(LabrigError, ValueError):
    """A checkpoint file is missing, unreadable, not a labrig checkpoint, or of the wrong kind."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    path: Path
    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    optimizer: dict[str, Any] | None = None
    trainer: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel/DataParallel wrapper."""
    return getattr(model, "module", model)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    metrics: dict[str, Any] | None = None,
    epoch: int | None = None,
    optimizer: torch.optim.Optimizer | dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (teacher or student) with its config; atomic. Returns the path.

    `extra` holds any further plain data or tensors (e.g. a hint projection's state).
    """
    model = unwrap(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": model_kind(model),
        "config": model_config(model),
        "state_dict": (state := {k: v.detach().cpu() for k, v in model.state_dict().items()}),
        "state_sha256": state_sha256(state),
        "metrics": dict(metrics or {}),
        "epoch": epoch,
        "optimizer": optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer,
        "trainer": trainer,
        "extra": dict(extra or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"labrig": str(labrig.__version__), "torch": str(torch.__version__)},
    }
    path = Path(path)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path, *, kind: str | None = None, map_location: Any = "cpu") -> Checkpoint:
    """Read and validate a checkpoint; `kind` ("teacher"/"student") checks what it holds."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"{path} is not a checkpoint (neither a torch zip archive nor a pickle): "
                              "corrupt, truncated or another kind of file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc) and "Unsupported operand" not in str(exc):
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                                  f"({str(exc).splitlines()[0][:200]})") from exc
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data: not a labrig checkpoint "
            "(refused unread, as loading it could run code)"
        ) from exc
    except Exception as exc:  # truncated zip, garbage bytes: all the same to a user
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a labrig checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {payload.get('version')!r}; this labrig reads {VERSION}")
    missing = [k for k in ("kind", "config", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"checkpoint {path} holds a {payload['kind']}, expected a {kind}")
    _check_state(path, payload["state_dict"])
    stored = payload.get("state_sha256")  # absent in checkpoints written before it was kept
    if stored is not None and stored != state_sha256(payload["state_dict"]):
        raise CheckpointError(f"checkpoint {path}: the weights do not match their stored hash (the file is corrupt)")
    return Checkpoint(
        path=path,
        kind=payload["kind"],
        config=payload["config"],
        state_dict=payload["state_dict"],
        metrics=payload.get("metrics") or {},
        epoch=payload.get("epoch"),
        optimizer=payload.get("optimizer"),
        trainer=payload.get("trainer"),
        extra=payload.get("extra") or {},
        created=payload.get("created", ""),
        versions=payload.get("versions") or {},
    )


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and values: a flipped byte in a weight
    (torch's zip reader does not check its CRCs) is an error, not a silently different model."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save's format) or a pickle (its legacy one): cheap, before unpickling."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _check_state(path: Path, state: Any) -> None:
    """Tensors only, all finite: NaN weights compile into NaN masks that classify everything as 0."""
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: state_dict is a {type(state).__name__}, not a dict of tensors")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: state_dict entry {name!r} is a {type(value).__name__}, "
                                  "not a tensor")
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(f"checkpoint {path}: tensor(s) {', '.join(repr(b) for b in bad)} hold non-finite "
                              "values (NaN or inf): the training diverged; use an earlier checkpoint")


def non_finite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the tensors holding NaN anywhere, or infinity in a weight. A physical parameter
    of the optics (``...imperfections.*``) may be +inf on purpose: "none" (a flat illumination
    has an infinite waist)."""
    bad = []
    for name, t in state.items():
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
            continue
        if bool(torch.isnan(t).any()) or (".imperfections." not in f".{name}" and bool(torch.isinf(t).any())):
            bad.append(name)
    return bad


def restore_weights(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Load a checkpoint's weights into a model built from the same config."""
    try:
        unwrap(model).load_state_dict(checkpoint.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not fit this model: {exc}") from exc


def load_model(
    path: str | Path,
    *,
    kind: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint describes, with its weights; returns (model, checkpoint)."""
    checkpoint = read_checkpoint(path, kind=kind)
    try:
        model = build_model(checkpoint.kind, checkpoint.config)
    except ModelConfigError as exc:
        raise CheckpointError(f"checkpoint {checkpoint.path}: bad model config: {exc}") from exc
    if dtype is None:
        floats = [v.dtype for v in checkpoint.state_dict.values() if v.is_floating_point()]
        dtype = floats[0] if floats else torch.float32
    model.to(dtype)
    restore_weights(model, checkpoint)
    return model.to(device), checkpoint
