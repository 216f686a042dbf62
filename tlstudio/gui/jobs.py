"""A training job the window started in other processes (``tlstudio train --nproc N`` through
``tlstudio.core.engine.distributed.RunProcess``), followed like any run another process writes."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

TERMINAL = {"done", "failed", "stopped"}


def start_job(project, nproc: int, runs_dir: Path | None, resume_dir: str | Path | None = None):
    """Save the run's project (absolute paths) in a private folder and start the job (or, with
    ``resume_dir``, continue that run in ``nproc`` processes); returns (RunProcess, that folder,
    its open log file).  Raises StudioError when N processes cannot run here (more processes
    than GPUs, a CUDA device without a GPU)."""
    from tlstudio.core.engine.distributed import RunProcess, check_processes

    check_processes(project.training.device, nproc)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio-job-"))
    try:
        log = open(tmp / "processes.log", "w+", encoding="utf-8")  # noqa: SIM115 - closed when the job ends
        if resume_dir is not None:
            job = RunProcess.start(resume_dir, nproc, resume=True, stderr=log)
            job.new_events()  # the run's earlier events (the page shows them from the folder): follow from here
        else:
            pfile = project.with_absolute_paths().save(tmp / "project.toml")
            job = RunProcess.start(pfile, nproc, runs_dir=runs_dir, stderr=log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return job, tmp, log


class ProcessFollower(QObject):
    """Feeds the events of a :class:`RunProcess` (``new_events()`` on a timer) to the page,
    as :class:`tlstudio.gui.tasks.RunFollower` does for a run it did not start; ``ended(status)``
    once its processes have exited.  A job whose processes end without a last event is recorded
    as failed, with the end of their output as the details."""

    event = Signal(object)
    ended = Signal(str)

    def __init__(self, job, workdir: Path | None = None, log=None, interval_ms: int = 300,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.job = job
        self.workdir = workdir
        self.log = log
        self.active = False
        self.terminal: str | None = None
        self._t_terminal = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    @property
    def run_dir(self) -> str:
        return str(self.job.run.dir)

    def start(self) -> None:
        self.active = True
        self._timer.start()

    def stop_job(self) -> None:
        """A clean stop at the next batch of every process (the run stays resumable)."""
        self.job.stop()

    def _emit(self, events: list[dict]) -> None:
        for e in events:
            self.event.emit(e)
            if e.get("kind") in TERMINAL:
                self.terminal = e["kind"]
                self._t_terminal = time.time()

    def poll(self) -> None:
        if not self.active:
            return
        self._emit(self.job.new_events())
        if self.job.running():
            # the last event is written just before the processes exit; wait for them a little
            if self.terminal is None or time.time() - self._t_terminal < 30:
                return
        else:
            self._emit(self.job.new_events())
        status = self.terminal
        if status is None:
            status = self._record_failure()
        self.finish()
        self.ended.emit(status)

    def _output_tail(self, n: int = 4000) -> str:
        if self.log is None:
            return ""
        try:
            self.log.flush()
            return Path(self.log.name).read_text(encoding="utf-8", errors="replace")[-n:]
        except OSError:
            return ""

    def _record_failure(self) -> str:
        from tlstudio.core.runs import DONE, FAILED, STOPPED

        run = self.job.run
        st = run.status_info().get("status")
        if st in (DONE, STOPPED):
            return st
        code = self.job.proc.poll()
        msg = (f"The training processes ended (exit status {code}) without finishing the run. "
               "The run can be resumed from its last completed epoch if it has one.")
        tail = self._output_tail()
        run.set_status(FAILED, message=msg)
        e = {"kind": "failed", "message": msg, "details": tail, "advice": "", "run_dir": str(run.dir),
             "time": time.time()}
        run.append_event(e)
        self.event.emit(e)
        return FAILED

    def finish(self) -> None:
        """Stop following and clean up the job's private folder."""
        self.active = False
        self._timer.stop()
        if self.log is not None:
            try:
                self.log.close()
            except OSError:
                pass
            self.log = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def wait(self, timeout: float) -> bool:
        """Ask the job to stop and wait for its processes (the window closes)."""
        if self.job.running():
            self.job.stop()
            try:
                self.job.wait(timeout)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: it goes on as a CLI run
                return False
        return True
