"""Where the calibration-only gap goes: a program compiled through a calibration, run on `sim`
with its unmodelled effects all off, one at a time, and all on.

    python benchmarks/unmodelled_ablation.py STUDENT.pt cal.h5 OUT_DIR [N_TEST_IMAGES]

The calibration is the one measured on `sim` (unmodelled effects on, as on glass); the
profiles written to OUT_DIR differ from `sim` only in `[truth.unmodelled]`. A diagnostic for
people: it writes profiles with the effects switched, which labrig itself never does.
"""
import json
import sys
import time
from pathlib import Path

import labrig.profiles
from labrig.bench import Bench
from labrig.data import load_dataset
from labrig.deploy import compile_program, load_program, run_program, save_program
from labrig.deploy.track import DriftConfig
from labrig.distill import load_model
from labrig.paths import default_data_dir

ckpt, cal, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
out.mkdir(parents=True, exist_ok=True)
src = (Path(labrig.profiles.__file__).parent / "sim.toml").read_text()
head, rest = src.split("[truth.unmodelled]\n", 1)
body, tail = rest.split("\n[faults]", 1)
EFFECTS = {"pixel_aperture": ("pixel_aperture",), "ghost": ("ghost_fraction", "ghost_shift_px"),
           "extra_zernike": ("extra_zernike_rad",),
           "slm_phase": ("slm_phase_error_waves_rms", "slm_phase_error_correlation_px"),
           "knee": ("camera_knee_fraction",), "laser": ("laser_fluctuation_rms",)}
lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
keys = {name: "\n".join(ln for ln in lines if ln.split("=")[0].strip() in ks) for name, ks in EFFECTS.items()}
variants = {"none": "enabled = false", **{k: "enabled = true\n" + v for k, v in keys.items()}, "all": body}
data = default_data_dir()
train, test = load_dataset(data, split="train"), load_dataset(data, split="test")
prog_path = out / "calibrated.h5"
if prog_path.exists():
    prog = load_program(prog_path)
else:
    student, _ = load_model(ckpt, kind="student")
    student.eval()
    prog = compile_program(student, "sim", train.subset(range(2000)), classes=tuple(train.classes),
                           calibration=cal, allow_stale=True)
    save_program(prog, prog_path)
res = {}
for name, text in variants.items():
    p = out / f"sim-{name}.toml"
    p.write_text(head + "[truth.unmodelled]\n" + text + "\n\n[faults]" + tail)
    t = time.perf_counter()
    with Bench.open(str(p)) as bench:
        acc = run_program(bench, prog, test, limit=n, progress=False, calibration=cal, allow_stale=True,
                          drift=DriftConfig(every=500)).accuracy
    res[name] = float(acc)
    print(f"{name:15s} {100*acc:6.2f} %  {time.perf_counter()-t:.0f} s", flush=True)
    (out / "ablate.json").write_text(json.dumps(res, indent=1))
