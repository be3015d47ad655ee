"""End to end on the simulated bench: compile kernels, stream real images, read tiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labrig.cli import main
from labrig.demo import default_data_dir, run_demo

DATA = default_data_dir()
pytestmark = pytest.mark.skipif(not (DATA / "t10k-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST not found")


def test_demo_tiles_match_twin_and_convolution(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, DATA, n_images=16, progress=False)
    ideal, real = summary["results"]
    assert ideal["profile"] == "sim-ideal" and real["profile"] == "sim"
    # truth off: the bench is the twin, and the 8-bit double-phase optics compute the convolution
    assert ideal["twin_rel_error"] < 1e-6
    assert min(ideal["digital_correlation"]) > 0.99
    assert ideal["saturated_fraction"] == 0.0
    # truth on, no calibration: a large, measured gap
    assert real["twin_rel_error"] > 0.1
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["results"][0]["images"] == 16


def test_demo_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--images", "8", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sim-ideal" in out and "summary.json" in out


def test_demo_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "nowhere" in capsys.readouterr().err
