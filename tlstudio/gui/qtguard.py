"""A guard against a reference-counting bug of PySide6 6.12.0 on Python 3.11.

That build (stable ABI, made for Pythons where ``None`` is immortal) drops one reference
to ``None`` on every call of a Qt method that returns nothing: ``label.setText``,
``timer.start``, ``processEvents``, ``signal.emit`` ...  On Python 3.12+ ``None`` is
immortal and nothing happens; on 3.11 its count falls by thousands a minute in a busy
window and the interpreter aborts with "Fatal Python error: none_dealloc" once it reaches
zero.  (6.11.2 is not affected; see docs/gui.md.)

:func:`install` checks whether the running binding leaks (a few calls, measured) and, if
so, gives ``None`` a large cushion of references and tops it up from a timer in the GUI
thread, so that the window can run for as long as a user keeps it open.  ``None`` is never
freed in a correct program, so extra references cost nothing.
"""
from __future__ import annotations

import ctypes
import sys

CUSHION = 50_000_000  # references added at once: far more than a burst between two top-ups
INTERVAL_MS = 500

_guard = None


def _refcount_cell() -> ctypes.c_ssize_t:
    # ob_refcnt is the first field of every PyObject (CPython, non-free-threaded builds)
    return ctypes.c_ssize_t.from_address(id(None))


def leaks_none(calls: int = 64) -> bool:
    """True when void Qt calls lose references to None in this interpreter."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    from PySide6.QtCore import QObject

    o = QObject()
    before = sys.getrefcount(None)
    for _ in range(calls):
        o.setObjectName("x")
    lost = before - sys.getrefcount(None)
    if lost > 0:
        _refcount_cell().value += lost  # give back what the probe took
    return lost >= calls // 2


def install():
    """Start the guard (once per process) when the binding leaks; returns it, or None."""
    global _guard
    if _guard is not None:
        return _guard
    if not leaks_none():
        return None
    from PySide6.QtCore import QObject, QTimer

    class _Guard(QObject):
        def __init__(self):
            super().__init__()
            cell = _refcount_cell()
            cell.value += CUSHION
            self.floor = sys.getrefcount(None)
            self.topped_up = 0
            self.timer = QTimer(self)
            self.timer.setInterval(INTERVAL_MS)
            self.timer.timeout.connect(self.top_up)
            self.timer.start()

        def top_up(self) -> None:
            lost = self.floor - sys.getrefcount(None)
            if lost > 0:
                _refcount_cell().value += lost
                self.topped_up += lost

    _guard = _Guard()
    return _guard
