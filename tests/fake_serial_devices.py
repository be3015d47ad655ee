"""Fake serial instruments on real pseudo-terminals, for testing drivers through pyserial.

Each fake opens a pty pair (`os.openpty`); the driver opens `fake.port` (the
slave side, a real tty) with pyserial, and a thread on the master side speaks
the instrument's protocol. Faults are switched on per test:

- ``garble(n, command=None)``: the next n replies (to `command`, or to any) get a
  non-ASCII byte in the middle;
- ``ignore_next(command)``: that command is lost on the line once (not executed, no reply);
- ``silent = True``: commands are read and never answered;
- ``vanish()``: the master side is closed, as when a USB adapter is pulled.

`log` records every command received, in order, and `stamped` the same with a
`time.monotonic()` stamp, so tests can check sequences across two instruments
(laser off before the shutter closes, no enable before the interlock was asked).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Iterator


class PtyInstrument:
    """A thread answering commands on the master side of a pty."""

    terminator = b"\r"

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or CR/LF translation before the driver opens it
        self.port = os.ttyname(self._slave)
        self.log: list[str] = []
        self.stamped: list[tuple[float, str]] = []
        self.silent = False
        self._garble = 0
        self._garble_command: str | None = None
        self._ignore: set[str] = set()
        self._stop = threading.Event()
        self._vanish = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    # -- faults -----------------------------------------------------------------------------
    def garble(self, replies: int = 1, command: str | None = None) -> None:
        with self._lock:
            self._garble = replies
            self._garble_command = command

    def ignore_next(self, command: str) -> None:
        with self._lock:
            self._ignore.add(command)

    def received_between(self, command: str, start: float, end: float) -> bool:
        return any(start < stamp < end and received == command for stamp, received in self.stamped)

    def first_after(self, command: str, start: float) -> float:
        """When `command` was first received after `start`; KeyError if never."""
        for stamp, received in self.stamped:
            if stamp > start and received == command:
                return stamp
        raise KeyError(command)

    def last(self, command: str) -> float:
        """When `command` was last received (monotonic seconds); KeyError if never."""
        for stamp, received in reversed(self.stamped):
            if received == command:
                return stamp
        raise KeyError(command)

    def vanish(self) -> None:
        """Close the master side (and our slave fd): the driver's port goes dead."""
        self._vanish.set()
        self._thread.join(timeout=2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- protocol ---------------------------------------------------------------------------
    def handle(self, command: str) -> bytes:
        raise NotImplementedError

    def _reply(self, command: str) -> bytes:
        reply = self.handle(command)
        with self._lock:
            targeted = self._garble_command in (None, command)
            if self._garble > 0 and reply and targeted:
                self._garble -= 1
                middle = len(reply) // 2
                reply = reply[:middle] + b"\x9f" + reply[middle + 1:]
        return reply

    def _commands(self, buffer: bytearray) -> Iterator[str]:
        while True:
            index = buffer.find(self.terminator)
            if index < 0:
                return
            raw = bytes(buffer[:index])
            del buffer[: index + len(self.terminator)]
            yield raw.decode("ascii", "replace").strip("\r\n")

    def _run(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            if self._vanish.is_set():
                for fd in (self._master, self._slave):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                return
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # no one has the slave open right now
                continue
            buffer += chunk
            for command in self._commands(buffer):
                self.log.append(command)
                self.stamped.append((time.monotonic(), command))
                with self._lock:
                    lost = command in self._ignore
                    self._ignore.discard(command)
                if self.silent or lost:
                    continue
                reply = self._reply(command)
                if reply:
                    os.write(self._master, reply)


class FakeSC10(PtyInstrument):
    """A Thorlabs SC10: echo, reply, ``> `` prompt; ``ens`` toggles the shutter."""

    terminator = b"\r"

    def __init__(self, *, ident: str = "THORLABS SC10 VERSION 1.07") -> None:
        self.ident = ident
        self.enabled = False
        self.mode = 1
        self.interlock_tripped = False
        self.stuck_open = False  # the blade sticks: closed? keeps answering 0
        super().__init__()

    @property
    def closed(self) -> bool:
        return not self.enabled and not self.stuck_open

    def handle(self, command: str) -> bytes:
        value = self._answer(command)
        body = command + "\r" + (value + "\r" if value is not None else "")
        return body.encode("ascii") + b"> "

    def _answer(self, command: str) -> str | None:
        if command == "id?":
            return self.ident
        if command == "ens?":
            return str(int(self.enabled))
        if command == "ens":
            if self.mode == 1 and not (self.interlock_tripped and not self.enabled):
                self.enabled = not self.enabled
            return None
        if command == "closed?":
            return str(int(self.closed))
        if command == "interlock?":
            return str(int(self.interlock_tripped))
        if command == "mode?":
            return str(self.mode)
        if command.startswith("mode="):
            arg = command[5:]
            if arg not in {"1", "2", "3", "4", "5"}:
                return "CMD_ARG_INVALID"
            self.mode = int(arg)
            return None
        return "CMD_NOT_DEFINED"


class FakeObis(PtyInstrument):
    """A Coherent OBIS: SCPI commands, ``<value>\\r\\nOK\\r\\n`` or ``ERR-100\\r\\n``."""

    terminator = b"\r\n"

    def __init__(self, *, idn: str = "Coherent, Inc - OBIS 532nm LS 100mW - V1.2.3 - Jan 01 2024",
                 max_power_w: float = 0.1) -> None:
        self.idn = idn
        self.emission = True  # powered up emitting: the driver must switch it off at open
        self.setpoint_w = 0.02
        self.max_power_w = max_power_w
        self.interlock_closed = True
        self.handshaking = True  # off: settings are answered with nothing, queries with the value only
        self.prompt = False  # on: every reply ends with "OBIS> "
        self.mode = "CWP"
        self.fault = "0x00000000"
        self.refuse_emission = False  # a laser fault: SOURce:AM:STATe ON answers ERR-xxx
        super().__init__()

    def handle(self, command: str) -> bytes:
        try:
            value = self._answer(command)
        except ValueError:
            reply = b"ERR-102\r\n"
        else:
            if value is None:
                reply = b"ERR-100\r\n"
            elif not self.handshaking:
                reply = (value + "\r\n").encode("ascii") if value else b""
            else:
                reply = (value + "\r\n" if value else "").encode("ascii") + b"OK\r\n"
        return reply + (b"OBIS> " if self.prompt else b"")

    def _answer(self, command: str) -> str | None:
        upper = command.upper()
        if upper.startswith("SYSTEM:COMMUNICATE:HANDSHAKING "):
            self.handshaking = upper.split()[1] == "ON"
            return ""
        if upper.startswith("SYSTEM:COMMUNICATE:PROMPT "):
            self.prompt = upper.split()[1] == "ON"
            return ""
        if upper == "SYSTEM:ERROR:CLEAR":
            return ""
        if upper == "SYSTEM:FAULT?":
            return self.fault
        if upper == "SOURCE:AM:SOURCE?":
            return self.mode
        if upper.startswith("SOURCE:AM:INTERNAL "):
            self.mode = upper.split()[1]
            return ""
        if upper == "*IDN?":
            return self.idn
        if upper == "SYSTEM:INFORMATION:SNUMBER?":
            return "OBIS-0042"
        if upper == "SYSTEM:LOCK?":
            return "ON" if self.interlock_closed else "OFF"
        if upper == "SOURCE:AM:STATE?":
            return "ON" if self.emission else "OFF"
        if upper.startswith("SOURCE:AM:STATE "):
            arg = upper.split()[1]
            if arg not in ("ON", "OFF"):
                raise ValueError(arg)
            if arg == "ON" and (not self.interlock_closed or self.refuse_emission):
                raise ValueError("interlock")
            self.emission = arg == "ON"
            return ""
        if upper == "SOURCE:POWER:LIMIT:LOW?":
            return "0.000"
        if upper == "SOURCE:POWER:LIMIT:HIGH?":
            return f"{self.max_power_w:.4f}"
        if upper == "SOURCE:POWER:LEVEL:IMMEDIATE:AMPLITUDE?":
            return f"{self.setpoint_w:.5f}"
        if upper.startswith("SOURCE:POWER:LEVEL:IMMEDIATE:AMPLITUDE "):
            power = float(upper.split()[1])
            if not 0 <= power <= self.max_power_w:
                raise ValueError(power)
            self.setpoint_w = power
            return ""
        if upper == "SOURCE:POWER:LEVEL?":
            return f"{self.setpoint_w if self.emission else 0.0:.5f}"
        return None
