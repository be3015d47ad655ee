"""Smoke test of a real rig: runs only with ``-m hardware`` and ``LABRIG_RIG_PROFILE=rig.toml``.

Opens every device of the profile, reads identities, takes one armed frame and
checks the bench ends safe. Nothing here runs in CI (`make test` deselects
``hardware``); run it at the bench after changing drivers or cabling.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labrig.bench import open_bench

pytestmark = pytest.mark.hardware

PROFILE = os.environ.get("LABRIG_RIG_PROFILE", "")


@pytest.mark.skipif(not PROFILE, reason="set LABRIG_RIG_PROFILE to a real rig's profile")
def test_real_rig_opens_snaps_and_ends_safe(tmp_path: Path) -> None:
    with open_bench(PROFILE) as bench:
        info = bench.describe()
        assert all(device["open"] for device in info["devices"].values())
        frame = bench.snap(tmp_path / "frame.h5")
        assert frame.shape == bench.camera.resolution
        if bench.laser is not None:
            assert not bench.laser.enabled
        if bench.shutter is not None:
            assert bench.shutter.confirm_closed()
