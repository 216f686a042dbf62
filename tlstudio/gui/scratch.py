"""The negative-transfer check in the window: "Compare with training from scratch…".

``tlstudio.core.compare.compare_with_scratch`` trains the project (transfer) and its twin from
random initialisation for several seeds, in a worker thread (:class:`CompareWorker`); the
dialog shows its progress, then both arms with their mean and 95% confidence interval, the
difference, and the verdict — a warning banner when scratch does as well as transfer or better.
"""
from __future__ import annotations

import time

import numpy as np

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QProgressBar, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout)

from .widgets import Banner, ErrorPanel, fmt_num, hint

METRICS = [("accuracy", "Test accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("auc", "AUC (two classes)"),
           ("f1_macro", "Macro F1")]


class CompareWorker(QThread):
    """Runs ``compare_with_scratch`` in its own thread; ``event(dict)`` for every engine event
    (queued), ``result(object)`` with the ScratchComparison, or ``failed(object)`` (ErrorInfo)."""

    event = Signal(object)
    result = Signal(object)
    failed = Signal(object)

    def __init__(self, project, seeds: int, metric: str, runs_dir, plugins, parent=None):
        super().__init__(parent)
        from tlstudio.core.engine import RunControl

        self.project, self.seeds, self.metric = project, seeds, metric
        self.runs_dir, self.plugins = runs_dir, plugins
        self.control = RunControl()
        self.comparison = None

    def run(self) -> None:  # noqa: D401 - QThread entry point
        from tlstudio.core.compare import compare_with_scratch

        from .tasks import ErrorInfo

        try:
            self.comparison = compare_with_scratch(self.project, seeds=self.seeds, metric=self.metric,
                                                   on_event=self.event.emit, control=self.control,
                                                   runs_dir=self.runs_dir, plugins=self.plugins)
        except BaseException as e:  # noqa: BLE001 - a message in the dialog, never a crash
            self.failed.emit((ErrorInfo.from_exception(e),))
            return
        self.result.emit((self.comparison,))


def _ci_text(ci) -> str:
    lo, hi = ci
    return "–" if lo is None else f"{lo:.3f} to {hi:.3f}"


class ScratchCompareDialog(QDialog):
    """Settings (seeds, metric), Start/Stop, progress, and the two arms side by side."""

    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.worker: CompareWorker | None = None
        self.comparison = None
        self.error_info = None
        self.setWindowTitle("Compare with training from scratch")
        self.resize(900, 480)
        v = QVBoxLayout(self)
        v.addWidget(hint("Does the pretrained model help on your images? The project's recipe is trained as it "
                         "stands (transfer) and from random initialisation (scratch), with the same data, split, "
                         "epochs and settings, once per seed. Each seed is two full runs: keep the epochs small "
                         "for a first look."))
        form = QFormLayout()
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
        self.table.setHorizontalHeaderLabels(["Arm", "Weights", "Seeds", "Mean", "95% CI", "Per seed"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.hide()
        row = QHBoxLayout()
        row.addWidget(self.table, 3)
        self.plot = None  # per-seed values, mean and 95% CI of each arm (made with the first result)
        self._plot_row = row
        v.addLayout(row, 1)
        self.error = ErrorPanel()
        v.addWidget(self.error)
        self.buttons = QDialogButtonBox()
        self.start_btn = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.ActionRole)
        self.start_btn.setObjectName("scratchStart")
        self.stop_btn = self.buttons.addButton("Stop", QDialogButtonBox.ButtonRole.ActionRole)
        self.stop_btn.setObjectName("scratchStop")
        self.stop_btn.setEnabled(False)
        self.close_btn = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.close_btn.clicked.connect(self.close)
        v.addWidget(self.buttons)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self) -> bool:
        if self.running or self.studio.plugins is None:
            return False
        for commit in list(self.studio.before_run):
            commit()
        probs = self.studio.problems()
        if probs:
            self.error.show_error("The project cannot be trained yet:\n" + "\n".join(f"• {p}" for p in probs),
                                  title="Cannot compare")
            return False
        if self.studio.training_active:
            self.error.show_error("A run is training in this window: compare when it has finished.",
                                  title="Cannot compare")
            return False
        self.error.clear()
        self.verdict.hide()
        self.table.hide()
        self.comparison = self.error_info = None
        n = self.seeds.value()
        self.progress.setRange(0, 2 * n)
        self.progress.setValue(0)
        self.progress.show()
        self.stage.setText("Starting…")
        self.worker = CompareWorker(self.studio.run_project(), n, self.metric_box.currentData(), self.studio.runs_dir(),
                                    self.studio.plugins, parent=self)
        self.worker.event.connect(self._on_event)
        self.worker.result.connect(lambda box: self.show_result(box[0]))
        self.worker.failed.connect(lambda box: self._failed(box[0]))
        self.worker.finished.connect(self._thread_done)
        self.studio.training_active = True
        self._set_running(True)
        self._notify()
        self.worker.start()
        return True

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.control.stop()
            self.stage.setText("Stopping after the current batch…")
            self.stop_btn.setEnabled(False)

    def _set_running(self, on: bool) -> None:
        self.start_btn.setEnabled(not on)
        self.stop_btn.setEnabled(on)
        self.seeds.setEnabled(not on)
        self.metric_box.setEnabled(not on)

    def _notify(self) -> None:
        """The Train page greys Train out while the comparison trains."""
        page = self.parent()
        if hasattr(page, "update_buttons"):
            page.update_buttons()

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
        for arm in (cmp.transfer, cmp.scratch):
            rows.append([arm.name, arm.weights, str(len(arm.values)), fmt_num(arm.mean), _ci_text(arm.ci95),
                         ", ".join(f"{v:.3f}" for v in arm.values) + (f"  ({len(arm.failures)} failed)"
                                                                       if arm.failures else "")])
        rows.append(["transfer − scratch", "", str(len(cmp._paired())), fmt_num(cmp.difference),
                     _ci_text(cmp.difference_ci95), ""])
        self.table.setRowCount(len(rows))
        for r, vals in enumerate(rows):
            for c, text in enumerate(vals):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.show()
        self._draw(cmp)
        self.verdict.set_text(cmp.verdict, warn=cmp.negative_transfer or cmp.transfer.mean is None
                              or cmp.scratch.mean is None)
        self.stage.setText(f"{cmp.metric.replace('_', ' ')} on the test split, {time.strftime('%H:%M')}.")

    def _draw(self, cmp) -> None:
        import pyqtgraph as pg

        from .charts import PALETTE, styled_plot

        if self.plot is None:
            self.plot = styled_plot("Seeds, mean, 95% CI", xlabel="", legend=False)
            self.plot.setObjectName("scratchPlot")
            self.plot.setMinimumWidth(240)
            ax = self.plot.getPlotItem().getAxis("bottom")
            ax.setTicks([[(0, "transfer"), (1, "scratch")]])
            self._plot_row.addWidget(self.plot, 2)
        self.plot.clear()
        self.plot.getPlotItem().setLabel("left", cmp.metric.replace("_", " "))
        for x, arm in enumerate((cmp.transfer, cmp.scratch)):
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

    def _failed(self, info) -> None:
        self.error_info = info
        self.error.show_error(info.message, info.details, info.advice, title="The comparison failed")
        self.stage.setText("")

    def _thread_done(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.deleteLater()
        self.studio.training_active = False
        self._set_running(False)
        self._notify()
        self.progress.hide()
        self.studio.runsChanged.emit()

    def wait(self, ms: int = 60000) -> bool:
        if self.worker is not None:
            self.worker.control.stop()
            return self.worker.wait(ms)
        return True

    def closeEvent(self, e) -> None:  # noqa: N802 - closing stops the comparison (its runs stay, stopped)
        self.wait()
        super().closeEvent(e)
