"""How much memory decoding may take: a budget derived from the machine's memory.

A 48 KB PNG can claim 20000 x 20000 pixels (a decompression bomb): decoded, it needs
gigabytes.  Every decode first reads the image's size from its header, works out the memory
the decoded pixels need, and refuses with a clear message when that is more than the budget;
decodes running in parallel threads share the budget (:class:`MemoryGate`), so together they
never take more than one image may.

The budget is a share of the machine's physical memory (1/32, between 256 MB and 4 GB: 768 MB
on a 24 GB workstation), so that decoding never competes with the model, the image cache and
the window for memory.  ``TLSTUDIO_DECODE_MEMORY_MB`` sets it by hand.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

MB = 1 << 20
GB = 1 << 30
DECODE_SHARE = 32  # decoding may hold 1/32 of the machine's memory at once
MIN_BUDGET, MAX_BUDGET = 256 * MB, 4 * GB
ARRAY_SHARE = 4  # an NPZ array is held whole: at most 1/4 of the memory
ENV = "TLSTUDIO_DECODE_MEMORY_MB"


def machine_memory() -> int:
    """Physical memory of this machine in bytes (8 GB when it cannot be found out)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:  # Windows
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        st = _Status()
        st.dwLength = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(st)):  # type: ignore[attr-defined]
            return int(st.ullTotalPhys)
    except Exception:  # noqa: BLE001 - not Windows, or no answer
        pass
    return 8 * GB


def decode_budget() -> int:
    """Bytes that decoding may use at once."""
    given = os.environ.get(ENV, "").strip()
    if given:
        try:
            return max(16 * MB, int(float(given) * MB))
        except ValueError:
            pass
    return max(MIN_BUDGET, min(MAX_BUDGET, machine_memory() // DECODE_SHARE))


def array_budget() -> int:
    """Bytes one array read whole (an NPZ's images) may take."""
    return max(decode_budget(), machine_memory() // ARRAY_SHARE)


def human(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.0f} MB"


def too_large(what: str, need: int, budget: int, fix: str) -> str:
    """The refusal, in plain words."""
    return (f"too large to decode safely: {what} needs about {human(need)} of memory, more than the "
            f"{human(budget)} this computer allows for it (a share of its {human(machine_memory())}). {fix}")


class MemoryGate:
    """Bytes in flight shared by the decoding threads: a decode waits until its bytes fit
    beside the others' (one alone may always use the whole budget)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._used = 0

    @contextmanager
    def hold(self, nbytes: int, budget: int | None = None) -> Iterator[None]:
        budget = decode_budget() if budget is None else budget
        n = max(0, min(int(nbytes), budget))
        with self._cond:
            while self._used and self._used + n > budget:
                self._cond.wait()
            self._used += n
        try:
            yield
        finally:
            with self._cond:
                self._used -= n
                self._cond.notify_all()

    @property
    def used(self) -> int:
        return self._used


GATE = MemoryGate()
