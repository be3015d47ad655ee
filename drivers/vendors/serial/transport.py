"""Command/response over a serial port, with timeouts, retries and one error vocabulary.

The controllers on an optical bench (Thorlabs SC10 shutter, Coherent OBIS laser)
answer every command with a reply that ends in a known marker: a prompt, or a
final ``OK``/``ERR`` line. A `Protocol` says how a command is written and how a
reply is recognised and parsed; `SerialTransport` owns the port, the deadline and
the retries, so every serial driver fails the same way:

- silence: `DeviceTimeout` (after the retries);
- a reply that makes no sense (noise, a lost byte, the echo of another command):
  drained and retried, then `DeviceError`;
- a refusal by the device (unknown command, bad argument): `DeviceError`, never retried;
- the port vanishing (cable, power, USB re-enumeration): `DeviceDisconnected`.

Only idempotent commands are retried: a toggle (the SC10's ``ens``) sent twice
is the opposite of what was asked, so drivers send those with ``retry=False``
and read the state back instead.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from drivers.config import Section
from drivers.errors import DeviceDisconnected, DeviceError, DeviceNotOpen, DeviceTimeout

__all__ = [
    "GarbledReply",
    "Protocol",
    "Refused",
    "SerialTransport",
    "decode_ascii",
    "transport_from_section",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how long one `read` call may block; the overall deadline is kept here, not by pyserial
_POLL_S = 0.01
#: quiet time that ends the draining of a line after a garbled reply
_DRAIN_QUIET_S = 0.03

try:  # a vanished tty fails tcflush with termios.error, which is not an OSError
    from termios import error as _TermiosError

    _PORT_ERRORS: tuple[type[BaseException], ...] = (OSError, _TermiosError)
except ImportError:  # pragma: no cover - Windows
    _PORT_ERRORS = (OSError,)


class GarbledReply(Exception):
    """A reply arrived but cannot be what the device meant; the command may be retried."""


class _Interrupted(Exception):
    """A nested request (a signal handler) used the line while this one waited."""


class Refused(DeviceError):
    """The device understood the command and refused it (it said so); not retried."""


class Protocol(ABC):
    """How one instrument frames commands and replies (no I/O here)."""

    #: bytes that end a command on the wire
    terminator: bytes = b"\r"

    def encode(self, command: str) -> bytes:
        try:
            return command.encode("ascii") + self.terminator
        except UnicodeEncodeError:
            raise ValueError(f"command {command!r} is not ASCII") from None

    @abstractmethod
    def complete(self, command: str, received: bytes) -> bool:
        """True once `received` holds the whole reply to `command` (a protocol that echoes
        can skip a late reply to an earlier command here)."""

    @abstractmethod
    def parse(self, command: str, reply: bytes) -> str:
        """The reply's payload; raise `GarbledReply` or `Refused`."""


def decode_ascii(reply: bytes) -> str:
    try:
        return reply.decode("ascii")
    except UnicodeDecodeError as exc:
        raise GarbledReply(f"non-ASCII bytes in reply {reply!r}") from exc


class SerialTransport:
    """One serial port, one request at a time, replies framed by a `Protocol`.

    `url` is a device path (``/dev/ttyUSB0``, ``COM3``) or any pyserial URL
    (``socket://host:port``, ``loop://``). A reentrant lock keeps threads from
    interleaving requests; a request issued while another is waiting for its
    reply on the same thread (a signal handler making the bench safe) goes
    through, and the interrupted request then fails instead of being retried,
    because retrying an ``ON`` after a safety ``OFF`` would undo it.
    """

    def __init__(
        self,
        url: str,
        protocol: Protocol,
        *,
        name: str = "",
        baudrate: int = 9600,
        timeout_s: float = 1.0,
        retries: int = 2,
        write_timeout_s: float = 1.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"{name or url}: timeout_s must be > 0, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"{name or url}: retries must be >= 0, got {retries!r}")
        self.url = url
        self.protocol = protocol
        self.name = name or url
        self.baudrate = int(baudrate)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.write_timeout_s = float(write_timeout_s)
        self._port: Any = None
        self._lost: str | None = None
        self._lock = threading.RLock()
        self._depth = 0
        self._exchanges = 0  # counts writes, so a request can tell it was interrupted
        #: (command, attempts) of recent requests that needed a retry (diagnostics; the last 100)
        self.retried: deque[tuple[str, int]] = deque(maxlen=100)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        if self._port is not None:
            return
        import serial

        kwargs: dict[str, Any] = {
            "baudrate": self.baudrate,
            "bytesize": serial.EIGHTBITS,
            "parity": serial.PARITY_NONE,
            "stopbits": serial.STOPBITS_ONE,
            "timeout": _POLL_S,
            "write_timeout": self.write_timeout_s,
        }
        if "://" not in self.url:
            kwargs["exclusive"] = True  # a second program on a laser's port is a hazard
        try:
            self._port = serial.serial_for_url(self.url, **kwargs)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"{self.name}: cannot open serial port {self.url}: {exc}") from exc
        self._lost = None
        self._drain()

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # closing a vanished port may complain; it is closed anyway
                log.debug("%s: closing %s: %s", self.name, self.url, exc)

    # -- requests -----------------------------------------------------------------------------
    def send_and_drain(self, command: str) -> None:
        """Send `command` and drop whatever comes back (or nothing): for settings that change how
        the device answers (an OBIS with handshaking off answers nothing, with its prompt on adds one)."""
        with self._lock:
            port = self._require_port()
            try:
                port.reset_input_buffer()
                port.write(self.protocol.encode(command))
                port.flush()
            except _PORT_ERRORS as exc:
                self._mark_lost(exc)
                raise DeviceDisconnected(
                    f"{self.name}: serial port {self.url} went away during {command!r}: {exc}") from exc
            self._drain()

    def request(self, command: str, *, retry: bool = True) -> str:
        """Send `command`, return the reply's payload (``""`` for a bare acknowledgement)."""
        return self.query(command, str, retry=retry)

    def query(self, command: str, parse: Callable[[str], T], *, retry: bool = True) -> T:
        """Send `command` and parse its payload; a `ValueError` from `parse` counts as garbled."""
        with self._lock:
            self._depth += 1
            try:
                return self._attempts(command, parse, retry)
            finally:
                self._depth -= 1

    def _attempts(self, command: str, parse: Callable[[str], T], retry: bool) -> T:
        attempts = 1 + (self.retries if retry else 0)
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            before = self._exchanges
            try:
                raw = self._exchange(command)
                if self._exchanges != before + 1:
                    raise _Interrupted
                value = parse(self.protocol.parse(command, raw))
            except _Interrupted:
                raise self._interrupted(command) from None
            except (GarbledReply, ValueError) as exc:
                last = exc
                log.warning("%s: garbled reply to %r (attempt %d/%d): %s",
                            self.name, command, attempt, attempts, exc)
            except DeviceTimeout as exc:
                last = exc
                log.warning("%s: %s (attempt %d/%d)", self.name, exc, attempt, attempts)
            else:
                if attempt > 1:
                    self.retried.append((command, attempt))
                return value
            if self._exchanges != before + 1:  # a safety command ran while this one waited
                raise self._interrupted(command) from last
            self._drain()
        if isinstance(last, DeviceTimeout):
            raise DeviceTimeout(
                f"{self.name}: no reply to {command!r} on {self.url} within {self.timeout_s:g} s "
                f"({_plural(attempts, 'attempt')}); is the device powered and connected?"
            ) from last
        raise DeviceError(
            f"{self.name}: garbled reply to {command!r} on {self.url} after "
            f"{_plural(attempts, 'attempt')}: {last}"
        ) from last

    def _interrupted(self, command: str) -> DeviceError:
        return DeviceError(
            f"{self.name}: {command!r} was interrupted by another command on the same line "
            "(a safety action from a signal handler); not retried"
        )

    def _exchange(self, command: str) -> bytes:
        """Write one command and read one complete reply, or raise DeviceTimeout."""
        port = self._require_port()
        payload = self.protocol.encode(command)
        self._exchanges += 1
        try:
            port.reset_input_buffer()  # a late reply to an earlier request is not ours
            port.write(payload)
            port.flush()
            received = bytearray()
            deadline = time.monotonic() + self.timeout_s
            while not self.protocol.complete(command, bytes(received)):
                if time.monotonic() >= deadline:
                    what = f"an incomplete reply {bytes(received)!r}" if received else "no reply"
                    if received:
                        raise GarbledReply(f"{what} to {command!r} within {self.timeout_s:g} s")
                    raise DeviceTimeout(f"{what} to {command!r} within {self.timeout_s:g} s")
                received += port.read(max(1, port.in_waiting))
        except DeviceTimeout:  # a TimeoutError, hence an OSError: not a lost port
            raise
        except _PORT_ERRORS as exc:  # pyserial's SerialException is an OSError
            if _is_write_timeout(exc):
                raise DeviceTimeout(
                    f"{self.name}: writing {command!r} to {self.url} timed out "
                    f"after {self.write_timeout_s:g} s"
                ) from exc
            self._mark_lost(exc)
            raise DeviceDisconnected(
                f"{self.name}: serial port {self.url} went away during {command!r}: {exc}"
            ) from exc
        return bytes(received)

    def _require_port(self) -> Any:
        if self._lost is not None:
            raise DeviceDisconnected(f"{self.name}: serial port {self.url} was lost ({self._lost}); reopen it")
        if self._port is None:
            raise DeviceNotOpen(f"{self.name}: serial port {self.url} is not open")
        return self._port

    def _mark_lost(self, exc: BaseException) -> None:
        self._lost = f"{type(exc).__name__}: {exc}"
        self.close()

    def _drain(self) -> None:
        """Read and drop whatever is still arriving, until the line is quiet."""
        port = self._port
        if port is None:
            return
        try:
            end = time.monotonic() + self.timeout_s
            quiet_since = time.monotonic()
            while time.monotonic() < end and time.monotonic() - quiet_since < _DRAIN_QUIET_S:
                if port.read(max(1, port.in_waiting)):
                    quiet_since = time.monotonic()
        except _PORT_ERRORS as exc:
            self._mark_lost(exc)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _is_write_timeout(exc: OSError) -> bool:
    import serial

    return isinstance(exc, serial.SerialTimeoutException)


def transport_from_section(section: Section, protocol: Protocol, *, name: str, baudrate: int) -> SerialTransport:
    """The serial keys every controller table shares: port, baudrate, timeout_s, retries."""
    port = section.get_str("port")
    if not port.strip():
        raise section.error("port", "must name a serial port (/dev/ttyUSB0, COM3, socket://host:port)")
    return SerialTransport(
        port,
        protocol,
        name=name,
        baudrate=section.get_int("baudrate", baudrate, min=300),
        timeout_s=section.get_float("timeout_s", 0.5, positive=True),
        retries=section.get_int("retries", 2, min=0, max=10),
    )
