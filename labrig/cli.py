"""The ``labrig`` command: wires the command modules of `labrig.commands` together.

Expected failures (a bad profile, a device timeout: anything derived from
`LabrigError`, or an OS error such as a missing directory) print one line,
``labrig: error: <message>``, and exit with status 2; ``--debug`` shows the
traceback. Logic lives in the engine, never here, so the GUI can share it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

import labrig
from drivers.errors import LabrigError
from labrig.commands import COMMAND_MODULES

__all__ = ["EXIT_ERROR", "build_parser", "main"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labrig",
        description="Hybrid optical-electronic neural networks on a 4f optical bench.",
    )
    parser.add_argument("--version", action="version", version=f"labrig {labrig.__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show tracebacks and debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status instead of calling sys.exit."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("labrig: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (LabrigError, OSError) as exc:
        if debug:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"labrig: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
