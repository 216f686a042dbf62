"""Honest comparisons in the window: "Compare with the plain recipe…" / "…with scratch".

``tlstudio.core.analysis.compare`` trains, for several seeds, the project as it stands against either
the recommended plain recipe on the same budget (does the technique help?
:func:`compare_with_baseline`) or the plain recipe from random initialisation (does the
pretrained model help? :func:`compare_with_scratch`), in a worker thread
(:class:`CompareWorker`); the dialog shows its progress, then both arms with their mean and
95% confidence interval, the difference, and the verdict — a warning banner when the
technique does not help or scratch does as well as transfer.
"""
from __future__ import annotations

import time

import numpy as np

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QProgressBar, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout)

from .widgets import Banner, ErrorPanel, fmt_num, hint

METRICS = [("", "The technique's own (accuracy; DANN: target accuracy; EWC: earlier task kept)"),
           ("accuracy", "Test accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("auc", "AUC (two classes)"),
           ("f1_macro", "Macro F1")]
AGAINST = [("baseline", "The plain recipe (fine-tuning with its defaults), same budget"),
           ("scratch", "Training from scratch (no pretrained weights), same budget")]


class CompareWorker(QThread):
    """Runs ``fn(*args, on_event=..., control=..., **kwargs)`` (a comparison, a recipe search)
    in its own thread; ``event(dict)`` for every engine event (queued), ``result(object)``
    with what it returns, or ``failed(object)`` (ErrorInfo)."""

    event = Signal(object)
    result = Signal(object)
    failed = Signal(object)

    def __init__(self, fn, *args, parent=None, **kwargs):
        super().__init__(parent)
        from tlstudio.core.engine import RunControl

        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.control = RunControl()
        self.comparison = None

    def run(self) -> None:  # noqa: D401 - QThread entry point
        from .tasks import ErrorInfo

        try:
            self.comparison = self.fn(*self.args, on_event=self.event.emit, control=self.control, **self.kwargs)
        except BaseException as e:  # noqa: BLE001 - a message in the dialog, never a crash
            self.failed.emit((ErrorInfo.from_exception(e),))
            return
        self.result.emit((self.comparison,))


def _ci_text(ci) -> str:
    lo, hi = ci
    return "–" if lo is None else f"{lo:.3f} to {hi:.3f}"


class WorkerDialog(QDialog):
    """A dialog that trains in a :class:`CompareWorker`: Start / Stop / Close (and ``extra``
    buttons), an error panel, one training at a time in the window (``studio.training_active``;
    the Train page greys Train out), and a clean stop when it closes (its runs stay, stopped).
    Subclasses give ``prefix`` (object names), ``what`` (for messages), ``stage`` (a label) and
    ``_set_running``."""

    prefix, what = "", "work"

    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.worker: CompareWorker | None = None
        self.error_info = None

    def _add_buttons(self, layout, *extra: str) -> list:
        self.error = ErrorPanel()
        layout.addWidget(self.error)
        self.buttons = QDialogButtonBox()
        role = QDialogButtonBox.ButtonRole.ActionRole
        self.start_btn = self.buttons.addButton("Start", role)
        self.start_btn.setObjectName(f"{self.prefix}Start")
        self.stop_btn = self.buttons.addButton("Stop", role)
        self.stop_btn.setObjectName(f"{self.prefix}Stop")
        self.stop_btn.setEnabled(False)
        more = [self.buttons.addButton(text, role) for text in extra]
        self.close_btn = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.close_btn.clicked.connect(self.close)
        layout.addWidget(self.buttons)
        return more

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _can_start(self) -> bool:
        """Commit the forms; say why not when the project cannot train or a run is training."""
        if self.running or self.studio.plugins is None:
            return False
        for commit in list(getattr(self.studio, "before_run", [])):
            commit()
        probs = self.studio.problems()
        why = ("The project cannot be trained yet:\n" + "\n".join(f"• {p}" for p in probs) if probs else
               f"A run is training in this window: start the {self.what} when it has finished."
               if self.studio.training_active else "")
        if why:
            self.error.show_error(why, title=f"Cannot start the {self.what}")
            return False
        self.error.clear()
        self.error_info = None
        return True

    def inputs(self) -> list:
        """The settings that cannot change while it runs."""
        return []

    def _set_running(self, on: bool) -> None:
        self.start_btn.setEnabled(not on)
        self.stop_btn.setEnabled(on)
        for w in self.inputs():
            w.setEnabled(not on)

    def _launch(self, worker: CompareWorker) -> None:
        self.worker = worker
        worker.event.connect(self._on_event)
        worker.result.connect(lambda box: self.show_result(box[0]))
        worker.failed.connect(lambda box: self._failed(box[0]))
        worker.finished.connect(self._thread_done)
        self.studio.training_active = True
        self._set_running(True)
        self.studio.problemsChanged.emit()  # the Train page greys Train out meanwhile
        worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.control.stop()
            self.stage.setText("Stopping after the current batch…")
            self.stop_btn.setEnabled(False)

    def _failed(self, info) -> None:
        self.error_info = info
        self.error.show_error(info.message, info.details, info.advice, title=f"The {self.what} failed")
        self.stage.setText("")

    def _thread_done(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.deleteLater()
        self.studio.training_active = False
        self._set_running(False)
        self.studio.problemsChanged.emit()
        self.studio.runsChanged.emit()

    def wait(self, ms: int = 60000) -> bool:
        if self.worker is not None:
            self.worker.control.stop()
            return self.worker.wait(ms)
        return True

    def closeEvent(self, e) -> None:  # noqa: N802 - closing stops the work (its runs stay, stopped)
        self.wait()
        super().closeEvent(e)


class ScratchCompareDialog(WorkerDialog):
    """Settings (against what, seeds, metric), Start/Stop, progress, and the two arms side by side."""

    prefix, what = "scratch", "comparison"

    def __init__(self, studio, parent=None, against: str = "scratch"):
        super().__init__(studio, parent)
        self.comparison = None
        self.setWindowTitle("Compare: does it help?")
        self.resize(900, 480)
        v = QVBoxLayout(self)
        v.addWidget(hint("Does your technique help, and does the pretrained model help? The project is trained as it "
                         "stands and, beside it, either the recommended plain recipe (fine-tuning with its defaults; "
                         "for DANN the same without the alignment, for EWC the same without the penalty) or that plain "
                         "recipe from random initialisation, with the same data, split, epochs and image size, once "
                         "per seed. Each seed is two full runs: keep the epochs small for a first look."))
        form = QFormLayout()
        self.against = QComboBox()
        self.against.setObjectName("compareAgainst")
        for key, title in AGAINST:
            self.against.addItem(title, key)
        self.set_against(against)
        form.addRow("Compare against", self.against)
        self.seeds = QSpinBox()
        self.seeds.setObjectName("scratchSeeds")
        self.seeds.setRange(1, 20)
        self.seeds.setValue(3)
        self.seeds.setToolTip("Seeds per arm: 2 or more give a 95% confidence interval; 3–5 for a decision")
        form.addRow("Seeds", self.seeds)
        self.metric_box = QComboBox()
        self.metric_box.setObjectName("scratchMetric")
        for key, title in METRICS:
            self.metric_box.addItem(title, key)
        form.addRow("Compare on", self.metric_box)
        v.addLayout(form)
        self.progress = QProgressBar()
        self.progress.setObjectName("scratchProgress")
        self.progress.setFormat("run %v of %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.hide()
        v.addWidget(self.progress)
        self.stage = QLabel("")
        self.stage.setObjectName("scratchStage")
        self.stage.setWordWrap(True)
        v.addWidget(self.stage)
        self.verdict = Banner("")
        self.verdict.hide()
        v.addWidget(self.verdict)
        self.table = QTableWidget(0, 6)
        self.table.setObjectName("scratchTable")
        self.table.setHorizontalHeaderLabels(["Arm", "Recipe", "Seeds", "Mean", "95% CI", "Per seed"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.hide()
        row = QHBoxLayout()
        row.addWidget(self.table, 3)
        self.plot = None  # per-seed values, mean and 95% CI of each arm (made with the first result)
        self._plot_row = row
        v.addLayout(row, 1)
        self._add_buttons(v)

    def start(self) -> bool:
        if not self._can_start():
            return False
        self.verdict.hide()
        self.table.hide()
        self.comparison = None
        n = self.seeds.value()
        self.progress.setRange(0, 2 * n)
        self.progress.setValue(0)
        self.progress.show()
        self.stage.setText("Starting…")
        from tlstudio.core.analysis.compare import compare_with_baseline, compare_with_scratch

        kind, metric = self.against.currentData(), self.metric_box.currentData() or None
        fn = compare_with_baseline if kind == "baseline" else compare_with_scratch
        self._launch(CompareWorker(fn, self.studio.run_project(), seeds=n, metric=metric or
                                   (None if kind == "baseline" else "accuracy"), runs_dir=self.studio.runs_dir(),
                                   plugins=self.studio.plugins, parent=self))
        return True

    def set_against(self, kind: str) -> "ScratchCompareDialog":
        """Compare against "baseline" (the plain recipe) or "scratch"."""
        i = self.against.findData(kind)
        if i >= 0 and not self.running:
            self.against.setCurrentIndex(i)
        return self

    def inputs(self) -> list:
        return [self.seeds, self.metric_box, self.against]

    def _on_event(self, e: dict) -> None:
        k = e.get("kind")
        if k == "stage" and e.get("total"):
            self.progress.setValue(int(e.get("index", 1)) - 1)
            self._arm = str(e.get("message", ""))
            self.stage.setText(self._arm)
        elif k == "epoch":
            self.stage.setText(f"{getattr(self, '_arm', '')} — epoch {e.get('epoch')}/{e.get('epochs')}")
        elif k == "done":
            self.progress.setValue(min(self.progress.maximum(), self.progress.value() + 1))

    def show_result(self, cmp) -> None:
        """Both arms, the difference and the verdict (a warning when scratch ≥ transfer)."""
        self.comparison = cmp
        self.progress.setValue(self.progress.maximum())
        rows = []
        for arm in (cmp.first, cmp.second):
            rows.append([arm.name, arm.recipe or arm.weights, str(len(arm.values)), fmt_num(arm.mean),
                         _ci_text(arm.ci95), ", ".join(f"{v:.3f}" for v in arm.values)
                         + (f"  ({len(arm.failures)} failed)" if arm.failures else "")])
        rows.append([f"{cmp.first.name} − {cmp.second.name}", "paired by seed", str(len(cmp._paired())),
                     fmt_num(cmp.difference), _ci_text(cmp.difference_ci95), ""])
        self.table.setRowCount(len(rows))
        for r, vals in enumerate(rows):
            for c, text in enumerate(vals):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.show()
        self._draw(cmp)
        self.verdict.set_text(cmp.verdict, warn=getattr(cmp, "negative_transfer", False)
                              or getattr(cmp, "does_not_help", False) or not cmp.complete)
        self.stage.setText(f"{cmp.metric.replace('_', ' ')} on the test split, {time.strftime('%H:%M')}.")

    def _draw(self, cmp) -> None:
        import pyqtgraph as pg

        from .charts import PALETTE, styled_plot

        if self.plot is None:
            self.plot = styled_plot("Seeds, mean, 95% CI", xlabel="", legend=False)
            self.plot.setObjectName("scratchPlot")
            self.plot.setMinimumWidth(240)
            self._plot_row.addWidget(self.plot, 2)
            self.plot.show()  # a layout only queues the show of a widget added to a visible dialog
        self.plot.clear()
        self.plot.getPlotItem().getAxis("bottom").setTicks([[(0, cmp.first.name), (1, cmp.second.name)]])
        self.plot.getPlotItem().setLabel("left", cmp.metric.replace("_", " "))
        for x, arm in enumerate((cmp.first, cmp.second)):
            color = PALETTE[x]
            if arm.values:
                self.plot.plot([x] * len(arm.values), arm.values, pen=None, symbol="o", symbolSize=7,
                               symbolBrush=color)
            if arm.mean is not None:
                self.plot.plot([x - 0.25, x + 0.25], [arm.mean, arm.mean], pen=pg.mkPen(color, width=3))
            lo, hi = arm.ci95
            if lo is not None:
                self.plot.addItem(pg.ErrorBarItem(x=np.array([x + 0.3]), y=np.array([arm.mean]),
                                                  top=np.array([hi - arm.mean]), bottom=np.array([arm.mean - lo]),
                                                  beam=0.12, pen=pg.mkPen(color, width=2)))
        self.plot.getPlotItem().enableAutoRange(x=False)
        self.plot.setXRange(-0.6, 1.6, padding=0)

    def _thread_done(self) -> None:
        super()._thread_done()
        self.progress.hide()
