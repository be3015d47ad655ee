"""Subcommands of the ``labrig`` CLI, one module per command group.

A command module exposes ``add_parser(subparsers)``: it adds its parser(s) and
sets ``handler=<callable(args) -> int>`` with ``set_defaults``. To add a
command, write the module and list it in `COMMAND_MODULES`. Import heavy
dependencies inside handlers so ``labrig --help`` stays fast.
"""

from __future__ import annotations

import argparse

__all__ = ["COMMAND_MODULES", "add_profile_option", "common_options"]

COMMAND_MODULES: tuple[str, ...] = ("labrig.commands.bench", "labrig.commands.demo", "labrig.commands.experiment",
                                     "labrig.commands.deploy", "labrig.commands.calibrate", "labrig.commands.finetune",
                                     "labrig.commands.gui")


def common_options() -> argparse.ArgumentParser:
    """A parent parser with the options every leaf command accepts (``--debug``).

    The default is SUPPRESS so a ``--debug`` given before the subcommand survives.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logging")
    return parent


def add_profile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", "-p", default=None, metavar="P",
        help="bench profile: an embedded name (sim, sim-ideal) or a .toml file (default: sim)",
    )
