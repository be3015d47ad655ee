"""From a trained student to what a bench shows and reads, and running it.

- `compile_program(student, profile, calibration_images) -> Program`: masks as
  filter-SLM gray levels (spatial or time multiplexed, with the reason), tile
  layout and camera ROIs, input encoding, exposure, back-end weights and the
  twin's expected outputs for a few reference images.
- `save_program` / `load_program`: one HDF5 file with a schema version,
  loadable without the training code; `check_fits` refuses a program that
  does not fit a bench.
- `run_program(bench, program, images, out_path)`: stream images through a
  bench, pipelined and resumable, into an HDF5 run file (`RunResult`).
- `compile_checkpoint` and `run_and_report` (`engine`): the two jobs as the CLI
  and the console both call them, with progress and cancel.
"""

from labrig.deploy.compiler import compile_program
from labrig.deploy.engine import (
    RunOutcome,
    StudentCheckpoint,
    compile_checkpoint,
    load_student,
    run_and_report,
)
from labrig.deploy.errors import (
    Cancelled,
    LightOff,
    ProgramError,
    ProgramMismatch,
    RunAborted,
    RunFileError,
)
from labrig.deploy.fit import check_fits, misfits
from labrig.deploy.kernels import CompiledFrontEnd, compile_kernels, place_inputs, read_tiles
from labrig.deploy.program import SCHEMA_VERSION, Program
from labrig.deploy.result import RunResult, format_result, write_report
from labrig.deploy.run import run_program
from labrig.deploy.runfile import read_run
from labrig.deploy.show import format_program, save_program_png
from labrig.deploy.store import load_program, program_hash, save_program

__all__ = [
    "SCHEMA_VERSION",
    "Cancelled",
    "CompiledFrontEnd",
    "LightOff",
    "Program",
    "ProgramError",
    "ProgramMismatch",
    "RunAborted",
    "RunFileError",
    "RunOutcome",
    "RunResult",
    "StudentCheckpoint",
    "check_fits",
    "compile_checkpoint",
    "compile_kernels",
    "compile_program",
    "format_program",
    "format_result",
    "load_program",
    "load_student",
    "misfits",
    "place_inputs",
    "program_hash",
    "read_run",
    "read_tiles",
    "run_and_report",
    "run_program",
    "save_program",
    "save_program_png",
    "write_report",
]
