"""Stop and pause, devices and seeds: what every run needs before its first batch.
(Importing this module does not import torch: the window's job control uses RunControl.)"""
from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunStopped, StudioError

if TYPE_CHECKING:
    import torch


class RunControl:
    """Stop and pause flags; the engine checks them before every batch."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._watch: Path | None = None
        self._next_poll = 0.0

    def watch(self, path: str | Path) -> None:
        """Also stop when ``path`` appears (a stop request written by another process, see
        :func:`tlstudio.core.engine.distributed.request_stop`); polled at most twice a second."""
        self._watch = Path(path)
        self._next_poll = 0.0

    def _poll(self) -> None:
        if self._watch is not None and not self._stop.is_set():
            now = time.monotonic()
            if now >= self._next_poll:
                self._next_poll = now + 0.5
                if self._watch.exists():
                    self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    @property
    def stopped(self) -> bool:
        self._poll()
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set()

    def check(self) -> None:
        """Block while paused; raise :class:`RunStopped` once Stop was pressed."""
        self._poll()
        while not self._go.wait(0.2):
            self._poll()
        if self._stop.is_set():
            raise RunStopped()

    def sync(self) -> None:
        """Where every process of a distributed run agrees on Stop (each training batch);
        one process: the same as :meth:`check`."""
        self.check()


# --- devices and seeds ------------------------------------------------------------------
def select_device(pref: str = "auto") -> "torch.device":
    import torch

    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(pref)
    except (RuntimeError, ValueError):
        raise StudioError(f"Unknown device '{pref}' (training.device): choose auto, cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"Device '{pref}' was asked for, but no CUDA GPU is available here: choose cpu or auto.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StudioError(f"Device '{pref}' was asked for, but Apple MPS is not available here: choose cpu or auto.")
    return dev


def describe_device(dev: "torch.device") -> str:
    import torch

    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "GPU: Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed every generator from (seed, epoch): an epoch replays identically on resume."""
    import numpy as np
    import torch

    s = (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
