"""The wheel: built from a clean checkout, it holds what an installed labrig needs (the
embedded and example profiles, the plugin entry points, `py.typed`, the license), and
installed into a fresh virtual environment it runs ``labrig bench info`` outside the source
tree.

Offline and quick: the wheel is built with the running environment's setuptools
(``--no-build-isolation``), and the fresh venv borrows the running environment's
third-party packages (torch, numpy, ...) through a ``.pth`` line, so only labrig itself
comes from the wheel. ``labrig demo`` from the wheel takes minutes; it was checked by
hand (see the README's packaging note).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clean_checkout(dest: Path) -> Path:
    """The files git would check out (tracked, plus new ones not ignored): no build
    folders, no caches, no editable-install metadata."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # a file deleted but not yet committed is listed and absent
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tmp = tmp_path_factory.mktemp("wheel")
    src = _clean_checkout(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=120)
    (built,) = (tmp / "dist").glob("labrig-*.whl")
    return built


def test_the_wheel_holds_data_entry_points_and_markers(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(f"{info}/METADATA").decode()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    for needed in ("labrig/profiles/sim.toml", "labrig/profiles/sim-ideal.toml", "labrig/profiles/sim-wide.toml",
                   "labrig/profiles/examples/rig-example.toml", "labrig/py.typed", "drivers/py.typed",
                   "sim_backend/py.typed", "drivers/templates/camera.py", "drivers/vendors/genicam/camera.py",
                   "drivers/vendors/serial/sc10.py", "sim_backend/devices.py", f"{info}/licenses/LICENSE"):
        assert needed in names, f"{needed} is not in {wheel.name}"
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert "License-Expression: MIT" in metadata
    assert "slmsuite[slms]>=0.5" in metadata and "harvesters>=1.4.3" in metadata
    assert "[labrig.devices]" in entry_points and "sim.camera = sim_backend.devices:SimCamera" in entry_points
    for line in entry_points.splitlines():  # every registered driver module is in the wheel
        if "=" in line and ":" in line and not line.startswith("labrig ="):
            module = line.split("=", 1)[1].strip().split(":")[0]
            path = module.replace(".", "/")
            assert f"{path}.py" in names or f"{path}/__init__.py" in names, line


def test_installed_wheel_runs_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # the third-party dependencies come from this environment; labrig only from the wheel
    Path(purelib, "_labrig_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LABRIG_DATA")}
    # --ignore-installed: the borrowed packages may hold an (editable) labrig of their own
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                          "--ignore-installed", "-q", str(wheel)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert pip.returncode == 0, pip.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = subprocess.run([str(python), "-c", "import labrig, drivers, sim_backend; "
                            "print(labrig.__file__); print(drivers.__file__); print(sim_backend.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    where = found.stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    labrig = venv / ("Scripts/labrig.exe" if os.name == "nt" else "bin/labrig")
    info = subprocess.run([str(labrig), "bench", "info", "--profile", "sim", "--json"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert '"sim.camera"' in info.stdout and '"SimCamera"' in info.stdout
