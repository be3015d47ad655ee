"""Timing that survives a noisy machine: warm up, synchronise CUDA, take the median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device | str = "cpu",
                   warmup: int = 2) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` calls
    (allocations, FFT plans, caches); CUDA work is waited for on both sides."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
