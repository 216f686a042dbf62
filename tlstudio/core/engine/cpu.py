"""How many CPU cores this process may use, and how many of them other programs leave free.

A workstation is often shared: another user's job, a second run, a virus scan.  PyTorch's
intra-op threads wait for each other at the end of every operation, so when one of them
shares its core with another program every operation waits for the slowest thread: on the
2-core development machine at load ~7, fine-tuning ran at 3-5 images/s with 2 threads and
at 44-65 with 1 (docs/benchmarks.md).  The studio therefore sizes its thread pools from the
cores that are actually free, measured from ``/proc/stat`` (Linux); elsewhere it falls back
to the load average or to the cores it may use.

    usable_cores()          cores this process may run on (affinity, cgroup quota)
    free_cores()            of those, how many other programs leave idle (>= 1)
    CpuMeter()              the same, measured over a stretch of work (an epoch) at no cost
"""
from __future__ import annotations

import math
import os
import time

_cache: tuple[float, int] | None = None  # (when, free cores) of the last sample


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    """The cgroup v2 (cpu.max) or v1 (cfs quota / period) limit in cores, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as f:
            period = int(f.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _system_busy() -> tuple[float, float] | None:
    """(busy seconds of all cores, wall-clock jiffies as seconds) from /proc/stat, or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / hz, total / hz


def _own_busy() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """Measures, between :meth:`start` and :meth:`free`, how many cores other programs kept
    busy (all busy time on the machine minus this process's own).  Costs two small reads."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._sys, self._own, self._wall = _system_busy(), _own_busy(), time.monotonic()

    def others_busy(self) -> float | None:
        """Cores kept busy by other programs since :meth:`start` (None: cannot tell here)."""
        now = _system_busy()
        wall = time.monotonic() - self._wall
        if now is None or self._sys is None or wall < 0.05:
            return None
        busy = now[0] - self._sys[0]
        own = _own_busy() - self._own
        return max(0.0, (busy - own) / wall)

    def free(self) -> int:
        """Cores of :func:`usable_cores` left free by other programs (at least one)."""
        n = usable_cores()
        if forced_cores():
            return min(forced_cores(), n)
        others = self.others_busy()
        if others is None:
            return _free_from_loadavg(n)
        return max(1, min(n, int(math.floor(n - others + 0.35))))  # a core 65 % busy elsewhere is not free


def _free_from_loadavg(n: int) -> int:
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return n
    return max(1, min(n, int(math.floor(n - max(0.0, load - 1.0) + 0.35))))  # the load includes this process


def forced_cores() -> int:
    """``TLSTUDIO_CORES`` when set to a positive number (the cores to use, whatever the load), else 0."""
    v = os.environ.get("TLSTUDIO_CORES", "").strip()
    return int(v) if v.isdigit() and int(v) > 0 else 0


def free_cores(sample: float = 0.25, max_age: float = 5.0) -> int:
    """Cores other programs leave free now, sampled over ``sample`` seconds (remembered for
    ``max_age`` seconds, so that asking often costs nothing).  ``TLSTUDIO_CORES`` overrides."""
    global _cache
    if forced_cores():
        return min(forced_cores(), usable_cores())
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < max_age:
        return _cache[1]
    meter = CpuMeter()
    time.sleep(sample)
    n = meter.free()
    _cache = (time.monotonic(), n)
    return n


def decode_workers() -> int:
    """Threads that decode images (Pillow and pydicom release the GIL while they decode): one
    per free core, and at least two so that reading a file overlaps decoding another."""
    return max(2, min(16, free_cores()))


class TorchThreads:
    """PyTorch's intra-op threads for one run, sized to the free cores at the start and again
    at every epoch (from what other programs used during the epoch before); never more than
    PyTorch's own default; the setting before the run is restored by :meth:`restore`."""

    def __init__(self, log=None):
        import torch

        self._torch = torch
        self.before = torch.get_num_threads()
        self.log = log or (lambda message: None)
        self.meter = CpuMeter()
        self.current = self.before
        self._set(free_cores(sample=0.2))

    def epoch(self) -> None:
        """At an epoch's start: resize to what the last epoch left free."""
        n = self.meter.free()
        self.meter.start()
        self._set(n)

    def _set(self, free: int) -> None:
        n = max(1, min(self.before, free))
        if n != self.current:
            self._torch.set_num_threads(n)
            if n < self.before:
                self.log(f"Other programs keep about {usable_cores() - free} of this computer's "
                          f"{usable_cores()} cores busy: training uses {n} thread{'s' if n > 1 else ''} "
                          "(threads that share a core wait for each other).")
            else:
                self.log(f"The cores are free again: training uses {n} threads.")
            self.current = n

    def restore(self) -> None:
        if self.current != self.before:
            self._torch.set_num_threads(self.before)
            self.current = self.before
