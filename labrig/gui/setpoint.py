"""A device setpoint box: applied on Enter or focus-out, never per keystroke, never clipped.

A `QDoubleSpinBox` applies every keystroke (typing 99999 passes through 9, 99, 999)
and its validator silently clips what is out of range (99999 mW ends at 9 mW). Here
the typed text is applied only when the operator commits it (Enter, or leaving the
box); a value out of range, or not a number, is refused and the refusal is shown
beside the box with the allowed range, and the box goes back to what the device
holds. Nothing is sent to a device for a refused value.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

__all__ = ["SetpointEdit"]

REFUSED_STYLE = "color:#c00000"


class _Edit(QLineEdit):
    escaped = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.escaped.emit()
            return
        super().keyPressEvent(event)


class SetpointEdit(QWidget):
    """A number box with a unit, an allowed range and a refusal line below it.

    `valueChanged(value)` is emitted only for a committed value inside the range (the
    name matches the spin box it replaces); `refused(message)` for anything else."""

    valueChanged = Signal(float)
    refused = Signal(str)

    def __init__(self, what: str, unit: str = "", decimals: int = 3, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.unit = unit
        self._decimals = decimals
        self._lo, self._hi = -math.inf, math.inf
        self._value = 0.0
        self.edit = _Edit()
        self.edit.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.range_label = QLabel("")
        self.range_label.setStyleSheet("color:#606060")
        self.refusal = QLabel("")
        self.refusal.setStyleSheet(REFUSED_STYLE)
        self.refusal.setWordWrap(True)
        self.refusal.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(QLabel(unit))
        row.addWidget(self.range_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addLayout(row)
        layout.addWidget(self.refusal)
        self.edit.editingFinished.connect(self.commit)
        self.edit.escaped.connect(self._revert)
        self._show(self._value)

    # -- the QDoubleSpinBox API the Devices dock uses ----------------------------------------------
    def decimals(self) -> int:
        return self._decimals

    def value(self) -> float:
        return self._value

    def setRange(self, lo: float, hi: float) -> None:
        self._lo, self._hi = float(lo), float(hi)
        self.range_label.setText(f"[{self._fmt(lo)} … {self._fmt(hi)}]")
        self.edit.setToolTip(f"{self.what}: {self._fmt(lo)} to {self._fmt(hi)} {self.unit}; "
                             "Enter (or leaving the box) applies, Esc reverts")

    def range(self) -> tuple[float, float]:
        return self._lo, self._hi

    def setValue(self, value: float) -> None:
        """Show what the device holds (no signal: nothing is applied)."""
        self._value = float(value)
        self._show(self._value)

    def hasFocus(self) -> bool:
        return self.edit.hasFocus()

    # -- committing -------------------------------------------------------------------------------
    def _fmt(self, v: float) -> str:
        return f"{v:.{self._decimals}f}".rstrip("0").rstrip(".") if math.isfinite(v) else str(v)

    def _show(self, v: float) -> None:
        self.edit.setText(self._fmt(v))

    @Slot()
    def _revert(self) -> None:
        self._show(self._value)

    def refuse(self, message: str) -> None:
        """Show why a value was not applied (also for a device's own refusal)."""
        self.refusal.setText(message)
        self.refusal.setVisible(bool(message))
        if message:
            self.refused.emit(message)

    def clear_refusal(self) -> None:
        self.refusal.clear()
        self.refusal.hide()

    @Slot()
    def commit(self) -> None:
        """Apply the typed text if it is a number in range; otherwise refuse it and revert."""
        text = self.edit.text().strip()
        try:
            typed = float(text.replace(",", "."))
        except ValueError:
            typed = math.nan
        allowed = f"allowed {self._fmt(self._lo)} to {self._fmt(self._hi)} {self.unit}".rstrip()
        if not math.isfinite(typed):
            self.refuse(f"{self.what} {text!r} refused: not a number ({allowed})")
            self._revert()
            return
        if not self._lo <= typed <= self._hi:
            self.refuse(f"{self.what} {self._fmt(typed)} {self.unit} refused: out of range ({allowed}); "
                        "nothing was changed")
            self._revert()
            return
        self.clear_refusal()
        if abs(typed - self._value) <= 0.5 * 10 ** -self._decimals:
            self._show(self._value)  # Enter then focus-out, or an unchanged value: nothing to apply
            return
        self._value = typed
        self._show(typed)
        self.valueChanged.emit(typed)
