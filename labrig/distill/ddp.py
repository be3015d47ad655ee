"""Data-parallel training over processes: DistributedDataParallel + DistributedSampler.

Launch with ``torchrun --nproc_per_node=N ...``; `init_distributed()` reads
RANK / WORLD_SIZE / LOCAL_RANK from the environment, picks NCCL on CUDA and
gloo on CPU, and returns a `DistInfo` the `Trainer` uses to wrap the model,
shard the data and reduce metrics. Everything also runs on CPU with gloo (the
tests spawn two CPU processes).

With DDP each rank computes gradients on its shard and they are averaged, so
for a loss that is a per-sample mean the update equals the single-process one
on the full batch, except for BatchNorm (per-rank statistics unless
`sync_batchnorm`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from labrig.models.runtime import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A free localhost TCP port (for a tcp:// init in tests and single-node runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(
    *,
    backend: str | None = None,
    init_method: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    local_rank: int | None = None,
    device: str = "auto",
) -> DistInfo:
    """Join (or create) the process group; arguments default to torchrun's environment."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    local_rank = int(os.environ.get("LOCAL_RANK", rank)) if local_rank is None else local_rank
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def current() -> DistInfo | None:
    """The running group's info when this process is part of one (world > 1), else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    backend = dist.get_backend()
    if backend == "nccl" and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)


def barrier() -> None:
    """Wait for every rank (no-op outside a process group): e.g. until rank 0 has written a file."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, *, sync_batchnorm: bool = False) -> DistributedDataParallel:
    """DDP around a model already on `info.device`."""
    if sync_batchnorm and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shard_indices(
    n: int, info: DistInfo, *, epoch: int, seed: int, shuffle: bool = True, drop_last: bool = False
) -> torch.Tensor:
    """This rank's sample indices for one epoch (DistributedSampler: same permutation
    on every rank, strided; padded by repetition unless `drop_last`)."""
    sampler = DistributedSampler(
        range(n), num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place, returned)."""
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any (e.g. a cancellation seen by one)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce_sum(t).item() > 0)


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Give every rank rank `src`'s buffers (BatchNorm running statistics) before evaluating."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src)
