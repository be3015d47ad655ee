"""Seed statistics and the plain-language verdict of a KD comparison.

With a handful of seeds, the honest statement is Welch's t-test: the
difference of the means, its standard error, the Welch–Satterthwaite degrees
of freedom, the two-sided p-value and the 95 % confidence interval of the
difference. A difference is called "better" or "worse" only at p < `ALPHA`;
otherwise it is reported as no effect beyond the spread, whichever side it
favours. (Twice the standard error, the old rule, is p ≈ 0.1–0.2 at 3 seeds.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats as _scipy_stats

ALPHA = 0.05
"""A difference counts once Welch's two-sided p-value is below this."""
CONFIDENCE = 0.95
"""Level of the reported interval of the difference."""


@dataclass(frozen=True)
class Spread:
    """Mean ± sample standard deviation of one configuration over its seeds."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f} (n={self.n})"


def spread(values: Sequence[float]) -> Spread:
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("no values")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return Spread(mean, std, len(vals), vals)


@dataclass(frozen=True)
class Comparison:
    """`treated` against `control` (e.g. KD against no KD) in accuracy points."""

    control: Spread
    treated: Spread
    difference: float
    standard_error: float
    verdict: str
    """"better", "worse", "no difference beyond the spread" or "too few seeds to tell"."""
    dof: float = math.nan
    """Welch–Satterthwaite degrees of freedom."""
    p_value: float = math.nan
    """Two-sided p-value of Welch's t-test."""
    interval: tuple[float, float] = (math.nan, math.nan)
    """`CONFIDENCE` interval of the difference (treated − control)."""

    def as_dict(self) -> dict:
        return {"control": self.control.as_dict(), "treated": self.treated.as_dict(),
                "difference": self.difference, "standard_error": self.standard_error, "verdict": self.verdict,
                "dof": self.dof, "p_value": self.p_value, "interval": list(self.interval)}

    def sentence(self, treated: str = "KD", control: str = "no KD") -> str:
        d, se = 100 * self.difference, 100 * self.standard_error
        if self.verdict == "better":
            head = f"{treated} beats {control}"
        elif self.verdict == "worse":
            head = f"{treated} is worse than {control}"
        elif self.verdict == "too few seeds to tell":
            head = f"{treated} against {control}: too few seeds to tell"
        else:
            head = f"{treated} does not differ from {control} beyond the seed spread"
        if math.isnan(self.p_value):
            return f"{head}: {d:+.2f} points (standard error {se:.2f}, n={self.treated.n}/{self.control.n})"
        lo, hi = (100 * v for v in self.interval)
        return (f"{head}: {d:+.2f} points, {100 * CONFIDENCE:.0f} % interval [{lo:+.2f}, {hi:+.2f}], "
                f"p = {self.p_value:.2g} (Welch, {self.dof:.1f} dof, n={self.treated.n}/{self.control.n})")


def compare(control: Sequence[float], treated: Sequence[float]) -> Comparison:
    """Welch's t-test of treated against control, its interval, and a verdict at p < `ALPHA`."""
    c, t = spread(control), spread(treated)
    diff = t.mean - c.mean
    if c.n < 2 or t.n < 2:
        se = math.sqrt((c.std**2 / c.n if c.n > 1 else 0.0) + (t.std**2 / t.n if t.n > 1 else 0.0))
        return Comparison(c, t, diff, se, "too few seeds to tell")
    vc, vt = c.std**2 / c.n, t.std**2 / t.n
    se = math.sqrt(vc + vt)
    if se == 0.0:  # identical seeds on both sides: the t statistic is undefined
        verdict = "no difference beyond the spread" if diff == 0 else ("better" if diff > 0 else "worse")
        p = 1.0 if diff == 0 else 0.0
        return Comparison(c, t, diff, se, verdict, math.inf, p, (diff, diff))
    dof = (vc + vt) ** 2 / (vc**2 / (c.n - 1) + vt**2 / (t.n - 1))
    p = float(2 * _scipy_stats.t.sf(abs(diff) / se, dof))
    half = float(_scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * se
    if p < ALPHA:
        verdict = "better" if diff > 0 else "worse"
    else:
        verdict = "no difference beyond the spread"
    return Comparison(c, t, diff, se, verdict, dof, p, (diff - half, diff + half))


#: columns of a comparison table; `comparison_row` fills one from `Comparison.as_dict()`
COMPARISON_COLUMNS = ["comparison", "treated", "control", "Δ points", "95 % interval", "p (Welch)", "verdict"]


def comparison_row(c: dict) -> list:
    """One table row for a stored comparison (older reports without p-values show "–")."""
    interval = c.get("interval")
    p = c.get("p_value")
    has_test = p is not None and not math.isnan(p)
    return [c["what"], c["treated_arm"], c["control_arm"], f"{100 * c['difference']:+.2f}",
            f"[{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}]" if has_test and interval else "–",
            f"{p:.2g}" if has_test else "–", c["verdict"]]


def restate(stored: dict, treated: str | None = None, control: str | None = None) -> dict:
    """A stored comparison (`Comparison.as_dict()` plus labels) recomputed from its per-seed
    values with today's test, so reports written before a change of test read the same way."""
    c = compare(stored["control"]["values"], stored["treated"]["values"])
    treated = treated or stored.get("treated_arm", "KD")
    control = control or stored.get("control_arm", "no KD")
    return {**stored, **c.as_dict(), "sentence": c.sentence(treated, control)}
