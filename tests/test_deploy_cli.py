"""`labrig compile`, `labrig program show` and `labrig run` end to end, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import write_idx_split
from deploy_helpers import held_out, train_set, trained_student

from labrig.cli import main
from labrig.distill.checkpoint import save_checkpoint


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "toy"
    write_idx_split(data, train_set().images[:, 0].numpy(), train_set().labels.numpy().astype("u1"), "train")
    write_idx_split(data, held_out().images[:, 0].numpy(), held_out().labels.numpy().astype("u1"), "test")
    model = save_checkpoint(tmp_path / "student.pt", trained_student(), metrics={"accuracy": 0.8})
    return {"data": data, "model": model, "dir": tmp_path}


def test_compile_show_run(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = files["dir"]
    program = d / "prog.h5"
    assert main(["compile", "--model", str(files["model"]), "--profile", "sim-ideal", "--out", str(program),
                 "--data", str(files["data"]), "--calibration-images", "64"]) == 0
    out = capsys.readouterr().out
    assert "spatial multiplexing: all 4 channels on one frame" in out and f"wrote {program}" in out

    assert main(["program", "show", str(program), "--png", str(d / "prog.png")]) == 0
    out = capsys.readouterr().out
    assert "filter SLM 256x256 phase 8-bit" in out and "tile 3:" in out
    assert (d / "prog.png").stat().st_size > 10_000

    report = d / "r.json"
    assert main(["run", "--program", str(program), "--data", str(files["data"]), "--report", str(report),
                 "--limit", "48", "--twin", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "run complete: 48 of 48 images on sim-ideal" in out
    r = json.loads(report.read_text())
    assert r["status"] == "complete" and r["path"] == str(d / "r.h5") and r["twin_tile_rel_error"] < 1e-3
    assert r["accuracy"] == r["twin_accuracy"]


def test_bad_program_file_is_one_clear_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = files["dir"] / "broken.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 300)
    assert main(["program", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labrig: error: program file") and "broken.h5" in err


def test_run_on_a_bench_that_does_not_fit(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = files["dir"]
    program = d / "prog.h5"
    assert main(["compile", "--model", str(files["model"]), "--profile", "sim-ideal", "--out", str(program),
                 "--data", str(files["data"]), "--calibration-images", "16"]) == 0
    other = d / "big.toml"
    other.write_text('[bench]\nname = "big"\nextends = "sim-ideal"\n\n[devices.filter]\nbit_depth = 10\n')
    capsys.readouterr()
    assert main(["run", "--program", str(program), "--profile", str(other), "--data", str(files["data"]),
                 "--report", str(d / "r.json"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "SLM bit depth: the program is for 8 bits, this bench's filter SLM has 10" in err
    assert not (d / "r.h5").exists()


def test_a_fault_writes_a_partial_report(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = files["dir"]
    program = d / "prog.h5"
    main(["compile", "--model", str(files["model"]), "--profile", "sim-ideal", "--out", str(program),
          "--data", str(files["data"]), "--calibration-images", "16"])
    faulty = d / "faulty.toml"
    faulty.write_text('[bench]\nname = "faulty"\nextends = "sim-ideal"\n\n[faults]\ndisconnect_after_frames = 70\ndisconnect_permanent = true\n')
    assert main(["run", "--program", str(program), "--profile", str(faulty), "--data", str(files["data"]),
                 "--report", str(d / "r.json"), "--batch", "32", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "70 of 160 images done" in err and "run again to resume" in err
    assert json.loads((d / "r.json").read_text())["status"] == "fault"
