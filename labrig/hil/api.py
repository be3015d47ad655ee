"""`finetune()`: the one engine function the CLI, the console and scripts call.

Loads the parent program and the calibration (the calibrated twin: A's
`calibration.store`), enforces the calibration's staleness against the bench
unless told not to, opens the bench, fine-tunes (`FineTuner`), and writes
into `out`: the new program (``program.h5``, lineage in its source), a JSON
report of the run (``finetune.json``) and the checkpoint a later call resumes
from.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from labrig.deploy.program import Program
from labrig.hil.trainer import (
    Cancel,
    FineTuneConfig,
    FineTuner,
    FineTuneResult,
    Progress,
    Reregister,
)
from labrig.optics.imperfections import Imperfections
from labrig.optics.system import Twin

__all__ = ["calibrated_twin", "finetune", "write_report"]

log = logging.getLogger(__name__)


def calibrated_twin(program: Program, calibration: Any, *, bench: Any = None,
                    ignore_stale: bool = False) -> tuple[Twin, dict[str, Any]]:
    """The twin the backward pass uses, and what identifies it in the lineage.

    `calibration`: a cal.h5 path or a loaded `Calibration` (checked fresh for `bench`
    unless `ignore_stale`); an `Imperfections` (a twin of known imperfections, for
    development and tests); or None: the nominal twin with the program's LUT, i.e.
    no calibration at all.
    """
    geometry = program.bench_geometry()
    if calibration is None:
        imp = Imperfections(geometry, slm_lut=torch.as_tensor(program.filter.lut))
        return Twin(geometry, imp, dtype=torch.float32), {"hash": None, "path": None, "kind": "none"}
    if isinstance(calibration, Imperfections):  # a copy: re-registration moves the twin's, not the caller's
        twin = Twin(geometry, copy.deepcopy(calibration).to(torch.float64), dtype=torch.float32)
        try:  # the identity `labrig run` compares with a program compiled for these imperfections
            from labrig.deploy.calibrated import imperfections_hash
            ident = imperfections_hash(calibration)
        except ImportError:  # pragma: no cover - an older compiler
            ident = None
        return twin, {"hash": ident, "path": None, "kind": "known imperfections"}
    from calibration.store import Calibration, calibration_hash, check_fresh, load_calibration

    cal = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
    if not ignore_stale and bench is not None:
        check_fresh(cal, bench)
    info = {"hash": calibration_hash(cal), "path": str(cal.path) if cal.path else None, "kind": "calibration"}
    return cal.twin(geometry, torch.float32), info


def finetune(
    program: Program | str | Path,
    calibration: Any,
    data: Any,
    out: str | Path,
    *,
    profile: str | Path | None = None,
    eval_data: Any = None,
    config: FineTuneConfig | None = None,
    train_limit: int | None = None,
    eval_limit: int | None = 500,
    resume: bool = True,
    ignore_stale: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    pause: threading.Event | None = None,
    reregister: Reregister | None = None,
    bench: Any = None,
) -> FineTuneResult:
    """Fine-tune `program` in situ and write the new program into `out` (see the module doc).

    `data`: the training images (a dataset or (images, labels)); `eval_data`: images the
    bench and twin accuracies are measured on during the run (None: no evaluation).
    `bench`: an open bench to use (otherwise `profile`, else the program's, is opened
    and closed here; ``twin`` mode opens one only to evaluate). `reregister`: a hook that
    moves the twin to follow drift; None registers the frames to the twin instead (the
    default, as `labrig run` does).
    """
    from labrig.bench import open_bench
    from labrig.deploy import load_program, save_program

    parent_path = None
    if not isinstance(program, Program):
        parent_path = str(program)
        program = load_program(program)
    cfg = config or FineTuneConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    needs_bench = cfg.mode != "twin" or eval_data is not None
    own = bench is None and needs_bench
    if own:
        bench = open_bench(profile if profile is not None else program.constraints.profile)
    try:
        twin, info = calibrated_twin(program, calibration, bench=bench, ignore_stale=ignore_stale)
        tuner = FineTuner(program, twin, data, bench=bench, eval_data=eval_data, config=cfg, out_dir=out,
                          train_limit=train_limit, eval_limit=eval_limit, calibration=info,
                          parent_path=parent_path, reregister=reregister, resume=resume)
        result = tuner.run(progress=progress, cancel=cancel, pause=pause)
    finally:
        if own:
            bench.close()
    save_program(result.program, out / "program.h5")
    write_report(result, out / "finetune.json")
    return result


def write_report(result: FineTuneResult, path: str | Path) -> Path:
    """The run's lineage and metrics as JSON (atomic)."""
    path = Path(path)
    report = {"status": result.status, "error": result.error, "steps": result.steps, "frames": result.frames,
              "eval_frames": result.eval_frames, "bench_accuracy": result.bench_accuracy,
              "timing": result.timing, "program_digest": result.program.digest(),
              "lineage": result.program.source.get("finetune")}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, path)
    return path


def tqdm_progress(total: int, desc: str = "finetune", disable: bool = False) -> tuple[Progress, Callable[[], None]]:
    """A progress callback drawing a tqdm bar (loss, bench accuracy, frames), and its closer."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=disable)

    def update(step: int, steps: int, m: dict[str, Any]) -> None:
        bar.total = steps
        bar.update(step - bar.n)
        post = {"loss": f"{m.get('loss', float('nan')):.3f}", "frames": m.get("frames", 0)}
        if m.get("bench_accuracy") is not None:
            post["bench"] = f"{100 * m['bench_accuracy']:.1f}%"
        bar.set_postfix(post)

    return update, bar.close
