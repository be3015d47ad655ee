"""The per-tile readout correction the compiler fits through a calibration (`labrig.deploy.correction`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import program

from labrig.deploy import load_program, save_program
from labrig.deploy.correction import apply_correction, fit_correction
from labrig.deploy.program import flatten
from labrig.deploy.readout import TileReader
from labrig.hil import TwinTiles
from labrig.optics.imperfections import Imperfections
from labrig.optics.system import Twin


def _known(channels: int, kernel: int, seed: int = 0) -> dict[str, np.ndarray]:
    """An asymmetric filter per tile (so a flipped or transposed fit would show) and an offset."""
    g = np.random.default_rng(seed)
    weight = g.normal(0, 0.2, (channels, kernel, kernel))
    weight[:, kernel // 2, kernel // 2] += 1
    weight[:, 0, -1] += 0.5
    return {"weight": weight.astype(np.float32), "bias": g.normal(0, 0.3, channels).astype(np.float32)}


def test_the_fit_recovers_a_known_filter_and_offset_in_the_orientation_it_applies_them() -> None:
    g = np.random.default_rng(1)
    measured = g.gamma(2.0, 1.0, (24, 3, 10, 12))
    truth = _known(3, 3)
    with torch.no_grad():
        target = apply_correction(torch.from_numpy(measured), truth).numpy()
    fitted = fit_correction(measured, target, 3, ridge=1e-10)
    np.testing.assert_allclose(fitted["weight"], truth["weight"], atol=1e-4)
    np.testing.assert_allclose(fitted["bias"], truth["bias"], atol=1e-4)


def test_tiles_that_already_match_get_the_identity_and_a_strong_pull_keeps_it() -> None:
    g = np.random.default_rng(2)
    measured = g.gamma(2.0, 1.0, (16, 2, 8, 8))
    same = fit_correction(measured, measured, 5)
    identity = np.zeros((2, 5, 5), np.float32)
    identity[:, 2, 2] = 1
    np.testing.assert_allclose(same["weight"], identity, atol=1e-5)
    np.testing.assert_allclose(same["bias"], 0, atol=1e-5)
    pulled = fit_correction(measured, 3 * measured, 3, ridge=1e6)  # the data asks for a gain of 3
    assert abs(float(pulled["weight"][0, 1, 1]) - 1) < 0.01


def test_mixing_recovers_a_known_tile_to_tile_filter_and_starts_from_the_identity() -> None:
    g = np.random.default_rng(3)
    measured = g.gamma(2.0, 1.0, (24, 3, 10, 12))
    weight = g.normal(0, 0.2, (3, 3, 3, 3))
    weight[:, :, 0, -1] += 0.3  # asymmetric: a flipped or transposed fit would show
    truth = {"weight": weight.astype(np.float32), "bias": g.normal(0, 0.3, 3).astype(np.float32)}
    with torch.no_grad():
        target = apply_correction(torch.from_numpy(measured), truth).numpy()
    fitted = fit_correction(measured, target, 3, ridge=1e-10, mix=True)
    assert fitted["weight"].shape == (3, 3, 3, 3)
    np.testing.assert_allclose(fitted["weight"], truth["weight"], atol=1e-4)
    np.testing.assert_allclose(fitted["bias"], truth["bias"], atol=1e-4)
    same = fit_correction(measured, measured, 3, mix=True)
    identity = np.zeros((3, 3, 3, 3), np.float32)
    identity[range(3), range(3), 1, 1] = 1
    np.testing.assert_allclose(same["weight"], identity, atol=1e-5)


def test_mixing_gives_back_what_one_channel_lost_and_the_per_tile_filter_cannot() -> None:
    """Tile 0 measured blurred beyond a 1 x 1 fix (its design lost), tile 1 still carries it: only
    the mixing correction brings tile 0 back."""
    g = np.random.default_rng(4)
    scene = np.pad(g.gamma(2.0, 1.0, (32, 10, 10)), ((0, 0), (2, 2), (2, 2)))  # dark borders: shifts stay inside
    wanted = np.stack([scene, np.roll(scene, 1, axis=-1)], axis=1)
    measured = np.stack([0.5 * (scene + np.roll(scene, 2, axis=-1)), np.roll(scene, 1, axis=-1)], axis=1)
    errors = {}
    for mix in (False, True):
        c = fit_correction(measured[:24], wanted[:24], 3, mix=mix)
        with torch.no_grad():
            got = apply_correction(torch.from_numpy(measured[24:]), c).numpy()
        errors[mix] = float(np.linalg.norm(got[:, 0] - wanted[24:, 0]) / np.linalg.norm(wanted[24:, 0]))
    assert errors[True] < 0.05 < 0.3 < errors[False], errors


@pytest.mark.parametrize("kernel", [0, 2, -1])
def test_an_even_or_empty_kernel_is_refused(kernel: int) -> None:
    x = np.ones((2, 1, 4, 4))
    with pytest.raises(ValueError, match="odd and positive"):
        fit_correction(x, x, kernel)


def _corrected_program():
    p = program()
    return dataclasses.replace(p, readout=dataclasses.replace(p.readout, correction=_known(p.multiplexing.channels, 3)))


def test_bench_tiles_and_twin_tiles_get_the_same_correction() -> None:
    p = _corrected_program()
    geometry = p.bench_geometry()
    twin = Twin(geometry, Imperfections(geometry, slm_lut=torch.as_tensor(p.filter.lut)), dtype=torch.float64)
    raw = np.random.default_rng(3).uniform(0, 900, (5, p.multiplexing.channels, *p.readout.tile_shape))
    from_bench = TileReader(p).signal(raw, np.float64)
    from_twin = TwinTiles(p, twin).signal(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(from_bench, from_twin, rtol=1e-10, atol=1e-10)
    plain = TileReader(program()).signal(raw, np.float64)
    assert not np.allclose(from_bench, plain)  # the correction is applied, not ignored


def test_the_correction_survives_a_save_and_a_program_without_one_stores_nothing(tmp_path: Path) -> None:
    p = _corrected_program()
    q = load_program(save_program(p, tmp_path / "corrected.h5"))
    assert q.digest() == p.digest()
    for key in ("weight", "bias"):
        np.testing.assert_array_equal(q.readout.correction[key], p.readout.correction[key])
    plain = load_program(save_program(program(), tmp_path / "plain.h5"))
    assert plain.readout.correction == {}
    assert not [k for k in flatten(plain)[1] if k.startswith("readout/correction")]
