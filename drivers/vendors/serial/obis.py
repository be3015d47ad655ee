"""Coherent OBIS (and OBIS-style SCPI) lasers over their serial / USB virtual COM port.

The protocol: ASCII SCPI commands ended by CR LF; with handshaking on (the OBIS
default) every command is answered, after any data line, by ``OK`` or by an
``ERR-<code>`` line. A query is therefore ``<value>\\r\\nOK\\r\\n`` and a setting
``OK\\r\\n``. Commands used here:

- ``*IDN?`` and ``SYSTem:INFormation:SNUMber?``: identity, checked at open;
- ``SOURce:AM:STATe ON|OFF`` and ``SOURce:AM:STATe?``: emission, always read back;
- ``SOURce:POWer:LEVel:IMMediate:AMPLitude <W>``: the power set-point in watts;
- ``SOURce:POWer:LEVel?``: the measured output power in watts;
- ``SOURce:POWer:LIMit:LOW?`` / ``HIGH?``: the device's power range;
- ``SYSTem:LOCK?``: the interlock (``ON`` when the interlock loop is closed and
  emission is allowed; the reply that means "closed" is configurable, because a
  laser that reads the other way would otherwise be enabled with its interlock open).

At open the driver first puts the line the way it talks: ``SYSTem:COMMunicate:
HANDshaking ON`` and ``SYSTem:COMMunicate:PROMpt OFF`` (a laser left with
handshaking off answers settings with nothing, one with the prompt on adds
``OBIS>``: both would read as timeouts or garbage), then clears the error queue
(``SYSTem:ERRor:CLEar``) and checks the operating mode (``SOURce:AM:SOURce?``):
the power set-point means watts only in CW power mode (``CWP``), so another mode
(CW current, digital or analogue modulation) is switched to CWP
(``SOURce:AM:INTernal CWP``) and read back, or refused.

Emission is switched off as soon as the laser is opened, and enabling it first
asks the interlock; the bench's safety guard adds the shutter around that. When
the laser refuses emission, its fault register (``SYSTem:FAULt?``) goes into the
error.
"""

from __future__ import annotations

import math
import time
from typing import Any

from drivers.base import LaserController
from drivers.config import Section
from drivers.errors import DeviceError, OutOfRange, SafetyError
from drivers.plugin import DeviceContext
from drivers.vendors.serial.transport import (
    GarbledReply,
    Protocol,
    Refused,
    SerialTransport,
    decode_ascii,
    transport_from_section,
)

__all__ = ["CoherentObis", "ObisProtocol"]

EOL = b"\r\n"


class ObisProtocol(Protocol):
    """``[<value>\\r\\n]OK\\r\\n`` or ``ERR-<code>\\r\\n``."""

    terminator = EOL

    def complete(self, command: str, received: bytes) -> bool:
        if not received.endswith(EOL):
            return False
        last = received[: -len(EOL)].rsplit(EOL, 1)[-1].strip()
        return last == b"OK" or last.startswith(b"ERR")

    def parse(self, command: str, reply: bytes) -> str:
        lines = [line.strip() for line in decode_ascii(reply).split("\r\n")]
        lines = [line for line in lines if line]
        final = lines[-1]
        if final.startswith("ERR"):
            raise Refused(f"laser refused {command!r}: {final}")
        data = lines[:-1]
        if command.endswith("?"):
            if len(data) != 1:
                raise GarbledReply(f"expected one value before OK, got {data!r}")
            return data[0]
        if data:
            raise GarbledReply(f"unexpected data {data!r} before OK")
        return ""


def _on_off(text: str) -> bool:
    value = text.strip().upper()
    if value not in ("ON", "OFF"):
        raise ValueError(f"expected ON or OFF, got {text!r}")
    return value == "ON"


def _watts(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite power: {text!r}")
    return value


class CoherentObis(LaserController):
    """An OBIS laser: identity checked at open, emission off until armed, every switch read back."""

    def __init__(
        self,
        transport: SerialTransport,
        *,
        name: str = "Coherent OBIS",
        power_w: float | None = None,
        power_bounds_w: tuple[float, float] = (0.0, math.inf),
        identity_contains: str = "OBIS",
        interlock_closed_reply: str = "ON",
        emission_delay_s: float = 0.0,
    ) -> None:
        super().__init__(name, power_bounds_w=power_bounds_w)
        self.transport = transport
        self._configured_bounds = self.power_bounds_w
        self._initial_power_w = power_w
        self.identity_contains = identity_contains
        self.interlock_closed_reply = interlock_closed_reply.strip().upper()
        self.emission_delay_s = float(emission_delay_s)
        self._idn = ""
        self._serial = ""

    @classmethod
    def from_config(cls, section: Section, context: DeviceContext) -> CoherentObis:
        name = f"OBIS laser ({context.role})"
        transport = transport_from_section(section, ObisProtocol(), name=name, baudrate=115200)
        bounds = section.get_range("power_range_w") if "power_range_w" in section else (0.0, math.inf)
        if bounds[0] < 0:
            raise section.error("power_range_w", f"a power cannot be negative, got {list(bounds)}")
        power = section.get_float("power_w", None) if "power_w" in section else None
        if power is not None and not bounds[0] <= power <= bounds[1]:
            raise section.error(
                "power_w", f"{power:g} W is outside power_range_w [{bounds[0]:g}, {bounds[1]:g}]")
        laser = cls(
            transport,
            name=name,
            power_w=power,
            power_bounds_w=bounds,
            identity_contains=section.get_str("identity_contains", "OBIS"),
            interlock_closed_reply=section.get_str("interlock_closed_reply", "ON"),
            emission_delay_s=section.get_float("emission_delay_s", 0.0, min=0.0),
        )
        section.check_unused()
        return laser

    # -- description ------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        return {"vendor": "Coherent", "model": self._idn, "serial": self._serial,
                "port": self.transport.url}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "emission_delay_s": self.emission_delay_s}

    def emission_on(self) -> bool:
        """``SOURce:AM:STATe?`` as the laser reports it (not the cached state)."""
        self._require_open()
        return self.transport.query("SOURce:AM:STATe?", _on_off)

    # -- hooks --------------------------------------------------------------------------------
    def _open_hw(self) -> None:
        self.transport.open()
        try:
            self.transport.send_and_drain("SYSTem:COMMunicate:HANDshaking ON")
            self.transport.send_and_drain("SYSTem:COMMunicate:PROMpt OFF")
            self._idn = self.transport.request("*IDN?")
            if self.identity_contains and self.identity_contains.upper() not in self._idn.upper():
                raise DeviceError(
                    f"{self.name}: {self.transport.url} answered '*IDN?' with {self._idn!r}, "
                    f"which does not name {self.identity_contains!r} (wrong port?)"
                )
            self._serial = self._optional("SYSTem:INFormation:SNUMber?", str, "")
            self._enable_hw(False)  # whatever state it powered up in, start dark
            self._enabled = False
            self._optional("SYSTem:ERRor:CLEar", str, "")
            self._check_mode()
            self._read_power_range()
            if self._initial_power_w is not None:
                self._set_power_checked(self._initial_power_w)
            else:
                self._power_w = self.transport.query(
                    "SOURce:POWer:LEVel:IMMediate:AMPLitude?", _watts)
        except BaseException:
            self.transport.close()
            raise

    def _check_mode(self) -> None:
        """CW power mode (``CWP``), or switch to it and read back; an OBIS-style laser that does
        not know the query is taken as CW only."""
        mode = self._optional("SOURce:AM:SOURce?", lambda t: t.strip().upper(), None)
        if mode is None or mode == "CWP":
            return
        try:
            self.transport.request("SOURce:AM:INTernal CWP")
        except Refused as exc:
            raise DeviceError(f"{self.name}: the laser is in {mode} mode, not CW power (CWP), and refused "
                              f"'SOURce:AM:INTernal CWP': {exc}") from exc
        now = self.transport.query("SOURce:AM:SOURce?", lambda t: t.strip().upper())
        if now != "CWP":
            raise DeviceError(f"{self.name}: the laser stays in {now} mode after 'SOURce:AM:INTernal CWP'; "
                              "its power set-point would not be watts")

    def faults(self) -> str:
        """``SYSTem:FAULt?`` as the laser answers it ("" if it does not know the query)."""
        try:
            return str(self._optional("SYSTem:FAULt?", str, ""))
        except DeviceError as exc:
            return f"unreadable ({exc})"

    def _optional(self, command: str, parse: Any, default: Any) -> Any:
        try:
            return self.transport.query(command, parse)
        except Refused:
            return default

    def _read_power_range(self) -> None:
        lo_cfg, hi_cfg = self._configured_bounds
        lo = self._optional("SOURce:POWer:LIMit:LOW?", _watts, lo_cfg)
        hi = self._optional("SOURce:POWer:LIMit:HIGH?", _watts, hi_cfg)
        bounds = (max(lo_cfg, lo), min(hi_cfg, hi))
        if bounds[0] > bounds[1] or not math.isfinite(bounds[1]):
            raise DeviceError(
                f"{self.name}: no usable power range (profile [{lo_cfg:g}, {hi_cfg:g}] W, "
                f"laser [{lo:g}, {hi:g}] W)"
            )
        self.power_bounds_w = bounds

    def _set_power_checked(self, power_w: float) -> None:
        lo, hi = self.power_bounds_w
        if not lo <= power_w <= hi:
            raise OutOfRange(f"{self.name}: power_w {power_w:g} is outside [{lo:g}, {hi:g}] W")
        self._set_power_hw(power_w)
        self._power_w = power_w

    def _close_hw(self) -> None:
        try:
            super()._close_hw()  # emission off, read back
        finally:
            self.transport.close()

    def _enable_hw(self, on: bool) -> None:
        if on and not self._interlock_hw():
            raise SafetyError(f"{self.name}: interlock open (SYSTem:LOCK?), emission refused")
        try:
            self.transport.request(f"SOURce:AM:STATe {'ON' if on else 'OFF'}")
        except Refused as exc:
            fault = self.faults() if on else ""
            raise (DeviceError if on else SafetyError)(
                f"{self.name}: emission {'ON' if on else 'OFF'} refused: {exc}"
                + (f"; SYSTem:FAULt? = {fault}" if fault else "")) from exc
        state = self.transport.query("SOURce:AM:STATe?", _on_off)
        if state != on:
            error = DeviceError if on else SafetyError
            fault = self.faults() if on else ""
            raise error(f"{self.name}: asked for emission {'ON' if on else 'OFF'}, "
                        f"laser reports {'ON' if state else 'OFF'}" + (f"; SYSTem:FAULt? = {fault}" if fault else ""))
        if on and self.emission_delay_s > 0:
            time.sleep(self.emission_delay_s)  # e.g. the CDRH delay before light comes out

    def _set_power_hw(self, power_w: float) -> None:
        self.transport.request(f"SOURce:POWer:LEVel:IMMediate:AMPLitude {power_w:.6g}")

    def _measured_power_hw(self) -> float:
        return self.transport.query("SOURce:POWer:LEVel?", _watts)

    def _interlock_hw(self) -> bool:
        reply = self.transport.query("SYSTem:LOCK?", lambda s: s.strip().upper())
        return reply == self.interlock_closed_reply
