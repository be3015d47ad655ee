"""The job pool's workers die with the experiment that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labrig.experiments.jobs import Job

HERE = Path(__file__).parent


def _setup(folder: str) -> str:
    return folder


def _sleep_forever(folder: str, job: Job) -> dict:
    Path(folder, f"worker-{os.getpid()}").touch()
    time.sleep(3600)
    return {}


PARENT = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from labrig.distill import TrainConfig
from labrig.experiments.jobs import Job
from labrig.experiments.pool import run_pool
from test_experiments_pool import _setup, _sleep_forever
jobs = [Job(f"j{{i}}", "student", {{"i": i}}, TrainConfig(progress=False)) for i in range(2)]
run_pool(jobs, _sleep_forever, workers=2, setup=_setup, setup_args=(sys.argv[1],), progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_exit_when_the_experiment_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2, "the workers never started their jobs"
        parent.send_signal(signal.SIGKILL)  # no clean-up runs in the parent
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "orphaned workers kept running"
    finally:
        parent.kill()
        for p in tmp_path.glob("worker-*"):
            try:
                os.kill(int(p.name.split("-")[1]), signal.SIGKILL)
            except ProcessLookupError:
                pass

