"""``labrig gui``: the operator console (PySide6 + pyqtgraph) over the same engine as the CLI."""

from __future__ import annotations

import argparse

from drivers.errors import ConfigError
from labrig.commands import add_profile_option, common_options

__all__ = ["add_parser", "cmd_gui"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    gui = subparsers.add_parser("gui", parents=[common_options()],
                                help="open the operator console (needs the gui extra)")
    add_profile_option(gui)
    gui.add_argument("--no-connect", action="store_true",
                     help="open the window without connecting the bench")
    gui.set_defaults(handler=cmd_gui)


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from labrig.gui.app import run_console
    except ImportError as exc:  # PySide6 or pyqtgraph missing: say how to get them
        raise ConfigError(f"the console needs the gui extra (pip install -e '.[gui]'): {exc}") from exc
    return run_console(args.profile or "sim", connect=not args.no_connect)
