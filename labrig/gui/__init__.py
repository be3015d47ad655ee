"""The operator console: a PySide6 + pyqtgraph front end over the same engine as the CLI.

Start it with ``labrig gui [--profile P]``. Importing this package needs the
``gui`` extra (``pip install -e ".[gui]"``); the engine never imports it.
"""

from __future__ import annotations

__all__ = ["run_console"]


def run_console(profile: str | None = None, *, connect: bool = True) -> int:
    """Open the console on `profile` (default: the simulated bench) until it is closed."""
    from labrig.gui.app import run_console as _run

    return _run(profile, connect=connect)
