"""Run a program on a bench: stream images through it, pipelined, into a resumable run file.

Per chunk of images the main thread encodes the inputs, shows them and grabs
the frames (the devices' time); a host thread meanwhile reads out the
previous chunk, runs the back end and appends to the run file. The light is
armed for the run and made safe however it ends: finished, cancelled,
Ctrl-C, a device fault. The run file is valid at every chunk boundary, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from drivers.errors import LabrigError
from labrig.bench import Bench
from labrig.deploy.acquire import Acquirer
from labrig.deploy.calibrated import calibration_identity, check_calibration
from labrig.deploy.errors import LightOff, RunAborted
from labrig.deploy.fit import check_fits
from labrig.deploy.host import Host
from labrig.deploy.images import ImageSource
from labrig.deploy.inputs import encode_images
from labrig.deploy.program import Program
from labrig.deploy.result import RunResult
from labrig.deploy.runfile import MemorySink, RunFile, RunLayout
from labrig.deploy.track import DriftConfig, DriftTracker
from labrig.deploy.twin import ProgramTwin
from labrig.models.runtime import resolve_device
from labrig.progress import Cancel, Progress, is_cancelled

__all__ = ["DEFAULT_BATCH", "run_program"]

DEFAULT_BATCH = 64
def run_program(
    bench: Bench,
    program: Program,
    data: Any,
    out_path: str | Path | None = None,
    *,
    labels: Any = None,
    device: str = "auto",
    batch: int = DEFAULT_BATCH,
    resume: bool = True,
    cancel: Cancel | None = None,
    progress: bool = True,
    on_progress: Progress | None = None,
    limit: int | None = None,
    save_frames: bool = False,
    save_tiles: bool = True,
    twin: bool = False,
    timeout_s: float = 1.0,
    retries: int = 2,
    pipelined: bool = True,
    batched: bool | None = None,
    reconnects: int = 3,
    reconnect_wait_s: float = 0.5,
    calibration: Any = None,
    ignore_calibration: bool = False,
    allow_stale: bool = False,
    drift: DriftConfig | None = None,
) -> RunResult:
    """Run `program` on an open `bench` over `data` (an `ImageDataset`, (N, H, W) images in
    [0, 1] or uint8, or an (images, labels) pair) and return a `RunResult`.

    `out_path`: the HDF5 run file (None: keep the run in memory). With `resume` an
    unfinished run file of the same program and images is continued, otherwise it is
    started afresh. `cancel` (callable or `threading.Event`) stops the run cleanly
    between chunks; `on_progress(done, total, metrics)` is called from this thread
    after every chunk. `twin` also runs every image through the program's ideal twin
    (the twin's accuracy and the tile error; costs as much again as a simulated bench).
    `save_tiles` keeps every image's raw tile DN in the run file (T x th x tw uint16 per
    image: 41 kB for 16 tiles of 36 x 36); `save_frames` keeps whole frames too.

    Ctrl-C re-raises KeyboardInterrupt and a device fault raises `RunAborted`, both
    after the shutter is closed and the run file is complete up to the last chunk;
    their messages say how many images were done.

    `batched` None uses the camera's batched path where it has one (the simulated
    bench); False shows and grabs image by image. Either way timeouts, dropped frames
    and SLM write errors are retried `retries` times in a row, and a disconnected camera
    is reopened up to `reconnects` times (waiting `reconnect_wait_s`, then twice as long
    each time). `pipelined` False runs the host work inline (for timing).

    A frame taken without light is never data: if the bench is made safe from anywhere
    (the console's button, a signal, another thread), the laser or shutter reports off,
    or a chunk's tiles all sit at the dark level, the run stops with `RunAborted`
    (status ``light-off``) and the images in flight are not recorded (`not_measured`).

    `calibration` (a calibration file, a `Calibration` or an `Imperfections`): the bench's
    current calibration. It must be the one the program was compiled for (none for a program
    compiled for the ideal bench), else `CalibrationMismatch`, unless `ignore_calibration`;
    a stale calibration (the store's `check_fresh` against this bench) is refused unless
    `allow_stale`. Both checks run before any light goes on.

    `drift` (a `DriftConfig`): follow the bench's drift during the run (`labrig.deploy.track`):
    every `drift.every` images (sooner when the residual grows) a few of the frames just
    taken are registered against the program's twin, and every frame is moved back by the
    displacement found before its tiles are cut. The re-registrations are in `result.drift`.
    """
    check_fits(program, bench)
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1 (images per chunk), got {batch!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (images to run), got {limit!r}")
    ignored = check_calibration(program, calibration_identity(calibration, bench, allow_stale=allow_stale),
                                ignore=ignore_calibration)
    if ignored:
        warnings.warn(ignored, stacklevel=2)
    images = ImageSource(data, program.input.image_shape, labels=labels, limit=limit)
    total = len(images)
    labels_all = images.labels if images.labels is not None else np.full(total, -1, np.int64)
    camera = bench.camera
    layout = RunLayout(
        total=total, classes=program.backend.num_classes,
        tiles=(program.multiplexing.channels, *program.readout.tile_shape),
        frames=(program.frames, *camera.resolution),
        frame_dtype="uint8" if camera.bit_depth <= 8 else "uint16", save_frames=save_frames,
        save_tiles=save_tiles, twin=twin,
    )
    program_hash = program.digest()
    if out_path is None:
        sink: Any = MemorySink(layout, labels_all)
    else:
        sink = RunFile.open(out_path, layout, labels_all,
                            {"program_hash": program_hash, "data_digest": images.digest(),
                             "program_profile": program.profile, "data_name": images.name,
                             "data_source": images.source}, resume=resume)
    try:
        return _run(bench, program, images, sink, program_hash, device=device, batch=batch, cancel=cancel,
                    progress=progress, on_progress=on_progress, timeout_s=timeout_s, retries=retries,
                    pipelined=pipelined, batched=batched, reconnects=reconnects,
                    reconnect_wait_s=reconnect_wait_s, drift=drift)
    finally:
        sink.close()  # a no-op after `finish`; closes the file if the run failed before it


def _run(bench: Bench, program: Program, images: ImageSource, sink: Any, program_hash: str, *, device: str,
         batch: int, cancel: Cancel | None, progress: bool, on_progress: Progress | None, timeout_s: float,
         retries: int, pipelined: bool, batched: bool | None, reconnects: int,
         reconnect_wait_s: float, drift: DriftConfig | None = None) -> RunResult:
    torch_device = resolve_device(device)
    total, start = len(images), sink.done
    host = Host(program, sink, torch_device, twin=sink.layout.twin, save_frames=sink.layout.save_frames)
    acquirer = Acquirer(bench, program, timeout_s=timeout_s, retries=retries, batched=batched,
                        reconnects=reconnects, reconnect_wait_s=reconnect_wait_s)
    tracker = None
    if drift is not None and drift.every:
        twin = ProgramTwin(program)
        tracker = DriftTracker(twin.frames, drift)
    status, error, failure = "complete", None, None
    reached = start  # the end of the last chunk the devices were asked for
    encode_s, wall0 = 0.0, time.perf_counter()
    bar = tqdm(total=total, initial=start, desc=f"run {bench.profile.name}", unit="img", disable=not progress)

    def report(frames: np.ndarray | None = None) -> None:
        m = host.metrics()
        bar.update(m["done"] - bar.n)
        if on_progress is not None:
            elapsed = time.perf_counter() - wall0
            m["frames_per_s"] = acquirer.frames / elapsed if elapsed > 0 else 0.0
            if frames is not None and len(frames):  # the chunk's last camera frame (a live view shows it)
                m["last_frame"] = np.array(frames[-1, 0])
            on_progress(m["done"], total, m)

    try:
        acquirer.prepare()
        sink.begin_session({
            "profile": bench.profile.name, "profile_source": bench.profile.source,
            "profile_toml": bench.profile.to_toml_snapshot(),
            "devices": bench.describe()["devices"], "backend_device": str(torch_device), "batch": batch,
        })
        if acquirer.has_light:
            bench.guard.arm()
            acquirer.light_armed()  # from here on, a make-safe from anywhere ends the run
        if pipelined:
            host.start()
        for s in range(start, total, batch):
            if is_cancelled(cancel):
                status = "cancelled"
                break
            host.raise_if_failed()
            t = time.perf_counter()
            gray = encode_images(program.input, images.batch(s, s + batch))
            encode_s += time.perf_counter() - t
            reached = s + len(gray)
            try:
                frames = acquirer.acquire(gray, f"images {s} to {s + len(gray) - 1} (in flight)")
            except LabrigError as exc:
                partial = getattr(exc, "partial", None)
                if partial is not None:  # the images completed before the fault are kept
                    if tracker is not None:
                        partial = tracker.correct(partial)
                    host.submit(s, gray[: len(partial)], partial)
                    acquirer.keep_partial(partial)
                raise
            if tracker is not None:  # re-register when due (from these frames), then register them
                event = tracker.observe(s, gray, frames)
                if event is not None and event["kind"] == "refused":
                    warnings.warn(event["message"], stacklevel=2)
                frames = tracker.correct(frames)
            host.submit(s, gray, frames)
            report(frames)
    except KeyboardInterrupt as exc:
        status, error, failure = "interrupted", "interrupted (Ctrl-C)", exc
    except LightOff as exc:
        status, error, failure = "light-off", f"{type(exc).__name__}: {exc}", exc
    except LabrigError as exc:
        status, error, failure = "fault", f"{type(exc).__name__}: {exc}", exc
    except BaseException as exc:
        status, error, failure = "error", f"{type(exc).__name__}: {exc}", exc
    finally:
        safe_error = _make_safe(bench)
        try:
            host.close()
        finally:
            bar.update(host.metrics()["done"] - bar.n)
            bar.close()
    if host.error is not None and (failure is None or failure is host.error):
        failure = host.error
        status = "fault" if isinstance(host.error, LabrigError) else "error"
        error = f"{type(host.error).__name__}: {host.error}"
    # what the devices were asked for but the run file does not hold: measured again on resume
    in_flight = (sink.done, reached) if failure is not None and reached > sink.done else None
    if safe_error:
        error = f"{error}; {safe_error}" if error else safe_error
    result = _result(bench, program, sink, program_hash, host, acquirer, status, error, torch_device,
                     time.perf_counter() - wall0, encode_s, start)
    if tracker is not None:
        result.drift = list(tracker.events)
    if in_flight is not None:
        result.not_measured = [in_flight[0], in_flight[1]]
    sink.finish(status, error, {"session_images": result.session_images, "frames": result.frames,
                                "timing": result.timing, "faults": result.faults,
                                "not_measured": result.not_measured or [],
                                "drift": result.drift or [],
                                "devices_end": _describe(bench)})
    if on_progress is not None and failure is None:  # the last word; a failure speaks through its exception
        on_progress(result.images, result.total, {"done": result.images, "accuracy": result.accuracy,
                                                  "twin_accuracy": result.twin_accuracy,
                                                  "frames_per_s": result.frames_per_s, "status": result.status})
    if failure is None and safe_error:
        raise RunAborted(f"the run finished but {safe_error}", result)
    if failure is None:
        return result
    where = f"; {sink.path} holds them: run again to resume" if sink.path is not None else ""
    done = f"{result.images} of {result.total} images done{where}"
    if isinstance(failure, KeyboardInterrupt):
        interrupt = KeyboardInterrupt(f"run interrupted: the shutter is closed; {done}")
        interrupt.result = result  # type: ignore[attr-defined]  # for the CLI's report
        raise interrupt from failure
    if isinstance(failure, LabrigError) and status in ("fault", "light-off"):
        lost = (f"; images {result.not_measured[0]} to {result.not_measured[1] - 1} were in flight and are "
                "not measured" if result.not_measured else "")
        raise RunAborted(f"{error} -- the shutter is closed; {done}{lost}", result) from failure
    raise failure


def _describe(bench: Bench) -> Any:
    """The devices' settings at the end of a session; a device that cannot say is noted, not fatal."""
    try:
        return bench.describe()["devices"]
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _make_safe(bench: Bench) -> str | None:
    """Laser off, shutter closed; a failure to do so is reported, never swallowed silently."""
    try:
        bench.guard.make_safe("the run ended")
    except Exception as exc:
        return f"making the bench safe failed: {exc}"
    return None


def _result(bench: Bench, program: Program, sink: Any, program_hash: str, host: Host, acquirer: Acquirer,
            status: str, error: str | None, device: Any, wall: float, encode_s: float, start: int) -> RunResult:
    done = sink.done
    labels = np.asarray(sink.labels[:done])
    known = labels >= 0
    predictions = sink.read("predictions")
    predictions = np.zeros(0, np.int64) if predictions is None else predictions

    def accuracy(pred: np.ndarray | None) -> float | None:
        if pred is None or not known.any():
            return None
        return float((pred[known] == labels[known]).mean())

    twin_pred, err2, ref2 = sink.read("twin/predictions"), sink.read("twin/err2"), sink.read("twin/ref2")
    rel = rel_max = None
    if err2 is not None and len(err2):
        rel = float(np.sqrt(err2.sum() / max(ref2.sum(), np.finfo(float).tiny)))
        rel_max = float(np.sqrt(np.max(err2 / np.maximum(ref2, np.finfo(float).tiny))))
    software = encode_s + host.busy_s - host.twin_s
    frames = acquirer.frames
    timing = {
        "wall_s": wall, "device_s": acquirer.device_s, "software_s": software, "encode_s": encode_s,
        "host_s": host.busy_s - host.twin_s, "twin_s": host.twin_s,
        "software_per_frame_ms": 1e3 * software / frames if frames else 0.0,
        "retried_frames": float(acquirer.retried), "reconnects": float(acquirer.reconnected),
    }
    session = done - start
    return RunResult(
        status="complete" if status == "complete" and done >= sink.layout.total else status,
        path=None if sink.path is None else Path(sink.path), program_hash=program_hash,
        profile=bench.profile.name, device=str(device), images=done, total=sink.layout.total,
        session_images=session, frames=frames, frames_per_image=program.frames,
        accuracy=accuracy(predictions), twin_accuracy=accuracy(twin_pred), twin_tile_rel_error=rel,
        twin_tile_rel_error_max=rel_max, frames_per_s=frames / wall if wall > 0 else 0.0,
        images_per_s=session / wall if wall > 0 else 0.0, timing=timing, error=error,
        predictions=predictions, labels=labels if known.any() else None,
        tiles=sink.read("tiles") if sink.path is None else None, faults=dict(acquirer.faults),
    )
