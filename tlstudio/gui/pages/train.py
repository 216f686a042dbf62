"""Train: start, pause, resume and stop a run; live charts, progress with time left, the
log; follow a run another process writes; the command line that repeats a run."""
from __future__ import annotations

import html
import os
import shlex
import signal
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QSplitter,
                               QVBoxLayout, QWidget)

from ..charts import LiveCharts
from ..runlog import RunLog, done_summary, event_line  # noqa: F401 (event_line: imported from here before)
from ..tasks import RunFollower, TrainWorker
from ..widgets import Banner, ErrorPanel, fmt_num, fmt_seconds, heading
from . import Page

IDLE, TRAINING, FOLLOWING = "idle", "training", "following"


class TrainPage(Page):
    key = "train"
    runStarted = Signal(str)
    runEnded = Signal(str, str)  # run_dir, status

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.state = IDLE
        self.worker: TrainWorker | None = None
        self.follower: RunFollower | None = None
        self.job = None  # a ProcessFollower: a run the window started in other processes (Processes > 1)
        self.run_dir: str | None = None  # the run shown (trained, resumed, followed or opened)
        self.last_status: str | None = None
        self.events: list[dict] = []  # every event of the current session (tests read them)
        self._t_session = 0.0
        self._epochs = 0
        self._epoch_secs: list[float] = []
        self._first_epoch_done: int | None = None
        self._pending: dict | None = None
        self._progress_task: dict | None = None
        self._last_line = ""

        root = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.train_btn = QPushButton("▶  Train")
        self.train_btn.setObjectName("trainButton")
        self.train_btn.setToolTip("Start a new run with the project's settings (F5)")
        self.train_btn.clicked.connect(self.start)
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setObjectName("pauseButton")
        self.pause_btn.clicked.connect(self.pause)
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setObjectName("resumeButton")
        self.resume_btn.setToolTip("Continue a paused run, or a stopped or interrupted run from its last epoch")
        self.resume_btn.clicked.connect(self.resume)
        self.stop_btn = QPushButton("■  Stop")
        self.stop_btn.setObjectName("stopButton")
        self.stop_btn.setToolTip("Stop after the current batch; the run keeps its last completed epoch and can be resumed")
        self.stop_btn.clicked.connect(self.stop)
        self.copy_btn = QPushButton("Copy as command")
        self.copy_btn.setObjectName("copyCommand")
        self.copy_btn.setToolTip("Copy the command line that repeats this run: tlstudio train <run>/project.toml")
        self.copy_btn.clicked.connect(self.copy_command)
        for b in (self.train_btn, self.pause_btn, self.resume_btn, self.stop_btn):
            bar.addWidget(b)
        bar.addSpacing(16)
        bar.addWidget(QLabel("Processes"))
        self.procs = QSpinBox()
        self.procs.setObjectName("processes")
        self.procs.setRange(1, max(2, os.cpu_count() or 1))
        self.procs.setValue(1)
        self.procs.setToolTip("1: train in this window. N > 1: train in N processes (tlstudio train --nproc N, "
                              "torchrun; one per GPU, or CPU processes with gloo); the window follows the run, Stop "
                              "stops every process cleanly. Pause is not offered for several processes.")
        bar.addWidget(self.procs)
        bar.addSpacing(16)
        bar.addWidget(self.copy_btn)
        self.scratch_btn = QPushButton("Compare with scratch…")
        self.scratch_btn.setObjectName("compareScratch")
        self.scratch_btn.setToolTip("Compare with training from scratch: does the pretrained model help on these "
                                    "images? (the negative-transfer check, several seeds, mean and 95% CI)")
        self.scratch_btn.clicked.connect(self.compare_with_scratch)
        self.scratch_dialog = None
        bar.addWidget(self.scratch_btn)
        bar.addSpacing(16)
        self.state_label = QLabel()
        self.state_label.setObjectName("trainState")
        bar.addWidget(self.state_label, 1)
        root.addLayout(bar)
        self.reason = QLabel()
        self.reason.setObjectName("trainReason")
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet("color: #b03a2e;")
        root.addWidget(self.reason)
        self.command = QLabel()
        self.command.setObjectName("commandLine")
        self.command.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command.setStyleSheet("color: #333333;")
        self.command.setToolTip("This command, typed in a terminal, trains the same run again (the project file is "
                                "kept in the run's folder). Copy as command puts it on the clipboard.")
        self.command.hide()
        root.addWidget(self.command)

        prog = QHBoxLayout()
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setObjectName("epochProgress")
        self.epoch_bar.setFormat("epoch %v of %m")
        self.epoch_bar.setRange(0, 1)
        self.epoch_bar.setValue(0)
        self.batch_bar = QProgressBar()
        self.batch_bar.setObjectName("batchProgress")
        self.batch_bar.setFormat("")
        self.batch_bar.setRange(0, 1)
        self.batch_bar.setValue(0)
        self.eta = QLabel("")
        self.eta.setObjectName("timeLeft")
        self.eta.setMinimumWidth(260)
        self.batch_bar.hide()  # shown while a run goes
        prog.addWidget(self.epoch_bar, 1)
        prog.addWidget(self.batch_bar, 1)
        prog.addWidget(self.eta)
        root.addLayout(prog)

        self.error = ErrorPanel()
        root.addWidget(self.error)
        self.result = Banner("")
        self.result.hide()
        rrow = QHBoxLayout()
        rrow.addWidget(self.result, 1)
        self.eval_btn = QPushButton("Open in Evaluate")
        self.eval_btn.clicked.connect(lambda: self.window_.show_page("evaluate"))
        self.eval_btn.hide()
        rrow.addWidget(self.eval_btn)
        root.addLayout(rrow)

        split = QSplitter(Qt.Orientation.Vertical)
        self.charts = LiveCharts()
        self.charts.setObjectName("liveCharts")
        split.addWidget(self.charts)
        logw = QWidget()
        lv = QVBoxLayout(logw)
        lv.setContentsMargins(0, 0, 0, 0)
        lrow = QHBoxLayout()
        lrow.addWidget(heading("Log"))
        lrow.addStretch(1)
        self.details = QCheckBox("Show learning rates and the technique's own curves")
        self.details.setObjectName("chartDetails")
        self.details.setToolTip("The learning rate of every layer group (and what the technique adds, such as the "
                                "L2-SP distance): for checking a recipe, not for judging a model.")
        self.details.toggled.connect(self.charts.show_details)
        lrow.addWidget(self.details)
        lv.addLayout(lrow)
        self.log = RunLog()
        lv.addWidget(self.log)
        split.addWidget(logw)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([560, 150])
        root.addWidget(split, 1)

        self._timer = QTimer(self)
        self._timer.setInterval(100)  # progress widgets, like charts, update at most 10 times a second
        self._timer.timeout.connect(self._apply_progress)
        self._timer.start()
        studio.problemsChanged.connect(self.update_buttons)
        studio.pluginsChanged.connect(self.update_buttons)
        studio.projectEdited.connect(lambda section: self.show_plan() if section == "training" else None)
        studio.projectReplaced.connect(self.show_plan)
        self.update_buttons()
        self.show_plan()

    def show_plan(self) -> None:
        """Before a run: the project's planned epochs ("epoch 0 of 10"), not a run's leftovers."""
        if self.state == IDLE and not self.run_dir:
            self.epoch_bar.setRange(0, max(1, int(self.studio.project.training.epochs)))
            self.epoch_bar.setValue(0)

    # --- buttons ---------------------------------------------------------------------------------
    def update_buttons(self) -> None:
        probs = self.studio.problems()
        idle = self.state == IDLE
        paused = self.state == TRAINING and self.worker is not None and self.worker.paused
        self.train_btn.setEnabled(idle and not probs)
        self.pause_btn.setEnabled(self.state == TRAINING and not paused)
        self.resume_btn.setEnabled(paused or (idle and self.resumable_run() is not None))
        self.stop_btn.setEnabled(self.state == TRAINING or (self.state == FOLLOWING and (
            self.job is not None or self._followed_pid() is not None)))
        self.procs.setEnabled(idle)
        self.scratch_btn.setEnabled(idle and not probs)
        if idle and self.studio.training_active:  # the comparison with scratch is training
            self.train_btn.setEnabled(False)
        if idle and probs:
            self.reason.setText("Train is disabled:\n" + "\n".join(f"• {p}" for p in probs))
            self.reason.show()
        else:
            self.reason.hide()
        self.window_.training_state_changed(self.state, paused)

    def resumable_run(self) -> str | None:
        if not self.run_dir:
            return None
        from tlstudio.core.runs import Run

        try:
            return self.run_dir if Run(self.run_dir).resumable() else None
        except OSError:
            return None

    def _set_state(self, state: str) -> None:
        self.state = state
        self.batch_bar.setVisible(state != IDLE)
        self.studio.training_active = state == TRAINING
        self.update_buttons()

    # --- starting ------------------------------------------------------------------------------
    def _begin(self, title: str) -> None:
        self.error.clear()
        self.result.hide()
        self.eval_btn.hide()
        self.events = []
        self._t_session = time.time()
        self._epoch_secs = []
        self._first_epoch_done = None
        self._pending = None
        self._progress_task = None
        self.state_label.setText(title)
        self.epoch_bar.setValue(0)
        self.batch_bar.setValue(0)
        self.eta.setText("")

    def start(self) -> bool:
        """Start a new run of the project (False, with the reason shown, when it cannot)."""
        if self.state != IDLE or self.studio.training_active:
            return False
        for commit in list(self.studio.before_run):
            commit()
        if self.studio.problems():
            self.update_buttons()
            return False
        project = self.studio.run_project()
        if self.procs.value() > 1:
            return self.start_processes(project, self.procs.value())
        self._begin("Starting…")
        self.epoch_bar.setRange(0, max(1, project.training.epochs))
        self.charts.reset()
        self.log.clear()
        self.run_dir = None
        self._log(f"Training {project.technique.id} on {project.model.architecture}, {project.training.epochs} epochs.")
        self._launch(TrainWorker(project=project, runs_dir=self.studio.runs_dir(), plugins=self.studio.plugins))
        return True

    def start_processes(self, project, nproc: int, resume_dir: str | None = None) -> bool:
        """Train in ``nproc`` processes (``tlstudio train --nproc N`` as a subprocess) and follow the
        run; with ``resume_dir``, continue that stopped or interrupted run in ``nproc`` processes."""
        from tlstudio.core.runs import Run

        from ..jobs import ProcessFollower, start_job
        from ..tasks import ErrorInfo

        self._begin(f"{'Resuming' if resume_dir else 'Starting'} in {nproc} processes…")
        if resume_dir:
            self.show_history(resume_dir, keep_state=True)
            project = Run(resume_dir).project()
        else:
            self.charts.reset()
        self.log.clear()
        try:
            job, workdir, log = start_job(project, nproc, self.studio.runs_dir(), resume_dir=resume_dir)
        except Exception as e:  # noqa: BLE001 - e.g. more processes than GPUs: said plainly
            info = ErrorInfo.from_exception(e)
            self.error.show_error(info.message, info.details, info.advice, title="The run could not start")
            self.state_label.setText("Not started.")
            return False
        self.run_dir = str(job.run.dir)
        self._log(f"{'Resuming' if resume_dir else 'Training'} {project.technique.id} on "
                  f"{project.model.architecture}, {project.training.epochs} epochs, in {nproc} processes "
                  f"(tlstudio train --nproc {nproc}); run folder {self.run_dir}.")
        self.job = ProcessFollower(job, workdir, log, parent=self)
        self.job.event.connect(self.on_event)
        self.job.ended.connect(self._follow_ended)
        self._set_state(FOLLOWING)
        self.studio.runsChanged.emit()
        self.job.start()
        return True

    def compare_with_scratch(self):
        """The negative-transfer check's dialog (returned, for tests)."""
        from ..scratch import ScratchCompareDialog

        if self.scratch_dialog is None:
            self.scratch_dialog = ScratchCompareDialog(self.studio, self)
            self.scratch_dialog.finished.connect(lambda _r: self.update_buttons())
        self.scratch_dialog.show()
        self.scratch_dialog.raise_()
        return self.scratch_dialog

    def resume(self) -> bool:
        """Continue a paused run, or resume the last stopped or interrupted one."""
        if self.state == TRAINING and self.worker is not None and self.worker.paused:
            self.worker.resume_run()
            self.state_label.setText("Training…")
            self.log.follow()
            self._log("Resumed.")
            self.update_buttons()
            return True
        run = self.resumable_run()
        if self.state != IDLE or run is None:
            return False
        return self.resume_run(run)

    def resume_run(self, run_dir: str) -> bool:
        """Resume a stopped, failed or interrupted run in its own folder."""
        if self.state != IDLE or self.studio.plugins is None:
            return False
        from tlstudio.core.runs import Run

        if self.procs.value() > 1:
            return self.start_processes(None, self.procs.value(), resume_dir=str(run_dir))
        self._begin("Resuming…")
        self.show_history(run_dir, keep_state=True)
        self.run_dir = str(run_dir)
        self.log.follow()  # the log follows the resumed run from its first new line
        self._log(f"Resuming {Run(run_dir).id}.")
        self._launch(TrainWorker(run_ref=str(run_dir), runs_dir=Path(run_dir).parent, plugins=self.studio.plugins))
        return True

    def _launch(self, worker: TrainWorker) -> None:
        self.worker = worker
        worker.event.connect(self.on_event)
        worker.result.connect(self._finished)
        worker.finished.connect(self._thread_done)
        self._set_state(TRAINING)
        worker.start()

    def pause(self) -> None:
        if self.state == TRAINING and self.worker is not None:
            self.worker.pause()
            self.state_label.setText("Paused (after the current batch). Resume continues.")
            self._log("Paused.")
            self.update_buttons()

    def stop(self) -> None:
        if self.state == TRAINING and self.worker is not None:
            self.worker.stop()
            self.state_label.setText("Stopping after the current batch…")
            self.stop_btn.setEnabled(False)
        elif self.state == FOLLOWING and self.job is not None:
            self.job.stop_job()
            self.state_label.setText("Stopping every process after the current batch…")
            self._log("Stop requested: every process stops at the same batch; the run can be resumed.")
            self.stop_btn.setEnabled(False)
        elif self.state == FOLLOWING:
            pid = self._followed_pid()
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGINT)
                    self.state_label.setText(f"Asked process {pid} to stop…")
                except OSError as e:
                    self.state_label.setText(f"Could not stop process {pid}: {e}")

    def _finished(self, final: dict) -> None:
        self.last_status = final.get("status")
        self.run_dir = final.get("run_dir") or (self.worker.run_dir if self.worker else self.run_dir)

    def _thread_done(self) -> None:
        w = self.worker
        self.worker = None
        if w is not None:
            w.deleteLater()
        self._pending = None  # the run has ended: no time left to show
        self.charts.redraw()
        self._set_state(IDLE)
        self.studio.runsChanged.emit()
        if self.last_status == "done" and self.run_dir:
            self.studio.set_current_run(self.run_dir)  # Evaluate and Predict show the finished run
        self.runEnded.emit(self.run_dir or "", self.last_status or "")

    def wait(self, ms: int = 30000) -> bool:
        """Stop a running worker and wait for its thread (closing the window)."""
        if self.worker is not None:
            self.worker.stop()
            return self.worker.wait(ms)
        if self.job is not None:
            return self.job.wait(ms / 1000)
        if self.scratch_dialog is not None:
            return self.scratch_dialog.wait(ms)
        return True

    # --- following and history -------------------------------------------------------------------
    def follow(self, run_dir: str) -> bool:
        """Follow a run another process writes (its metrics.jsonl), from its first event."""
        if self.state != IDLE:
            return False
        self._begin("Following…")
        self.charts.reset()
        self.log.clear()
        self.run_dir = str(run_dir)
        self._log(f"Following {Path(run_dir).name} (written by another process).")
        self.follower = RunFollower(run_dir, parent=self)
        self.follower.event.connect(self.on_event)
        self.follower.ended.connect(self._follow_ended)
        self._set_state(FOLLOWING)
        self.follower.start()
        return True

    def stop_following(self) -> None:
        if self.follower is not None:
            self.follower.stop()
            self._follow_ended("not followed any more")

    def _follow_ended(self, status: str) -> None:
        self.follower = None
        self.job = None
        self.last_status = status
        self._pending = None
        self.charts.redraw()
        if status not in ("done", "failed", "stopped"):
            self.state_label.setText(f"The run's process ended ({status}).")
        self._set_state(IDLE)
        self.studio.runsChanged.emit()
        if status == "done" and self.run_dir:
            self.studio.set_current_run(self.run_dir)
        self.runEnded.emit(self.run_dir or "", status)

    def _followed_pid(self) -> int | None:
        if self.state != FOLLOWING or not self.run_dir:
            return None
        from tlstudio.core.runs import Run, pid_alive

        info = Run(self.run_dir).status_info()
        pid = int(info.get("pid", -1))
        return pid if info.get("status") == "running" and pid != os.getpid() and pid_alive(pid) else None

    def show_history(self, run_dir: str, keep_state: bool = False) -> None:
        """Show a run's curves from its metrics.jsonl (an opened run, or before resuming it)."""
        from tlstudio.core.runs import Run

        run = Run(run_dir)
        events, _ = run.read_events_from(0)
        self.charts.reset()
        self.charts.feed_many(events)
        if not keep_state:
            if self.state != IDLE:
                return
            self.log.clear()
            self.run_dir = str(run_dir)
            self.error.clear()
            self.result.hide()
            self.state_label.setText(f"Run {run.id} ({run.status()})")
            for e in events:
                self._log_event(e)
            last = next((e for e in reversed(events) if e.get("kind") in ("done", "failed", "stopped")), None)
            if last is not None:
                self._show_end(last)
            starts = [e for e in events if e.get("kind") == "start"]
            n = int(starts[-1].get("epochs") or 0) if starts else 0
            eps = [int(e.get("epoch", 0)) for e in events if e.get("kind") == "epoch"]
            self.epoch_bar.setRange(0, max(1, n))
            self.epoch_bar.setValue(max(eps, default=0))
            self.batch_bar.setFormat("")
            self.batch_bar.setValue(0)
            self.eta.setText("")
            self.update_buttons()

    # --- events ----------------------------------------------------------------------------------
    def on_event(self, e: dict) -> None:
        """One engine event (GUI thread; cheap: drawing is left to the timers)."""
        self.events.append(e)
        self.charts.feed(e)
        k = e.get("kind")
        if k in ("batch", "progress"):
            self._pending = e
            return
        if k == "start":
            self.run_dir = e.get("run_dir") or self.run_dir
            self._epochs = int(e.get("epochs") or 0)
            self.epoch_bar.setRange(0, max(1, self._epochs))
            self.state_label.setText(f"{'Resumed' if e.get('resumed') else 'Training'}: {e.get('technique')} on "
                                     f"{e.get('model')} — {e.get('device')}")
            if self.run_dir:
                self.studio.set_current_run(self.run_dir)
                self.runStarted.emit(self.run_dir)
                self._show_command()
        elif k == "epoch":
            ep = int(e.get("epoch", 0))
            self.epoch_bar.setValue(ep)
            if e.get("seconds"):
                self._epoch_secs.append(float(e["seconds"]))
            if self._first_epoch_done is None:
                self._first_epoch_done = ep - 1
        self._log_event(e)
        if k in ("done", "failed", "stopped"):
            self._pending = None
            self._show_end(e)

    def _apply_progress(self) -> None:
        e, self._pending = self._pending, None
        if e is None:
            return
        if e.get("kind") == "progress":
            total = int(e.get("total") or 0)
            self.batch_bar.setFormat(f"{e.get('task', 'working')}: %v of %m")
            self.batch_bar.setRange(0, max(1, total))
            self.batch_bar.setValue(int(e.get("done") or 0))
            return
        nb, b, ep = int(e.get("batches") or 1), int(e.get("batch") or 0), int(e.get("epoch") or 1)
        self.batch_bar.setFormat(f"epoch {ep}: batch %v of %m")
        self.batch_bar.setRange(0, max(1, nb))
        self.batch_bar.setValue(b)
        self.epoch_bar.setValue(ep - 1)
        done = (ep - 1) + b / nb
        left = self.time_left(done)
        speed = e.get("images_per_s")
        self.eta.setText(f"{fmt_num(speed, 0) + ' images/s · ' if speed else ''}"
                         f"about {fmt_seconds(left)} left" if left is not None else "estimating time left…")

    def time_left(self, done_epochs: float) -> float | None:
        """Seconds left: from whole epochs measured in this session (validation included),
        else from the pace of the batches so far."""
        n = self._epochs
        if not n:
            return None
        if self._epoch_secs:
            return max(0.0, (n - done_epochs) * (sum(self._epoch_secs) / len(self._epoch_secs)))
        start = self._first_epoch_done if self._first_epoch_done is not None else None
        el = time.time() - self._t_session
        base = start if start is not None else 0
        progressed = done_epochs - base
        if progressed <= 0.02 or el <= 0:
            return None
        return (n - done_epochs) * el / progressed

    def _show_end(self, e: dict) -> None:
        k = e.get("kind")
        self._show_command()  # the run's project file exists by now
        if k == "done":
            self.result.set_text(done_summary(e), warn=False)
            self.result.show()
            self.eval_btn.show()
            self.state_label.setText("Finished.")
            self.epoch_bar.setValue(self.epoch_bar.maximum())
            self.eta.setText("")
        elif k == "stopped":
            self.result.set_text(e.get("message") or "Stopped. The run can be resumed.", warn=True)
            self.result.show()
            self.state_label.setText("Stopped — Resume continues from the last completed epoch.")
            self.eta.setText("")
        elif k == "failed":
            self.error.show_error(e.get("message", "The run failed."), e.get("details", ""), e.get("advice", ""),
                                  title="The run failed")
            self.state_label.setText("Failed — the last completed epoch is kept (Resume continues from it)."
                                     if self.resumable_run() else "Failed before its first epoch was complete.")
            self.eta.setText("")

    # --- log ---------------------------------------------------------------------------------------
    def _log(self, text: str, when: float | None = None) -> None:
        self.log.add(text, when)

    def _log_event(self, e: dict) -> None:
        """One line per event worth reading, stamped with the event's own time."""
        text = event_line(e)
        if text is not None and not (e.get("kind") == "log" and f"— {e.get('message')}" == self._last_line):
            self._log(text, e.get("time"))  # (a stage's message comes as a stage event and a log line: once)
        self._last_line = text or self._last_line

    # --- command line --------------------------------------------------------------------------------
    def command_line(self) -> str | None:
        """The CLI line that repeats the run (or trains the saved project)."""
        if self.run_dir and (Path(self.run_dir) / "project.toml").exists():
            n = max((int(e.get("processes") or 1) for e in self.events if e.get("kind") == "start"), default=1)
            return f"tlstudio train {shlex.quote(str(Path(self.run_dir) / 'project.toml'))}" + (
                f" --nproc {n}" if n > 1 else "")
        if self.studio.path and not self.studio.dirty:
            return f"tlstudio train {shlex.quote(str(self.studio.path))}"
        return None

    def _show_command(self) -> None:
        cmd = self.command_line()
        self._show_command_text(cmd)

    def _show_command_text(self, cmd: str | None) -> None:
        self.command.setText(f"Repeat this run from a terminal: <tt>{html.escape(cmd)}</tt>" if cmd else "")
        self.command.setVisible(bool(cmd))

    def copy_command(self) -> str | None:
        cmd = self.command_line()
        if cmd is None:
            self.state_label.setText("Save the project (or start a run) first: the command repeats a saved project file.")
            return None
        QGuiApplication.clipboard().setText(cmd)
        self._show_command_text(cmd)
        self.studio.message.emit(f"Copied: {cmd}")
        return cmd

