"""Seed statistics and the plain-language verdict of a KD comparison.

With a handful of seeds, the honest statement is the difference of the means
against its standard error (Welch): a difference within twice the standard
error is reported as no effect beyond the spread, whichever side it favours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

SIGNIFICANCE = 2.0
"""A difference counts once it exceeds this many standard errors."""


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
    """"better", "worse" or "no difference beyond the spread"."""

    def as_dict(self) -> dict:
        return {"control": self.control.as_dict(), "treated": self.treated.as_dict(),
                "difference": self.difference, "standard_error": self.standard_error, "verdict": self.verdict}

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
        return f"{head}: {d:+.2f} points (standard error {se:.2f}, n={self.treated.n}/{self.control.n})"


def compare(control: Sequence[float], treated: Sequence[float]) -> Comparison:
    """Difference of means with its Welch standard error and a verdict at `SIGNIFICANCE` SEs."""
    c, t = spread(control), spread(treated)
    diff = t.mean - c.mean
    se = math.sqrt((c.std**2 / c.n if c.n > 1 else 0.0) + (t.std**2 / t.n if t.n > 1 else 0.0))
    if c.n < 2 or t.n < 2:
        verdict = "too few seeds to tell"
    elif abs(diff) > SIGNIFICANCE * se and diff > 0:
        verdict = "better"
    elif abs(diff) > SIGNIFICANCE * se:
        verdict = "worse"
    else:
        verdict = "no difference beyond the spread"
    return Comparison(c, t, diff, se, verdict)
