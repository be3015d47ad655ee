"""What can go wrong between a trained student and a finished run, as typed errors.

All are `LabrigError`s, so the CLI prints them as one line and the GUI can
show them; each message names the file or the mismatch.
"""

from __future__ import annotations

from typing import Any

from drivers.errors import LabrigError


class ProgramError(LabrigError, ValueError):
    """A program file is missing, unreadable, truncated, of another schema, or cannot be compiled."""


class ProgramMismatch(ProgramError):
    """A program does not fit the bench it is about to run on; `problems` lists each misfit."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class RunFileError(LabrigError, ValueError):
    """A run file cannot be read or resumed (another program, other images, corrupt)."""


class RunAborted(LabrigError):
    """A run stopped on a device fault. The shutter was closed and the run file holds
    every image measured so far; `result` is the partial `RunResult`."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class Cancelled(LabrigError):
    """The operator cancelled a job (a compile) before it finished; nothing was written."""


class LightOff(LabrigError):
    """The light went off under a run (the bench was made safe, or the laser or shutter
    reports off, or the frames sit at the dark level): nothing taken since is data."""
