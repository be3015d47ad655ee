"""`poisson_exact`, the table-driven inversion sampler of the camera's shot noise:
the counts follow the Poisson pmf exactly (chi-square at fixed means on and off
the table's grid, from 0 to above the table), the table's bounds bracket the exact
quantile, the unsettled draws are the exact quantile, and a seed gives the same
counts for any thread count and either route."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import labrig.optics.camera as camera
from labrig.optics.camera import (
    TABLE_CELLS,
    TABLE_MAX_MEAN,
    TABLE_STEPS_PER_E,
    _settle,
    poisson_exact,
    quantile_table,
    sample_poisson,
)


def _quantile(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """min{k : u < F(k; lam)}, the inversion every exact sampler of this kind draws."""
    return stats.poisson.ppf(u, lam).astype(np.int64) if np.all(lam > 0) else np.where(
        lam > 0, stats.poisson.ppf(u, np.maximum(lam, 1e-300)), 0).astype(np.int64)


@pytest.mark.parametrize("lam", [0.0, 1e-3, 0.3337, 0.5, 2.71828, 3.0, 14.99, 15.0, 39.123, 40.0,
                                 TABLE_MAX_MEAN - 1e-3, float(TABLE_MAX_MEAN), 500.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_counts_follow_the_poisson_pmf(lam: float, dtype: torch.dtype) -> None:
    """Chi-square of 200,000 counts against the pmf (bins with fewer than 20 expected
    merged into the tails), and no count that the mean makes impossible."""
    n = 200_000
    x = poisson_exact(torch.full((n,), lam, dtype=dtype), torch.Generator().manual_seed(int(lam * 1000) + 3))
    assert x.dtype == dtype and bool(torch.all(x == x.round())) and float(x.min()) >= 0
    k = x.long().numpy()
    if lam == 0:
        assert not k.any()
        return
    lam = float(torch.tensor(lam, dtype=dtype))  # the mean the sampler saw
    lo, hi = int(stats.poisson.ppf(1e-4, lam)), int(stats.poisson.ppf(1 - 1e-4, lam))
    edges = np.arange(lo, hi + 1)
    expected = n * stats.poisson.pmf(edges, lam)
    expected[0] = n * stats.poisson.cdf(lo, lam)
    expected[-1] = n * stats.poisson.sf(hi - 1, lam)
    observed = np.bincount(np.clip(k, lo, hi) - lo, minlength=len(edges)).astype(float)
    # merge small bins from the ends inwards
    keep_o, keep_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 20:
            keep_o.append(acc_o)
            keep_e.append(acc_e)
            acc_o = acc_e = 0.0
    if keep_e:
        keep_o[-1] += acc_o
        keep_e[-1] += acc_e
    if len(keep_e) < 2:  # everything in one bin (a tiny mean): compare P(0) instead
        p0 = np.exp(-lam)
        assert abs((k == 0).mean() - p0) < 5 * np.sqrt(p0 * (1 - p0) / n) + 1e-12
        return
    chi2 = float(((np.array(keep_o) - np.array(keep_e)) ** 2 / np.array(keep_e)).sum())
    assert stats.chi2.sf(chi2, len(keep_e) - 1) > 1e-4, (lam, chi2, len(keep_e))


def test_table_bounds_bracket_the_exact_quantile() -> None:
    """For means and uniforms at random: low(b, j) <= quantile <= low(b + 1, j + 1), and
    a settled entry is the quantile itself (the whole decision for most pixels)."""
    low, settled, _ = quantile_table(TABLE_MAX_MEAN, TABLE_STEPS_PER_E, TABLE_CELLS)
    rng = np.random.default_rng(0)
    lam = rng.uniform(0, TABLE_MAX_MEAN, 200_000)
    u = rng.uniform(0, 1, lam.size)
    exact = _quantile(lam, u)
    b = np.floor(lam * TABLE_STEPS_PER_E).astype(np.int64)
    j = np.floor(u * TABLE_CELLS).astype(np.int64)
    at = b * TABLE_CELLS + j
    lower = low.numpy()[at].astype(np.int64)
    assert np.all(lower <= exact)
    s = settled.numpy()[at].astype(np.int64)
    sure = s != 255
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(s[sure], exact[sure])
    # the upper bound: the next row's entry at the next cell (when it is one)
    nxt = low.numpy()[np.minimum(at + TABLE_CELLS + 1, low.numel() - 1)].astype(np.int64)
    inner = (j < TABLE_CELLS - 1) & (b < TABLE_MAX_MEAN * TABLE_STEPS_PER_E - 1)
    assert np.all(exact[inner] <= nxt[inner])


def test_unsettled_draws_are_the_exact_quantile() -> None:
    """`_settle` from the table's lower bound (or from 0, the bottom cell's bound, which
    walks furthest) lands on min{k : u < F(k; mean)} for means on and off the grid."""
    low, _, cdf = quantile_table(TABLE_MAX_MEAN, TABLE_STEPS_PER_E, TABLE_CELLS)
    rng = np.random.default_rng(1)
    lam = np.concatenate([rng.uniform(0, TABLE_MAX_MEAN, 3000), np.arange(0, TABLE_MAX_MEAN, 0.5)])
    u = rng.uniform(0, 1, lam.size)
    u[:20] = rng.uniform(0, 1 / TABLE_CELLS, 20)  # the end cells
    u[20:40] = 1 - rng.uniform(0, 1 / TABLE_CELLS, 20)
    exact = _quantile(lam, u)
    flat = torch.from_numpy(lam)
    for start in ("table", "zero"):
        if start == "table":
            at = np.floor(lam * TABLE_STEPS_PER_E).astype(np.int64) * TABLE_CELLS + np.floor(u * TABLE_CELLS).astype(np.int64)
            k = low[torch.from_numpy(at)]
        else:
            k = torch.zeros(lam.size, dtype=torch.uint8)
        out = torch.full((lam.size,), -1.0, dtype=torch.float64)
        _settle(flat, out, torch.arange(lam.size), torch.from_numpy(u), k, cdf, TABLE_STEPS_PER_E)
        np.testing.assert_array_equal(out.long().numpy(), exact)


def test_a_seed_gives_the_same_counts_by_either_route_and_thread_count() -> None:
    """A frame-like set (mostly dim: the table) and a bright one (`torch.poisson`) drawn
    twice with one seed, at 1 and 2 threads: equal; the bright route is torch's own draw."""
    gen = torch.Generator().manual_seed(2)
    dim = torch.rand(64, 64, 64, generator=gen) ** 4 * 200  # ~80 % below the table's top
    bright = torch.rand(1, 10_000, generator=gen) * 1000 + 100
    threads = torch.get_num_threads()
    try:
        draws = []
        for t in (1, 2):
            torch.set_num_threads(t)
            draws.append([sample_poisson(m, torch.Generator().manual_seed(5)) for m in (dim, bright)])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*draws, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(draws[0][1], torch.poisson(bright, generator=torch.Generator().manual_seed(5)))
    assert (dim < TABLE_MAX_MEAN).float().mean() > camera.TABLE_MIN_FRACTION


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_invalid_means_raise_as_in_torch(bad: float) -> None:
    mean = torch.full((1000,), 2.0)
    mean[500] = bad
    with pytest.raises((ValueError, RuntimeError)):
        torch.poisson(mean)
    with pytest.raises(ValueError, match="non-negative"):
        poisson_exact(mean)
