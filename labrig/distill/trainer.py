"""One trainer for every run: teacher, no-KD student, KD student, hint KD.

The loss is the only difference between those runs (`DistillConfig`); the
optimiser, schedule, augmentation and stopping come from one `TrainConfig`, so
KD and no-KD comparisons are fair. Reproducible on CPU: every epoch's
shuffle, crops, dropout and camera noise are seeded from (seed, epoch), so a
run resumed from its last checkpoint ends with the same weights as an
uninterrupted one. Single process or DDP (`labrig.distill.ddp`), CPU or CUDA.

Checkpoints (with `checkpoint_dir`): ``last.pt`` after every epoch (for
resume) and ``best.pt`` at each new best validation score: accuracy, or the
task's own score (`labrig.distill.tasks`: mIoU for segmentation).
"""

from __future__ import annotations

import copy
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from labrig.data.base import ImageDataset
from labrig.distill import ddp
from labrig.distill.augment import augment
from labrig.distill.checkpoint import (
    CheckpointError,
    read_checkpoint,
    restore_weights,
    save_checkpoint,
    unwrap,
)
from labrig.distill.config import DistillConfig, TrainConfig
from labrig.distill.losses import HintLoss
from labrig.distill.tasks import Task, task_of
from labrig.models.errors import ModelConfigError
from labrig.models.registry import model_kind
from labrig.models.runtime import resolve_device, resolve_dtype
from labrig.models.serialize import config_to_dict

Cancel = Callable[[], bool] | threading.Event
LAST = "last.pt"
BEST = "best.pt"


def seed_everything(seed: int) -> None:
    """Seed torch's global RNGs (CPU and CUDA): call before building a model."""
    torch.manual_seed(seed)


def _derived_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1)


def _cancelled(cancel: Cancel | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@dataclass
class TrainState:
    """Progress that a resume restores (all plain data)."""

    epoch: int = 0
    step: int = 0
    best_accuracy: float = -1.0
    """Best validation score: accuracy, or the task's `score` (segmentation: mIoU)."""
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FitResult:
    """How a `fit` ended. `final` holds the validation metrics of the returned weights."""

    history: list[dict[str, Any]]
    best_accuracy: float | None
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    cancelled: bool
    final: dict[str, float]
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float32",
    distributed: ddp.DistInfo | None = None,
    seed: int = 0,
    task: Task | None = None,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `model` on `dataset` (eval mode, no augmentation),
    plus the task's own metrics (segmentation: pixel accuracy and ``miou``).

    Under DDP each rank takes a strided share and the sums are reduced, so every
    rank returns the same numbers. Noise (optics-aware students) is seeded.
    `task` defaults to the model's (`tasks.task_of`).
    """
    task = task or task_of(model)
    device = distributed.device if distributed else resolve_device(device)
    dtype = resolve_dtype(dtype)
    net = unwrap(model).to(device)  # a model loaded on the CPU is scored where asked
    n = len(dataset)
    indices = torch.arange(distributed.rank, n, distributed.world_size) if distributed else torch.arange(n)
    was_training = net.training
    net.eval()
    totals = task.zero_totals(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            x = dataset.prepare(dataset.images[idx].to(device)).to(dtype)
            y = dataset.labels[idx].to(device)
            totals += task.batch_totals(net(x), y)
    net.train(was_training)
    if distributed:
        ddp.all_reduce_sum(totals)
    return task.summarise(totals)


@torch.no_grad()
def teacher_logits_for(
    teacher: nn.Module, dataset: ImageDataset, *, batch_size: int = 512,
    device: str | torch.device = "auto", dtype: str | torch.dtype = "float32",
    store_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The teacher's logits (N, classes[, H, W]) for every image of `dataset`, in order, on
    the CPU: computed once, they serve every KD student trained on that dataset.
    `store_dtype` (e.g. float16 for per-pixel logits) halves what is kept."""
    device = resolve_device(device)
    net = unwrap(teacher).to(device=device, dtype=resolve_dtype(dtype))
    was_training = net.training
    net.eval()
    parts = [net(x.to(device=device, dtype=resolve_dtype(dtype))).to("cpu", store_dtype)
             for x, _ in dataset.batches(batch_size, device=device)]
    net.train(was_training)
    return torch.cat(parts)


def _epoch_line(record: dict[str, Any], epochs: int, score: str, improved: bool) -> str:
    """One line per finished epoch for the log (the bar of an epoch does not stay)."""
    line = f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}"
    if f"val_{score}" in record:
        line += f", val loss {record['val_loss']:.4f}, val {score} {100 * record[f'val_{score}']:.2f} %"
        line += " (best)" if improved else ""
    return line + f", {record['images_per_s']:.0f} img/s"


def _val_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The validation metrics of an epoch record, without their ``val_`` prefix."""
    return {k[4:]: v for k, v in record.items() if k.startswith("val_")}


class Trainer:
    """Trains `model` (any labrig model: teacher, student, U-Net, segmentation student) with one loss recipe.

    `teacher` is needed for ``kd`` and ``hint``; it is put in eval mode and not
    trained. `cancel` (callable or `threading.Event`) is checked before every
    step: a cancelled fit stops at once, keeping the last whole-epoch checkpoint.
    `on_epoch(record)` is called after each epoch with its metrics. Under
    torchrun, pass `distributed=ddp.init_distributed()` (the default "auto"
    joins an already initialised process group).

    `teacher_logits` (N, classes), the teacher's logits for every training image
    in dataset order (`teacher_logits_for`), replaces the teacher's forward pass
    in ``kd`` runs: the same soft targets at a fraction of the cost. It is only
    exact without augmentation (the teacher would see other pixels), so it is
    refused with augmentation on.

    `task` (`labrig.distill.tasks`) supplies the loss, the KD loss and the
    metrics; by default the model's own (``model.task``), else classification.
    Dense tasks take no augmentation (it would move pixels, not their labels).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        teacher: nn.Module | None = None,
        distill: DistillConfig | None = None,
        cancel: Cancel | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        distributed: ddp.DistInfo | Literal["auto"] | None = "auto",
        teacher_logits: torch.Tensor | None = None,
        task: Task | None = None,
    ) -> None:
        self.config = config = config or TrainConfig()
        self.distill = distill = distill or DistillConfig()
        self.dist = ddp.current() if distributed == "auto" else distributed
        self.device = self.dist.device if self.dist else resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype)
        self.cancel = cancel
        self.on_epoch = on_epoch
        model_kind(model)  # a labrig model: checkpoints can rebuild it
        self.task = task or task_of(model)
        if self.task.name != "classification" and (config.augment.crop_padding or config.augment.hflip):
            raise ModelConfigError(f"augmentation is for classification; a {self.task.name} run "
                                   "would move the pixels but not their labels")
        if teacher_logits is not None:
            if distill.method != "kd":
                raise ModelConfigError("precomputed teacher_logits serve 'kd' runs only (hints need the teacher's features)")
            if config.augment.crop_padding or config.augment.hflip:
                raise ModelConfigError("precomputed teacher_logits are only exact without augmentation")
        if distill.method != "none" and teacher is None and teacher_logits is None:
            raise ModelConfigError(f"distill method {distill.method!r} needs a teacher")
        self.teacher_logits = teacher_logits
        world = self.dist.world_size if self.dist else 1
        if config.batch_size % world:
            raise ModelConfigError(f"batch_size {config.batch_size} is not divisible by the world size {world}")
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.teacher = teacher.to(device=self.device, dtype=self.dtype).eval() if teacher is not None else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
        self.hint: nn.Module | None = None
        if distill.method == "hint":
            if not hasattr(model, "forward_with_features") or not hasattr(self.teacher, "feature_shape"):
                raise ModelConfigError("hint distillation needs a student model and a teacher with stages")
            channels = self.teacher.feature_shape(distill.hint_layer)[0]
            self.hint = HintLoss(model.front.out_channels, channels).to(device=self.device, dtype=self.dtype)
        self.net: nn.Module = self.model
        self.hint_net = self.hint
        if self.dist:
            self.net = ddp.wrap(self.model, self.dist, sync_batchnorm=config.sync_batchnorm)
            if self.hint is not None:
                self.hint_net = ddp.wrap(self.hint, self.dist)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.hint is not None:
            params += list(self.hint.parameters())
        self.optimizer = self._optimizer(params)
        self.state = TrainState()
        self._best_state: dict[str, torch.Tensor] | None = None

    # -- setup ------------------------------------------------------------------------------
    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        cfg = self.config
        if not params:
            raise ModelConfigError("nothing to train: every parameter is frozen")
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                   weight_decay=cfg.weight_decay)
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate of optimiser step `step` (0-based): warm-up, then the schedule."""
        cfg = self.config
        total = cfg.epochs_for(steps_per_epoch) * steps_per_epoch
        unit = cfg.unit_steps(steps_per_epoch)  # warm-up and decay in budget epochs (reference size)
        warm = cfg.warmup_epochs * unit
        if cfg.reference_train_size is not None:  # a capped budget must still leave room for the schedule
            warm = min(warm, 0.5 * total)
        if step < warm:  # linear ramp that reaches cfg.lr, never overshoots it, when warm is fractional
            return cfg.lr * min(1.0, (step + 1) / warm)
        if cfg.schedule == "cosine":
            progress = min(1.0, (step - warm) / max(1.0, total - warm))
            return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        if cfg.schedule == "step":
            return cfg.lr * cfg.step_gamma ** ((step // unit) // cfg.step_epochs)
        return cfg.lr

    def steps_per_epoch(self, n_train: int) -> int:
        cfg = self.config
        steps = max(1, n_train // cfg.batch_size)
        return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    # -- one epoch --------------------------------------------------------------------------
    def _epoch_indices(self, n: int, epoch: int) -> torch.Tensor:
        cfg = self.config
        if self.dist:
            return ddp.shard_indices(n, self.dist, epoch=epoch, seed=cfg.seed, shuffle=True, drop_last=True)
        g = torch.Generator().manual_seed(_derived_seed(cfg.seed, epoch, 0))
        return torch.randperm(n, generator=g)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        method = self.distill.method
        if method == "none":
            logits = self.net(x)
            return self.task.loss(logits, y), logits
        with torch.no_grad():
            if self.teacher_logits is not None:
                t_logits = self.teacher_logits[idx].to(device=self.device, dtype=self.dtype)
            elif method == "hint":
                assert self.teacher is not None
                t_logits, t_feats = self.teacher.forward_with_features(x, self.distill.hint_layer)
            else:
                assert self.teacher is not None
                t_logits = self.teacher(x)
        d = self.distill
        if method == "kd":
            logits = self.net(x)
            return self.task.distill_loss(logits, t_logits, y, d.temperature, d.alpha), logits
        logits, s_feats = self.net(x, with_features=True)
        assert self.hint_net is not None
        loss = self.task.distill_loss(logits, t_logits, y, d.temperature, d.alpha) + d.hint_weight * self.hint_net(s_feats, t_feats)
        return loss, logits

    def train_epoch(self, train: ImageDataset) -> dict[str, Any] | None:
        """One epoch (epoch number `state.epoch`); None if cancelled part-way."""
        cfg, state = self.config, self.state
        epoch = state.epoch
        rank = self.dist.rank if self.dist else 0
        world = self.dist.world_size if self.dist else 1
        local_batch = cfg.batch_size // world
        steps = self.steps_per_epoch(len(train))
        if self.teacher_logits is not None and len(self.teacher_logits) != len(train):
            raise ModelConfigError(f"teacher_logits has {len(self.teacher_logits)} rows for {len(train)} training images")
        indices = self._epoch_indices(len(train), epoch)
        torch.manual_seed(_derived_seed(cfg.seed, epoch, 1 + rank))  # dropout, camera noise
        gen = torch.Generator().manual_seed(_derived_seed(cfg.seed, epoch, 10_000 + rank))
        self.model.train()
        if self.teacher is not None:
            self.teacher.eval()
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        lr = self.lr_at(state.step, steps)
        started = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs_for(steps)}", leave=False,
                   disable=not (cfg.progress and self.is_main))
        try:
            for i in range(steps):
                stop = _cancelled(self.cancel)
                if self.dist and self.cancel is not None:
                    stop = ddp.any_rank(stop, self.device)
                if stop:
                    return None
                idx = indices[i * local_batch : (i + 1) * local_batch]
                if len(idx) == 0:
                    break
                x = train.prepare(train.images[idx].to(self.device)).to(self.dtype)
                y = train.labels[idx].to(self.device)
                x = augment(x, cfg.augment, gen)
                lr = self.lr_at(state.step, steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss, logits = self._loss(x, y, idx)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
                self.optimizer.step()
                state.step += 1
                with torch.no_grad():
                    totals += self.task.train_totals(loss, logits, y)
                bar.update(1)
                if i % 10 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        if self.dist:
            ddp.all_reduce_sum(totals)
            ddp.broadcast_buffers(self.model)  # one set of BN statistics for evaluation and saving
        count = float(totals[1])
        return {"epoch": epoch + 1, "lr": lr,
                "train_loss": float(totals[0]) / count, "train_accuracy": float(totals[2]) / max(float(totals[3]), 1),
                "seconds": seconds, "images_per_s": count / seconds}

    def evaluate(self, dataset: ImageDataset) -> dict[str, float]:
        """Accuracy and loss (and the task's metrics) of the model as it is now on `dataset`."""
        return evaluate(self.model, dataset, batch_size=self.config.eval_batch_size, device=self.device,
                        dtype=self.dtype, distributed=self.dist, seed=_derived_seed(self.config.seed, 0, 99),
                        task=self.task)

    # -- checkpoints --------------------------------------------------------------------------
    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"train_config": config_to_dict(self.config),
                                 "distill_config": config_to_dict(self.distill)}
        if self.hint is not None:
            extra["hint"] = {k: v.detach().cpu() for k, v in self.hint.state_dict().items()}
        return extra

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Checkpoint model + optimiser + progress (what `resume` needs)."""
        return save_checkpoint(path, self.model, metrics=metrics, epoch=self.state.epoch,
                               optimizer=self.optimizer, trainer=asdict(self.state), extra=self._extra())

    def resume(self, path: str | Path) -> None:
        """Continue from a `save`d checkpoint (same model config and training configs)."""
        ck = read_checkpoint(path, kind=model_kind(self.model))
        if ck.optimizer is None or ck.trainer is None:
            raise CheckpointError(f"checkpoint {ck.path} has no optimiser/progress state: it cannot be resumed")
        saved = ck.extra.get("train_config", {})
        now = config_to_dict(self.config)
        differ = sorted(k for k in now if k not in ("progress", "device") and saved.get(k) != now[k])
        if differ:
            warnings.warn(f"resuming {ck.path} with changed training settings {differ}: "
                          "the run will not match an uninterrupted one", stacklevel=2)
        restore_weights(self.model, ck)
        try:
            self.optimizer.load_state_dict(ck.optimizer)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {ck.path}: optimiser state does not fit ({exc})") from exc
        if self.hint is not None and "hint" in ck.extra:
            self.hint.load_state_dict(ck.extra["hint"])
        self.state = TrainState(**ck.trainer)
        best = Path(path).with_name(BEST)
        if best.is_file():
            self._best_state = read_checkpoint(best, kind=ck.kind).state_dict

    # -- the loop -------------------------------------------------------------------------------
    def fit(
        self,
        train: ImageDataset,
        val: ImageDataset | None = None,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool | Literal["auto"] = False,
    ) -> FitResult:
        """Train until the budget (`config.epochs_for` this training set), early stopping, or
        cancellation.

        `resume`: True continues from ``checkpoint_dir/last.pt`` (error if absent),
        "auto" does so only when it exists.
        """
        cfg, state = self.config, self.state
        folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if folder is not None and self.is_main:
            folder.mkdir(parents=True, exist_ok=True)
        if resume:
            if folder is None:
                raise CheckpointError("resume needs a checkpoint_dir")
            if resume is True or (folder / LAST).is_file():
                self.resume(folder / LAST)
                state = self.state
        stopped_early = cancelled = False
        epochs = cfg.epochs_for(self.steps_per_epoch(len(train)))
        while state.epoch < epochs:
            if cfg.patience is not None and state.bad_epochs >= cfg.patience:
                stopped_early = True
                break
            record = self.train_epoch(train)
            if record is None:
                cancelled = True
                break
            state.epoch += 1
            improved = False
            if val is not None:
                metrics = self.evaluate(val)
                record.update({f"val_{k}": v for k, v in metrics.items() if k != "count"})
                score = metrics[self.task.score]
                if score > state.best_accuracy + cfg.min_delta:
                    state.best_accuracy, state.best_epoch, state.bad_epochs = score, state.epoch, 0
                    improved = True
                else:
                    state.bad_epochs += 1
            state.history.append(record)
            if cfg.progress and self.is_main:
                tqdm.write(_epoch_line(record, epochs, self.task.score, improved))
            if improved:
                self._best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
            if folder is not None and self.is_main:
                self.save(folder / LAST, metrics=record)
                if improved:
                    save_checkpoint(folder / BEST, self.model, metrics=record, epoch=state.epoch)
            if self.on_epoch is not None:
                self.on_epoch(record)
        if cfg.patience is not None and state.bad_epochs >= cfg.patience and state.epoch < epochs:
            stopped_early = True
        final: dict[str, float] = {}
        if val is not None and state.best_epoch:
            if cfg.restore_best and self._best_state is not None and not cancelled:
                unwrap(self.model).load_state_dict(self._best_state)
                best = state.history[state.best_epoch - 1] if len(state.history) >= state.best_epoch else {}
                final = _val_metrics(best)
                final.setdefault(self.task.score, state.best_accuracy)
                final.setdefault("loss", math.nan)
            elif state.history:
                final = _val_metrics(state.history[-1])
                for key in {"accuracy", "loss", self.task.score}:
                    final.setdefault(key, math.nan)
        return FitResult(
            history=list(state.history),
            best_accuracy=state.best_accuracy if state.best_epoch else None,
            best_epoch=state.best_epoch,
            epochs_run=state.epoch,
            stopped_early=stopped_early,
            cancelled=cancelled,
            final=final,
            checkpoint=folder / LAST if folder is not None and (folder / LAST).exists() else None,
            best_checkpoint=folder / BEST if folder is not None and (folder / BEST).exists() else None,
        )
