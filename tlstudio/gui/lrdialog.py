"""The learning-rate finder's dialog (Technique page › Advanced, Run › Find learning rate): the
range test runs in a worker; the loss is plotted against the learning rate and the suggested
rate can be applied."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QProgressBar, QVBoxLayout

from .tasks import ErrorInfo
from .widgets import ErrorPanel, hint


class LRFinderDialog(QDialog):
    """Runs the LR range test in a worker, plots loss against learning rate, offers the
    suggestion."""

    applied = Signal(float)

    def __init__(self, studio, module, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.module = module
        self.found = None
        self.setWindowTitle("Find a learning rate")
        self.resize(640, 460)
        v = QVBoxLayout(self)
        v.addWidget(hint("The range test trains briefly while raising the learning rate from very small to large and "
                         "records the loss. A good rate lies where the loss falls fastest, before it climbs."))
        from .charts import styled_plot

        self.plot = styled_plot("Loss against learning rate", xlabel="learning rate", ylabel="loss")
        self.plot.getPlotItem().setLogMode(x=True)
        v.addWidget(self.plot, 1)
        self.progress = QProgressBar()
        v.addWidget(self.progress)
        self.text = QLabel("Starting…")
        self.text.setWordWrap(True)
        v.addWidget(self.text)
        self.error = ErrorPanel()
        v.addWidget(self.error)
        self.buttons = QDialogButtonBox()
        self.apply_btn = self.buttons.addButton("Use the suggested rate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_btn.setEnabled(False)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self._apply)
        self.buttons.rejected.connect(self.reject)
        v.addWidget(self.buttons)
        self.control = None

    def start(self, steps: int = 100) -> None:
        from tlstudio.core.engine import RunControl

        self.control = RunControl()
        project = self.studio.run_project()

        def work(task):
            def on_event(e):
                if e.get("kind") == "progress" and e.get("total"):
                    task.report(e.get("done", 0), e.get("total", 1))

            return self.module.find_lr(project, plugins=self.studio.plugins, on_event=on_event, control=self.control,
                                       steps=steps)

        self.task = self.studio.tasks.submit(work, pool="model", pass_task=True, on_done=self._done,
                                             on_error=self._failed, on_progress=self._progress)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def reject(self) -> None:
        if self.control is not None:
            self.control.stop()
        super().reject()

    def _done(self, result) -> None:
        self.found = result
        lrs, losses = list(result.get("lrs", [])), list(result.get("losses", []))
        self.plot.plot(lrs, losses, pen={"color": "#0072B2", "width": 2})
        s = result.get("suggested")
        if s:
            import math

            import pyqtgraph as pg

            self.plot.addItem(pg.InfiniteLine(pos=math.log10(s), angle=90, pen=pg.mkPen("#D55E00", width=2),
                                              label=f"suggested {s:.2g}", labelOpts={"position": 0.9}))
            self.text.setText(f"Suggested learning rate: {s:.3g}")
            self.apply_btn.setEnabled(True)
        else:
            self.text.setText(result.get("note") or "No clear suggestion: the loss did not fall steadily.")
        self.progress.hide()

    def _failed(self, info: ErrorInfo) -> None:
        self.progress.hide()
        self.text.setText("The range test stopped.")
        self.error.show_info(info, "The learning-rate finder failed")

    def _apply(self) -> None:
        if self.found and self.found.get("suggested"):
            self.applied.emit(float(self.found["suggested"]))
        self.accept()
