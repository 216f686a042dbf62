"""Bounded number boxes for the generated forms (:mod:`tlstudio.gui.forms`): the arrows and the
wheel stay inside a field's bounds, a typed value outside them is kept (the form marks it)."""
from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

INT_LIMIT = 2_000_000_000
FLOAT_LIMIT = 1e15


def _nice_step(span: float) -> float:
    raw = span / 20.0
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    e = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * e:
            return m * e
    return 10 * e


class _Bounded:
    """Arrow keys, buttons and the wheel stay inside the field's bounds; typing does not."""

    lo: float | None
    hi: float | None

    def _clamp(self, v: float) -> float:
        if self.lo is not None and v < self.lo:
            v = self.lo
        if self.hi is not None and v > self.hi:
            v = self.hi
        return v

    def stepEnabled(self):  # noqa: N802 - Qt override
        from PySide6.QtWidgets import QAbstractSpinBox

        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        try:
            v = self.current()
        except ValueError:
            return flags
        if self.hi is None or v < self.hi:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self.lo is None or v > self.lo:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags


class IntBox(_Bounded, QSpinBox):
    """A bounded integer box; ``specials`` shows some values as words (-1 as "all")."""

    def __init__(self, b: dict, parent=None, specials: dict | None = None):
        super().__init__(parent)
        self.lo = b["ge"] if "ge" in b else (math.floor(b["gt"]) + 1 if "gt" in b else None)
        self.hi = b["le"] if "le" in b else (math.ceil(b["lt"]) - 1 if "lt" in b else None)
        self.specials = {int(k): str(v) for k, v in (specials or {}).items()}
        self.setRange(-INT_LIMIT, INT_LIMIT)
        self.setAccelerated(True)
        self.setMinimumWidth(110)

    def _parse(self, text: str) -> int:
        t = text.strip()
        for v, word in self.specials.items():
            if t.lower() == word.lower():
                return v
        return int(t)

    def current(self) -> int:
        return self._parse(self.cleanText())

    def textFromValue(self, v: int) -> str:  # noqa: N802
        return self.specials.get(int(v), str(int(v)))

    def valueFromText(self, text: str) -> int:  # noqa: N802
        try:
            return self._parse(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            self._parse(t)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            pass
        if t in ("", "-", "+") or any(w.lower().startswith(t.lower()) for w in self.specials.values()):
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Invalid, text, pos

    def fixup(self, text: str) -> str:
        return text

    def stepBy(self, steps: int) -> None:  # noqa: N802
        try:
            v = self.current()
        except ValueError:
            v = int(self.lo or 0)
        self.setValue(int(self._clamp(v + steps)))
        self.selectAll()


class FloatBox(_Bounded, QDoubleSpinBox):
    """A float spin box that shows 0.001 as 0.001 and 1e-05 as 1e-05, accepts scientific
    notation, and steps by decades' leading digit (0.002 -> 0.003, 0.001 -> 0.0009)."""

    def __init__(self, b: dict, step: float | None = None, decade: bool = False, parent=None):
        super().__init__(parent)
        self.lo = b.get("ge", b.get("gt"))
        self.hi = b.get("le", b.get("lt"))
        self._excl = ("gt" in b, "lt" in b)
        self.decade = decade
        self.fixed_step = step
        self.setDecimals(12)
        self.setRange(-FLOAT_LIMIT, FLOAT_LIMIT)
        self.setMinimumWidth(110)

    def textFromValue(self, v: float) -> str:  # noqa: N802
        return f"{v:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text.strip().replace(",", "."))
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip().replace(",", ".")
        try:
            float(t)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            pass
        if t in ("", "-", "+", ".", "-.", "+.") or (t[-1:] in "eE-+" and _float_prefix(t)):
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Invalid, text, pos

    def fixup(self, text: str) -> str:
        return text

    def current(self) -> float:
        return float(self.cleanText().strip().replace(",", "."))

    def _step(self, v: float, direction: int) -> float:
        if self.fixed_step:
            return self.fixed_step
        if self.decade and v != 0:
            a = abs(v)
            e = math.floor(math.log10(a) + 1e-9)
            s = 10.0 ** e
            if (direction < 0) == (v > 0) and math.isclose(a, s, rel_tol=1e-9):
                s /= 10.0
            return s
        span = (self.hi - self.lo) if (self.hi is not None and self.lo is not None) else 10.0
        return _nice_step(span) if span <= 200 else 1.0

    def stepBy(self, steps: int) -> None:  # noqa: N802
        try:
            v = self.current()
        except ValueError:
            v = float(self.lo or 0.0)
        d = 1 if steps > 0 else -1
        for _ in range(abs(steps)):
            nv = float(f"{v + d * self._step(v, d):.10g}")
            if self.lo is not None and (nv < self.lo or (self._excl[0] and nv <= self.lo)):
                nv = v if self._excl[0] else self.lo
            if self.hi is not None and (nv > self.hi or (self._excl[1] and nv >= self.hi)):
                nv = v if self._excl[1] else self.hi
            if nv == v:
                break
            v = nv
        self.setValue(v)
        self.selectAll()


def _float_prefix(t: str) -> bool:
    try:
        float(t.rstrip("eE-+"))
        return True
    except ValueError:
        return False
