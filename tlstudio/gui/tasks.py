"""Work off the GUI thread: short tasks in thread pools, training in a QThread, and a
follower that tails a run another process writes.

Results come back as Qt signals emitted from the worker thread; a signal's connections run
in the thread of the emitting QObject, which is always created in the GUI thread, so every
callback runs there (queued), never in the worker.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal


@dataclass
class ErrorInfo:
    """A failure as the user reads it: a message, optional advice, a traceback for Details."""

    message: str
    details: str = ""
    advice: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, details: str | None = None) -> "ErrorInfo":
        """The plain message (never a library's advice to load a file unsafely), the advice,
        and the traceback for Details."""
        from tlstudio.core.failures import describe

        f = describe(exc, details)
        return cls(f.message, f.details, f.advice)


class Task(QObject):
    """One background call: ``on_done(callback(result))``, ``on_error(callback(ErrorInfo))``,
    ``progress(done, total)``; ``cancel()`` asks a cooperative function to stop.

    Results travel boxed in a 1-tuple: PySide6 on Python 3.11 miscounts the references of
    ``None`` sent through a queued ``Signal(object)`` and the interpreter aborts after a few
    thousand such signals, so nothing crosses threads as a bare ``None``."""

    _finished = Signal(object)
    _failed = Signal(object)
    progress = Signal(int, int)

    def __init__(self, name: str = "", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._cancel = threading.Event()
        self.done = False
        self.result: Any = None
        self.error: ErrorInfo | None = None

    def on_done(self, callback: Callable) -> None:
        self._finished.connect(lambda box: callback(box[0]))

    def on_error(self, callback: Callable) -> None:
        self._failed.connect(lambda box: callback(box[0]))

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, done: int, total: int) -> None:
        """Called by the function (in its thread) to report progress."""
        self.progress.emit(int(done), int(total))


class TaskRunner(QObject):
    """Thread pools by purpose: "io" (reading data, thumbnails, run files) and "model" (one
    thread: loading a trained model, predictions, Grad-CAM; one model is never used by two
    threads at once)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pools = {"io": ThreadPoolExecutor(2, thread_name_prefix="tlstudio-io"),
                       "model": ThreadPoolExecutor(1, thread_name_prefix="tlstudio-model"),
                       "plugins": ThreadPoolExecutor(1, thread_name_prefix="tlstudio-plugins")}
        self._live: set[Task] = set()
        self.closed = False

    def submit(self, fn: Callable, *args: Any, pool: str = "io", name: str = "", on_done: Callable | None = None,
               on_error: Callable | None = None, on_progress: Callable | None = None, pass_task: bool = False,
               **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` (plus ``task=`` when ``pass_task``) in a pool thread.

        Give the callbacks here: they are connected before the work starts (a quick task can
        finish before a connection made after ``submit`` returns)."""
        task = Task(name or getattr(fn, "__name__", "task"))
        if self.closed:  # the window is closing: late callbacks start nothing new
            task.cancel()
            task.done = True
            return task
        self._live.add(task)
        if on_done:
            task.on_done(on_done)
        if on_error:
            task.on_error(on_error)
        if on_progress:
            task.progress.connect(on_progress)
        task._finished.connect(lambda _r, t=task: self._live.discard(t))
        task._failed.connect(lambda _e, t=task: self._live.discard(t))

        def body():
            try:
                result = fn(*args, **({"task": task} if pass_task else {}), **kwargs)
            except BaseException as e:  # noqa: BLE001 - every failure reaches the window as a message
                task.error = ErrorInfo.from_exception(e)
                task.done = True
                task._failed.emit((task.error,))
                return
            task.result = result
            task.done = True
            task._finished.emit((result,))

        self._pools[pool].submit(body)
        return task

    def busy(self) -> bool:
        return any(not t.done for t in self._live)

    def shutdown(self) -> None:
        self.closed = True
        for t in list(self._live):
            t.cancel()
        for p in self._pools.values():
            p.shutdown(wait=False, cancel_futures=True)


class TrainWorker(QThread):
    """Runs ``engine.train`` (or ``engine.resume``) in its own thread; every engine event is
    re-emitted as the queued signal ``event(dict)``; ``result(dict)`` at the end."""

    event = Signal(object)
    result = Signal(object)

    def __init__(self, *, project=None, run_ref: str | Path | None = None, runs_dir: Path | None = None,
                 plugins=None, epochs: int | None = None, parent: QObject | None = None):
        super().__init__(parent)
        from tlstudio.core.engine import RunControl

        self.project = project
        self.run_ref = run_ref
        self.runs_dir = runs_dir
        self.plugins = plugins
        self.epochs = epochs
        self.control = RunControl()
        self.final: dict = {}
        self.run_dir: str | None = str(run_ref) if run_ref else None

    def _on_event(self, e: dict) -> None:
        if e.get("kind") == "start":
            self.run_dir = e.get("run_dir") or self.run_dir
        self.event.emit(e)

    def run(self) -> None:  # noqa: D401 - QThread entry point
        try:
            from tlstudio.core import engine

            if self.run_ref is not None:
                final = engine.resume(self.run_ref, on_event=self._on_event, control=self.control,
                                      runs_dir=self.runs_dir, plugins=self.plugins, epochs=self.epochs)
            else:
                final = engine.train(self.project, on_event=self._on_event, control=self.control,
                                     runs_dir=self.runs_dir, plugins=self.plugins)
        except BaseException as e:  # noqa: BLE001 - e.g. a run folder that cannot be opened
            info = ErrorInfo.from_exception(e)
            final = {"status": "failed", "message": info.message, "run_dir": self.run_dir}
            self.event.emit({"kind": "failed", "message": info.message, "details": info.details,
                             "advice": info.advice, "run_dir": self.run_dir, "time": time.time()})
        self.final = final or {}
        self.result.emit(self.final)

    # controls (GUI thread)
    def pause(self) -> None:
        self.control.pause()

    def resume_run(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def paused(self) -> bool:
        return self.control.paused


class RunFollower(QObject):
    """Tails a run folder's metrics.jsonl (a run another process writes: the CLI, torchrun)
    and emits its events; ``ended(status)`` once the run is over (done, failed, stopped, or
    its process gone)."""

    event = Signal(object)
    ended = Signal(str)

    TERMINAL = {"done", "failed", "stopped"}

    def __init__(self, run_dir: str | Path, interval_ms: int = 400, from_start: bool = True,
                 parent: QObject | None = None):
        super().__init__(parent)
        from tlstudio.core.runs import Run

        self.run = Run(run_dir)
        self.offset = 0 if from_start else (self.run.metrics_file.stat().st_size if self.run.metrics_file.exists() else 0)
        self.active = False
        self.events_seen = 0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)
        self._quiet_polls = 0

    def start(self) -> None:
        self.active = True
        self._timer.start()
        self.poll()

    def stop(self) -> None:
        self.active = False
        self._timer.stop()

    def poll(self) -> None:
        if not self.active:
            return
        events, self.offset = self.run.read_events_from(self.offset)
        ended = None
        for e in events:
            self.events_seen += 1
            self.event.emit(e)
            if e.get("kind") in self.TERMINAL:
                ended = e["kind"]
        if ended is None and not events:
            self._quiet_polls += 1
            if self._quiet_polls % 5 == 0:  # every ~2 s: has the writer gone?
                st = self.run.status()
                if st != "running":
                    events, self.offset = self.run.read_events_from(self.offset)
                    for e in events:
                        self.event.emit(e)
                    ended = st
        else:
            self._quiet_polls = 0
        if ended is not None:
            self.stop()
            self.ended.emit(ended)
