"""What every calibration routine is: a procedure over the device protocols and the twin.

A routine (one module each in `calibration/`) measures frames through a `Probe`
(light on, patterns shown, frames checked), fits some of the twin's named
imperfections, and returns a `RoutineResult`: the values it estimated, the
extra products it measured (a dark frame, an inverse LUT), a residual that
says how well its model explains its frames, and the number of frames it took.
It never sees the simulator's truth: what it knows comes from the camera.

The orchestrator (`calibration.session`) runs routines in order and writes
each result into the twin before the next routine runs, so later routines
start from earlier estimates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.errors import LabrigError

if TYPE_CHECKING:  # type-only: calibration sits above bench and optics
    from labrig.bench.bench import Bench
    from labrig.optics.system import Twin

#: progress(done, total, message): called often; total may change as a routine learns
Progress = Callable[[int, int, str], None]
#: cancel(): True once the operator asked to stop
Cancel = Callable[[], bool]


class CalibrationError(LabrigError):
    """A routine could not produce a trustworthy result; says which routine and why."""

    def __init__(self, routine: str, message: str) -> None:
        super().__init__(f"calibration routine {routine!r}: {message}")
        self.routine = routine
        self.reason = message


class CalibrationCancelled(CalibrationError):
    """The operator cancelled; nothing was written."""

    def __init__(self, routine: str) -> None:
        super().__init__(routine, "cancelled")


@dataclass
class RoutineResult:
    """What one routine measured and estimated.

    `values` maps imperfection names (the twin's table) to estimates in the
    table's units; `products` holds measured data the compiler or later
    routines use (e.g. ``dark_dn`` frames, an ``inverse_lut``); `plot` holds
    the arrays its figure draws; `residual` is the routine's quality figure in
    `residual_unit` (smaller is better; `residual_limit` is where it fails).
    """

    routine: str
    values: dict[str, Any]
    residual: float
    residual_unit: str
    frames: int
    products: dict[str, Any] = field(default_factory=dict)
    plot: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if not np.isfinite(self.residual):
            raise CalibrationError(self.routine, f"residual is {self.residual} (the fit did not converge)")


class Routine(ABC):
    """One calibration procedure. Subclasses set the class attributes and implement `run`.

    `estimates`: imperfection names it writes; `after`: routines whose results it
    needs in the twin first; `frames_hint`: the frames it takes (documentation,
    and the orchestrator's progress total).
    """

    name: str = ""
    title: str = ""
    estimates: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    frames_hint: int = 0

    @abstractmethod
    def run(self, bench: Bench, twin: Twin, *, progress: Progress | None = None,
            cancel: Cancel | None = None) -> RoutineResult:
        """Measure, fit, and return the estimates; raise `CalibrationError` on bad light or a bad fit."""

    def plot(self, result: RoutineResult, ax: Any) -> None:  # noqa: B027 - optional
        """Draw the result's figure on a matplotlib Axes (default: its residual as text)."""
        ax.text(0.5, 0.5, f"{self.title or self.name}\nresidual {result.residual:.3g} {result.residual_unit}",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()


def no_progress(done: int, total: int, message: str) -> None:
    """The default `Progress`: nothing shown."""


def never_cancel() -> bool:
    return False
