"""Thorlabs SC10 shutter controller over its serial (RS-232 / USB) ASCII interface.

The protocol, as the SC10 manual documents it: 9600 baud 8N1, no flow control;
a command is ASCII text ended by a carriage return; the controller echoes the
command, sends the reply (if any) ended by a carriage return, then the prompt
``"> "``. For example ``ens?\\r`` is answered ``ens?\\r1\\r> ``. Errors come back
as ``CMD_NOT_DEFINED`` or ``CMD_ARG_INVALID`` in place of the reply.

Commands used here: ``id?`` (model and firmware), ``mode=1`` / ``mode?`` (manual
mode, where ``ens`` drives the shutter), ``ens?`` (1 when enabled = open),
``ens`` (toggle enable), ``closed?`` (1 when the shutter reports closed) and
``interlock?`` (1 when the interlock is tripped). Because ``ens`` toggles, it is
never retried blindly: the driver reads the state back and decides.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from drivers.base import Shutter
from drivers.config import Section
from drivers.errors import DeviceDisconnected, DeviceError, SafetyError
from drivers.plugin import DeviceContext
from drivers.vendors.serial.transport import (
    GarbledReply,
    Protocol,
    Refused,
    SerialTransport,
    decode_ascii,
    transport_from_section,
)

__all__ = ["SC10Protocol", "ThorlabsSC10"]

log = logging.getLogger(__name__)

PROMPT = b"> "
ERRORS = ("CMD_NOT_DEFINED", "CMD_ARG_INVALID")
MANUAL_MODE = 1


class SC10Protocol(Protocol):
    """Echo, reply, prompt: ``<command>\\r[<reply>\\r]> ``."""

    terminator = b"\r"

    def complete(self, command: str, received: bytes) -> bool:
        """Echo, reply, prompt. A clean reply to another command (late, after a timeout or
        an interruption) is read past, so the next one can be ours."""
        if not received.endswith(PROMPT):
            return False
        last = received[: -len(PROMPT)].rsplit(PROMPT, 1)[-1]
        echo = last.split(b"\r", 1)[0].decode("ascii", "replace")
        stale = echo != command and echo.isprintable() and "\ufffd" not in echo
        return not stale

    def parse(self, command: str, reply: bytes) -> str:
        text = decode_ascii(reply)[: -len(PROMPT)].rsplit(PROMPT.decode(), 1)[-1]  # our reply only
        lines = [line.strip("\n") for line in text.split("\r")]
        while lines and not lines[-1]:
            lines.pop()
        if not lines or lines[0] != command:
            raise GarbledReply(f"expected the echo {command!r}, got {text!r}")
        payload = "\n".join(line for line in lines[1:] if line)
        if payload in ERRORS:
            raise Refused(f"SC10 refused {command!r}: {payload}")
        return payload


def _flag(text: str) -> bool:
    """A 0/1 reply; anything else is garbled (ValueError)."""
    if text not in ("0", "1"):
        raise ValueError(f"expected 0 or 1, got {text!r}")
    return text == "1"


class ThorlabsSC10(Shutter):
    """The SC10 in manual mode as a beam shutter: closed is safe, and is confirmed.

    Opening and closing read ``ens?`` and ``closed?`` back until both agree with
    the request (or `confirm_timeout_s` passes), so the safety guard never
    enables a laser on a shutter that only *was told* to close.
    """

    def __init__(
        self,
        transport: SerialTransport,
        *,
        name: str = "Thorlabs SC10",
        confirm_timeout_s: float = 1.0,
    ) -> None:
        super().__init__(name)
        self.transport = transport
        self.confirm_timeout_s = float(confirm_timeout_s)
        self._id = ""

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> ThorlabsSC10:
        name = f"SC10 shutter ({context.role})"
        transport = transport_from_section(section, SC10Protocol(), name=name, baudrate=9600)
        confirm = section.get_float("confirm_timeout_s", 1.0, positive=True)
        section.check_unused()
        return cls(transport, name=name, confirm_timeout_s=confirm)

    # -- description ------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        return {"vendor": "Thorlabs", "model": "SC10", "serial": "", "firmware": self._id,
                "port": self.transport.url}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "mode": "manual"}

    # -- queries ------------------------------------------------------------------------------
    def enabled(self) -> bool:
        """``ens?``: True when the controller holds the shutter open."""
        return self.transport.query("ens?", _flag)

    def reports_closed(self) -> bool:
        """``closed?``: True when the shutter reports closed."""
        return self.transport.query("closed?", _flag)

    def interlock_tripped(self) -> bool:
        return self.transport.query("interlock?", _flag)

    # -- hooks --------------------------------------------------------------------------------
    def _open_hw(self) -> None:
        self.transport.open()
        try:
            ident = self.transport.request("id?")
            if "SC10" not in ident.upper():
                raise DeviceError(
                    f"{self.name}: {self.transport.url} answered 'id?' with {ident!r}, "
                    "which is not an SC10 (wrong port?)"
                )
            self._id = ident
            self.transport.request(f"mode={MANUAL_MODE}")
            mode = self.transport.query("mode?", int)
            if mode != MANUAL_MODE:
                raise DeviceError(f"{self.name}: asked for manual mode, controller reports mode {mode}")
            self._set_shutter_hw(False)
        except BaseException:
            self.transport.close()
            raise

    def _close_hw(self) -> None:
        try:
            super()._close_hw()  # closes the shutter
        finally:
            self.transport.close()

    def _closed_hw(self) -> bool:
        return self.reports_closed() and not self.enabled()

    def _set_shutter_hw(self, open_: bool) -> None:
        if open_:
            if self.interlock_tripped():
                raise SafetyError(f"{self.name}: the SC10 interlock is tripped; not opening")
            if self.transport.query("mode?", int) != MANUAL_MODE:  # changed at the front panel?
                self.transport.request(f"mode={MANUAL_MODE}")  # else 'ens' would start a cycle
        for _ in range(2):  # a toggle lost on the line is sent once more, after a read-back
            if self.enabled() == open_:
                break
            try:
                self.transport.request("ens", retry=False)
            except (DeviceDisconnected, Refused):
                raise
            except DeviceError as exc:  # garbled or silent: the read-back decides
                log.warning("%s: reply to 'ens' lost (%s); reading the state back", self.name, exc)
        self._confirm(open_)

    def _confirm(self, open_: bool) -> None:
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            enabled, closed = self.enabled(), self.reports_closed()
            if enabled == open_ and closed != open_:
                return
            if time.monotonic() >= deadline:
                state = f"ens?={int(enabled)}, closed?={int(closed)}"
                if open_:
                    raise DeviceError(f"{self.name}: shutter did not confirm open within "
                                      f"{self.confirm_timeout_s:g} s ({state})")
                raise SafetyError(f"{self.name}: shutter did not confirm closed within "
                                  f"{self.confirm_timeout_s:g} s ({state})")
            time.sleep(0.01)
