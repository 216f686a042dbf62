"""The Evaluate page's decision tools: the positive class and the operating point of a
two-class run (a slider that re-calls every test image as it moves; "Use this operating
point"; "Choose on validation"), and the Calibration tab (reliability diagram, ECE / MCE /
Brier before and after, prediction-set coverage, leakage, results by subgroup).

The widgets only show and ask; the page's worker threads change the run
(:func:`tlstudio.core.analysis.redecide.redecide`)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .widgets import fmt_num, heading, hint

STEPS = 1000  # slider positions: thresholds in steps of 0.001


class DecisionPanel(QWidget):
    """Positive class, threshold slider, the operating point's figures and the buttons that
    store an operating point.  ``changed(positive, threshold)`` fires on every move."""

    changed = Signal(int, float)
    useRequested = Signal(int, float)
    chooseRequested = Signal(int, str, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.threshold = 0.5
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("Positive class (the finding)"))
        self.positive = QComboBox()
        self.positive.setObjectName("positiveClass")
        self.positive.setToolTip("The class that sensitivity is about: the finding you must not miss "
                                 "(malignant, abnormal ...). Specificity is about the other class.")
        self.positive.activated.connect(lambda _i: self._emit())
        prow.addWidget(self.positive, 1)
        v.addLayout(prow)
        srow = QHBoxLayout()
        srow.addWidget(QLabel("Threshold"))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("thresholdSlider")
        self.slider.setRange(0, STEPS)
        self.slider.setValue(STEPS // 2)
        self.slider.valueChanged.connect(self._moved)
        srow.addWidget(self.slider, 1)
        self.thr_label = QLabel("0.500")
        self.thr_label.setMinimumWidth(44)
        srow.addWidget(self.thr_label)
        v.addLayout(srow)
        self.op_label = QLabel()
        self.op_label.setObjectName("operatingPoint")
        self.op_label.setWordWrap(True)
        v.addWidget(self.op_label)
        self.stored = QLabel()
        self.stored.setObjectName("storedOperatingPoint")
        self.stored.setWordWrap(True)
        self.stored.setStyleSheet("color: #555;")
        v.addWidget(self.stored)
        brow = QHBoxLayout()
        self.use_btn = QPushButton("Use this operating point")
        self.use_btn.setObjectName("useOperatingPoint")
        self.use_btn.setToolTip("Store this positive class and threshold in the run (no retraining): predictions, "
                                "exports, the report and the model card use it from now on. A threshold set while "
                                "looking at the test figures makes them optimistic: prefer choosing on validation.")
        self.use_btn.clicked.connect(lambda: self.useRequested.emit(self.positive.currentIndex(), self.threshold))
        brow.addWidget(self.use_btn)
        brow.addSpacing(12)
        brow.addWidget(QLabel("or on validation:"))
        self.method = QComboBox()
        self.method.setObjectName("thresholdMethod")
        for text, key in (("sensitivity at least", "sensitivity"), ("specificity at least", "specificity"),
                          ("Youden's J", "youden")):
            self.method.addItem(text, key)
        brow.addWidget(self.method)
        self.target = QDoubleSpinBox()
        self.target.setObjectName("thresholdTarget")
        self.target.setRange(0.5, 1.0)
        self.target.setSingleStep(0.01)
        self.target.setDecimals(2)
        self.target.setValue(0.9)
        self.method.currentIndexChanged.connect(lambda _i: self.target.setEnabled(self.method.currentData() != "youden"))
        brow.addWidget(self.target)
        self.choose_btn = QPushButton("Choose")
        self.choose_btn.setObjectName("chooseOnValidation")
        self.choose_btn.setToolTip("Choose the threshold on the validation split (never on test) and store it.")
        self.choose_btn.clicked.connect(lambda: self.chooseRequested.emit(
            self.positive.currentIndex(), self.method.currentData(), float(self.target.value())))
        brow.addWidget(self.choose_btn)
        brow.addStretch(1)
        v.addLayout(brow)

    def set_run(self, class_names: list[str], positive: int, threshold: float, stored_text: str) -> None:
        """Show a run's classes and its stored operating point (no signal)."""
        self.positive.blockSignals(True)
        self.positive.clear()
        self.positive.addItems(class_names)
        self.positive.setCurrentIndex(positive)
        self.positive.blockSignals(False)
        self.set_threshold(threshold, emit=False)
        self.stored.setText(stored_text)

    def set_threshold(self, t: float, emit: bool = True) -> None:
        """Move to threshold ``t`` exactly (the slider shows the nearest step)."""
        self.threshold = float(t)
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(t * STEPS)))
        self.slider.blockSignals(False)
        self.thr_label.setText(f"{self.threshold:.3f}")
        if emit:
            self._emit()

    def _moved(self, v: int) -> None:
        self.threshold = v / STEPS
        self.thr_label.setText(f"{self.threshold:.3f}")
        self._emit()

    def _emit(self) -> None:
        self.changed.emit(self.positive.currentIndex(), self.threshold)


def stored_text(dec) -> str:
    """What the run stores now, in words."""
    if dec is None or dec.threshold is None:
        return "Stored: none (this run calls the most probable class)."
    how = {"validation": "chosen on validation", "": ""}.get(dec.chosen_on, f"set {dec.chosen_on}")
    return (f"Stored: positive '{dec.positive_class}', threshold {dec.threshold:.3f} ({dec.method}"
            + (f" {dec.target:.0%}" if dec.target else "") + (f", {how}" if how else "") + ").")


class CalibrationView(QWidget):
    """Reliability diagram, calibration and coverage figures, leakage, subgroups."""

    subgroupRequested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(heading("Calibration (test): is a probability of 0.8 right 8 times in 10?"))
        from .charts import styled_plot

        self.plot = styled_plot("Reliability diagram", xlabel="confidence (top class)", ylabel="share correct")
        self.plot.setObjectName("reliabilityPlot")
        self.plot.setMinimumHeight(240)
        left.addWidget(self.plot, 1)
        top.addLayout(left, 1)
        self.figures = QLabel("")
        self.figures.setObjectName("calibrationFigures")
        self.figures.setWordWrap(True)
        self.figures.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.figures.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.figures, 1)
        v.addLayout(top, 2)
        srow = QHBoxLayout()
        srow.addWidget(heading("Results by subgroup"))
        srow.addWidget(QLabel("Report by"))
        self.report_by = QComboBox()
        self.report_by.setObjectName("reportBy")
        self.report_by.activated.connect(lambda _i: self.subgroupRequested.emit(self.report_by.currentText()))
        srow.addWidget(self.report_by)
        srow.addStretch(1)
        v.addLayout(srow)
        self.sub_hint = hint("The test images carry no metadata columns (site, scanner, sex ...): give them in the "
                             "data's CSV to see results per subgroup.")
        v.addWidget(self.sub_hint)
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("subgroupTable")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        v.addWidget(self.table, 1)

    def show_results(self, res, data: dict) -> None:
        """Fill the diagram and figures from a run's results (``data``: its data.json)."""
        import pyqtgraph as pg

        from tlstudio.core.analysis.summary import decision_rows

        rep = res.metrics.get("decision") or {}
        cal = rep.get("calibration") or {}
        p = self.plot
        p.clear()
        p.plot([0, 1], [0, 1], pen=pg.mkPen("#999999", style=Qt.PenStyle.DashLine))
        for key, colour, name in (("before", "#D55E00", "before"), ("after", "#0072B2", "after calibration")):
            bins = [b for b in (cal.get(key) or {}).get("bins", []) if b["n"]]
            if bins:
                p.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], pen=pg.mkPen(colour, width=2),
                       symbol="o", symbolSize=6, symbolBrush=colour,
                       name=f"{name} (ECE {fmt_num((cal.get(key) or {}).get('ece'))})")
        p.getPlotItem().setXRange(0, 1, padding=0.02)
        p.getPlotItem().setYRange(0, 1, padding=0.02)
        rows = decision_rows(res.metrics, data)
        self.figures.setText("<br>".join(f"<b>{a}</b>: {b}" for a, b in rows) if rows else
                             "This run was trained before calibration and prediction sets existed: train it again "
                             "to see them.")
        cols = res.columns()
        self.report_by.clear()
        self.report_by.addItems(cols)
        self.sub_hint.setVisible(not cols)
        self.table.setVisible(bool(cols))
        sg = res.metrics.get("subgroups")
        if sg and sg.get("column") in cols:
            self.report_by.setCurrentText(sg["column"])
            self.show_subgroups(sg)
        elif cols:
            self.subgroupRequested.emit(cols[0])

    def show_subgroups(self, sg: dict) -> None:
        from tlstudio.core.analysis.summary import subgroup_table

        head, body, rule = subgroup_table({"subgroups": sg})
        self.table.setColumnCount(len(head))
        self.table.setHorizontalHeaderLabels(head)
        self.table.setRowCount(len(body))
        for r, row in enumerate(body):
            for c, text in enumerate(row):
                it = QTableWidgetItem(text)
                if c == len(row) - 1 and text:
                    it.setForeground(Qt.GlobalColor.red)
                self.table.setItem(r, c, it)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip(rule)


class DecisionMixin:
    """The Evaluate page's ROC and operating point: the positive class, the slider that
    re-calls every test image, and storing an operating point in the run."""

    def _show_roc(self) -> None:
        from .charts import styled_plot

        if self.roc_plot is None:
            self.roc_plot = styled_plot("ROC", xlabel="1 − specificity", ylabel="sensitivity")
            self.roc_plot.setObjectName("rocPlot")
            self.roc_plot.setMinimumHeight(220)
            self.roc_host.addWidget(self.roc_plot)
        import pyqtgraph as pg

        p = self.roc_plot
        p.clear()
        res = self.results
        pos = self.decision_panel.positive.currentIndex()
        self.roc = res.roc(pos)
        auc = res.metrics.get("auc")
        p.getPlotItem().setTitle(f"<span style='font-size:10pt; font-weight:600'>ROC, positive class "
                                 f"{res.class_names[pos]}</span>")
        p.plot([0, 1], [0, 1], pen=pg.mkPen("#999999", style=Qt.PenStyle.DashLine))
        p.plot(self.roc["fpr"], self.roc["tpr"], pen=pg.mkPen("#0072B2", width=2.5), name=f"AUC {fmt_num(auc)}")
        lg = p.getPlotItem().legend
        if lg is not None:
            lg.anchor(itemPos=(1, 1), parentPos=(1, 1), offset=(-10, -10))
        self.op_marker = pg.ScatterPlotItem(size=12, brush=pg.mkBrush("#D55E00"), pen=pg.mkPen("w"))
        p.addItem(self.op_marker)
        p.getPlotItem().setXRange(0, 1, padding=0.02)
        p.getPlotItem().setYRange(0, 1, padding=0.02)
        self.roc_box.show()
        self._show_operating_point(pos, self.decision_panel.threshold)

    def set_threshold(self, t: float) -> None:
        self.decision_panel.set_threshold(t)

    def set_positive(self, k: int) -> None:
        """Choose the positive class (what the combo box does)."""
        self.decision_panel.positive.setCurrentIndex(k)
        self.decision_panel.changed.emit(k, self.decision_panel.threshold)

    def _threshold_changed(self, pos: int, t: float) -> None:
        if self.results is None or self.roc is None:
            return
        if self.roc_plot is not None and not self.roc_plot.getPlotItem().titleLabel.text.endswith(
                f"{self.results.class_names[pos]}</span>"):
            self._show_roc()  # another positive class: its own ROC curve
            return
        self._show_operating_point(pos, t)

    def _show_operating_point(self, pos: int, t: float) -> None:
        """Re-call every test image at threshold ``t``: matrix, per-class table and banner follow."""
        res = self.results
        op = res.operating_point(t, pos)
        self.operating_point = op
        sens, spec = op["sensitivity"], op["specificity"]
        name = res.class_names[pos]
        self.op_label.setText(f"At threshold {t:.3f} (call <b>{name}</b> when its probability ≥ {t:.3f}): "
                              f"sensitivity <b>{fmt_num(sens)}</b>, specificity <b>{fmt_num(spec)}</b> — "
                              f"TP {op['tp']}, FN {op['fn']}, TN {op['tn']}, FP {op['fp']}")
        if sens is not None and spec is not None:
            self.op_marker.setData([1 - spec], [sens])
        dec = res.decision
        stored = (dec is not None and dec.threshold is not None and pos == res.positive
                  and abs(t - res.threshold) < 1e-12)
        self.calls = res.predicted.copy() if stored else res.calls_at(t, pos)
        self._fill_per_class()
        self._fill_matrix()
        acc = float((self.calls == res.labels).mean()) if len(res.labels) else None
        m = res.metrics
        self.summary.setText(" · ".join([
            f"<b>{Path(self.run_dir).name}</b>: {len(res.refs):,} test images",
            f"at {'the stored operating point' if stored else f'threshold {t:.3f}'}: accuracy {fmt_num(acc)}, "
            f"sensitivity ({name}) {fmt_num(sens)}, specificity {fmt_num(spec)}",
            f"AUC {fmt_num(m.get('auc'))}"]))

    def _change_decision(self, what: str, **kw) -> None:
        from tlstudio.core.analysis.redecide import redecide

        run_dir = self.run_dir
        self.decision_panel.stored.setText(f"{what}…")
        self.studio.tasks.submit(redecide, run_dir, **kw,
                                 on_done=lambda _dec, d=run_dir: (self.studio.runsChanged.emit(), self.load_run(d)),
                                 on_error=lambda info: self.error.show_info(info, "The operating point was not stored"))

    def _use_operating_point(self, pos: int, t: float) -> None:
        """Store the shown positive class and threshold in the run (decision.json; no retraining)."""
        if self.results is None:
            return
        self._change_decision("Storing the operating point", positive=self.results.class_names[pos], method="fixed",
                              threshold=t, chosen_on="by hand on the Evaluate page")

    def _choose_on_validation(self, pos: int, method: str, target: float) -> None:
        if self.results is None:
            return
        self._change_decision("Choosing on the validation split", positive=self.results.class_names[pos],
                              method=method, target=target)

    def _subgroups(self, column: str) -> None:
        res = self.results
        if res is None or not column:
            return
        calls = self.calls
        pos = self.decision_panel.positive.currentIndex() if res.binary else None
        self.studio.tasks.submit(res.subgroups, column, calls, pos, on_done=self.calibration.show_subgroups,
                                 on_error=lambda info: self.error.show_info(info, "Subgroups unavailable"))
