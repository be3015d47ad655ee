"""Shared fixtures: a fake device plugin installed as a real distribution, and bench profiles."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

# The console's tests (tests/test_gui_*.py) need no display; set before Qt is imported.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FAKE_PLUGIN = Path(__file__).parent / "fake_plugin"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (restored after): the test tensors are small,
    and on a busy 2-core machine thread spin-waits made tests up to 20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

OPTICS = """\
[bench]
name = "fake"

[optics]
wavelength_m = 633e-9
focal1_m = 0.1
focal2_m = 0.1
illumination = "coherent"
"""

DEFAULT_DEVICES = {
    "laser": 'kind = "fake.laser"',
    "shutter": 'kind = "fake.shutter"',
    "camera": 'kind = "fake.camera"\nresolution = [6, 8]\nbit_depth = 12',
}


@pytest.fixture
def fakeplug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Install `fakeplug` (dist-info + modules) on sys.path so importlib.metadata finds it."""
    site = tmp_path / "site"
    dist = site / "fakeplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    shutil.copy(FAKE_PLUGIN / "entry_points.txt", dist / "entry_points.txt")
    for module in ("fakeplug.py", "fakeplug_broken.py"):
        shutil.copy(FAKE_PLUGIN / module, site / module)
    monkeypatch.syspath_prepend(str(site))
    import fakeplug as module

    yield module
    for name in ("fakeplug", "fakeplug_broken"):
        sys.modules.pop(name, None)


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[..., Path]:
    """``write_profile(camera="...extra lines...", laser=None)``: a fake-bench profile file.

    Keyword values replace a role's table body (None drops the role).
    """

    def write(name: str = "fake.toml", **roles: str | None) -> Path:
        devices = {**DEFAULT_DEVICES, **roles}
        text = OPTICS + "".join(
            f"\n[devices.{role}]\n{body}\n" for role, body in devices.items() if body is not None
        )
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
