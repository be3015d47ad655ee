"""Energy per image: assumed part powers times the time each part is needed."""

from __future__ import annotations

import pytest

from labrig.experiments.energy import DEFAULT_POWERS, PowerFigure, energy_per_image, powers_table

POWERS = {"laser": PowerFigure(2.0, "laser", "test"), "input": PowerFigure(3.0, "dmd", "test"),
          "filter": PowerFigure(5.0, "slm", "test"), "camera": PowerFigure(1.5, "cam", "test"),
          "host": PowerFigure(40.0, "cpu", "test")}


def test_hybrid_energy_is_bench_power_times_frames_plus_host_work() -> None:
    flops = {"hybrid": 2e7}  # 2 ms at 10 GFLOP/s
    e = energy_per_image("hybrid", flops, frame_s=0.001, frames=4, powers=POWERS, host_rate_flops=1e10)
    assert e["laser"] == pytest.approx(2.0 * 0.004)
    assert e["filter"] == pytest.approx(5.0 * 0.004)
    assert e["host"] == pytest.approx(40.0 * 0.002)
    assert e["total"] == pytest.approx((2.0 + 3.0 + 5.0 + 1.5) * 0.004 + 0.08)


def test_electronic_energy_is_host_only_and_binned_hybrids_count_the_bench() -> None:
    flops = {"teacher": 5e9, "hybrid_bin4": 1e6}
    assert energy_per_image("teacher", flops, 0.001, powers=POWERS, host_rate_flops=1e10) == {
        "host": 20.0, "total": 20.0}
    binned = energy_per_image("hybrid_bin4", flops, 0.001, powers=POWERS, host_rate_flops=1e10)
    assert binned["total"] == pytest.approx(11.5e-3 + 40.0 * 1e-4)
    with pytest.raises(ValueError, match="host rate"):
        energy_per_image("teacher", flops, 0.001, host_rate_flops=0)


def test_the_assumed_figures_carry_a_source_and_refuse_negative_power() -> None:
    rows = powers_table()
    assert {r["key"] for r in rows} == set(DEFAULT_POWERS) and all(r["source"] for r in rows)
    with pytest.raises(ValueError, match="laser: power must be >= 0"):
        PowerFigure(-1.0, "laser", "x")
