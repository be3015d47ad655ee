"""Run an experiment's jobs in parallel worker processes, one torch thread each.

Small models on a CPU use one core far better than several: N single-thread
workers train N jobs in about the time one job takes alone. Each worker builds
its state (data, teacher, cached logits) once with `setup(*setup_args)`; jobs
then run with `work(state, job)`. A job waits for the job it starts from
(`Job.init_from`); among the ready ones the cheapest go first, so a study cut
short holds whole comparisons. `setup` and `work` must be module-level
functions (the workers are spawned).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch
from tqdm.auto import tqdm

from labrig.experiments.jobs import Job

Work = Callable[[Any, Job], "dict[str, Any] | None"]
_STATE: dict[str, Any] = {}


def _init_worker(setup: Callable[..., Any], setup_args: tuple[Any, ...], parent: int) -> None:
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()
    _STATE["state"] = setup(*setup_args)


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """A killed experiment must not leave workers training on (holding their jobs' locks):
    once the parent is gone, exit. The job keeps its last whole-epoch checkpoint."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)


def _call(work: Work, job: Job) -> dict[str, Any]:
    return work(_STATE["state"], job)


def run_pool(
    jobs: Iterable[Job],
    work: Work,
    *,
    workers: int,
    setup: Callable[..., Any],
    setup_args: tuple[Any, ...] = (),
    local_state: Any = None,
    cost: Callable[[Job], float] = lambda job: job.train.epochs,
    describe: Callable[[Job, dict[str, Any]], str] = lambda job, result: job.name,
    progress: bool = True,
    desc: str = "jobs",
) -> dict[str, dict[str, Any]]:
    """Results by job name. With `workers` <= 1 the jobs run here, in the given
    order, on `local_state` (or `setup(*setup_args)` when that is None), and a
    `work` that returns None (cancelled) ends the run with the results so far."""
    jobs = list(jobs)
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress)
    try:
        if workers <= 1:
            state = setup(*setup_args) if local_state is None else local_state
            for job in jobs:
                result = work(state, job)
                if result is None:  # cancelled: the caller sees the missing results
                    break
                results[job.name] = result
                bar.update(1)
                bar.set_postfix_str(describe(job, results[job.name]))
            return results
        _run_parallel(jobs, work, workers, setup, setup_args, cost, describe, bar, results)
        return results
    finally:
        bar.close()


def _run_parallel(jobs: list[Job], work: Work, workers: int, setup: Callable[..., Any], setup_args: tuple[Any, ...],
                  cost: Callable[[Job], float], describe: Callable[[Job, dict[str, Any]], str], bar: tqdm,
                  results: dict[str, dict[str, Any]]) -> None:
    keys = {job.name: job.key for job in jobs}
    pending = list(jobs)
    running: dict[Future, Job] = {}
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(setup, setup_args, os.getpid())) as pool:
        while pending or running:
            finished = {keys[name] for name in results}
            ready = sorted((j for j in pending if j.init_from is None or j.init_from in finished), key=cost)
            for job in ready[: max(0, 2 * workers - len(running))]:
                pending.remove(job)
                running[pool.submit(_call, work, job)] = job
            if not running:
                missing = sorted({j.init_from for j in pending})
                raise RuntimeError(f"jobs wait on jobs that are not in the list: {missing}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                results[job.name] = future.result()
                bar.update(1)
                bar.set_postfix_str(describe(job, results[job.name]))
