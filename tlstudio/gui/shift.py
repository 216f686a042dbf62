"""Domain shift in the window: the MMD test between the source images and the target-domain
images (``tlstudio.core.analysis.diagnostics.measure_shift`` in a worker), shown as the number, its
p-value, the plain-language explanation and a 2-D scatter of both domains' features; and a
DANN run's before/after measures (``domain_shift.json``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from .widgets import ErrorPanel, fmt_num, hint

DOMAIN_COLORS = {0: (0, 114, 178), 1: (213, 94, 0)}  # source blue, target vermilion (colour-blind safe)
DOMAIN_NAMES = {0: "source", 1: "target"}
CLASS_COLORS = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (213, 94, 0), (86, 180, 233),
                (240, 228, 66), (120, 120, 120)]


def measure(project, plugins, max_images: int, permutations: int, embedding: str, task=None) -> dict:
    """The MMD diagnostic between the project's source and target data, as a JSON dict
    (``ShiftReport.to_dict()``; worker thread)."""
    from tlstudio.core.analysis.diagnostics import measure_shift
    from tlstudio.core.errors import DataError

    p = project
    if not p.data.source:
        raise DataError("choose the source data first")
    if not p.data.target_source:
        raise DataError("choose the target-domain data first (the Target domain field)")
    phase = {"name": ""}

    def progress(name, done, total):
        phase["name"] = name
        if task is not None:
            task.phase = name
            task.report(done, total)

    rep = measure_shift(p.resolve(p.data.source), p.resolve(p.data.target_source), p.model.architecture,
                        weights=p.model.weights, image_size=int(p.model.image_size), source_format=p.data.format,
                        max_images=int(max_images), permutations=int(permutations), embedding=embedding,
                        seed=int(p.training.seed), device="cpu", plugins=plugins, progress=progress,
                        should_stop=(lambda: task.cancelled) if task is not None else None)
    return rep.to_dict()


def p_text(d: dict) -> str:
    p, n = d.get("p_value"), d.get("permutations") or 0
    if p is None:
        return "–"
    return f"{p:.3g}" if p >= 1e-3 or not n else f"< {1 / (n + 1):.1g}"


class ShiftView(QWidget):
    """One shift measure: MMD², p-value, the verdict, the explanation and the scatter."""

    def __init__(self, title: str = "", parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel(title)
        self.title.setStyleSheet("font-weight: 600;")
        self.title.setVisible(bool(title))
        lay.addWidget(self.title)
        self.numbers = QLabel("")
        self.numbers.setObjectName("shiftNumbers")
        self.numbers.setWordWrap(True)
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.numbers)
        self.explanation = QLabel("")
        self.explanation.setObjectName("shiftExplanation")
        self.explanation.setWordWrap(True)
        self.explanation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.explanation)
        crow = QHBoxLayout()
        crow.addWidget(QLabel("Colour the points by"))
        self.colour_by = QComboBox()
        self.colour_by.setObjectName("shiftColourBy")
        self.colour_by.addItem("domain", "domain")
        self.colour_by.addItem("class (shape = domain)", "class")
        self.colour_by.currentIndexChanged.connect(lambda _i: self.report and self._scatter(self.report.get("embedding") or {}))
        crow.addWidget(self.colour_by)
        crow.addStretch(1)
        lay.addLayout(crow)
        self.plot = None
        self.points: dict[str, np.ndarray] = {}  # domain -> (n, 2) points drawn (tests read it)
        self.report: dict | None = None
        self._lay = lay

    def show_report(self, d: dict) -> None:
        self.report = d
        verdict = ("<span style='color:#b03a2e'><b>shifted</b></span>" if d.get("shifted")
                   else "<span style='color:#1e7b34'><b>no evidence of a shift</b></span>")
        # the explanation repeats the sample sizes, permutations and kernel
        self.numbers.setText(f"<span style='font-size: 12pt'>MMD² = <b>{fmt_num(d.get('mmd2'), 4)}</b> · "
                             f"p-value = <b>{p_text(d)}</b> · {verdict}</span>")
        self.explanation.setText(d.get("explanation", ""))
        self._scatter(d.get("embedding") or {})

    def _scatter(self, emb: dict) -> None:
        import pyqtgraph as pg

        from .charts import styled_plot

        pts = np.asarray(emb.get("points") or [], dtype=float).reshape(-1, 2)
        dom = np.asarray(emb.get("domains") or [], dtype=int)
        method = {"pca": "PCA", "tsne": "t-SNE"}.get(emb.get("method", ""), emb.get("method", ""))
        if self.plot is None:
            self.plot = styled_plot("", xlabel="component 1", ylabel="component 2")
            self.plot.setObjectName("shiftScatter")
            self.plot.setMinimumHeight(260)
            self._lay.addWidget(self.plot, 1)
        self.plot.clear()
        self.points = {}
        if not len(pts) or len(pts) != len(dom) or not np.any(pts):
            self.plot.setTitle("no embedding recorded")
            return
        self.plot.setTitle(f"Features of both domains, {method} to two dimensions")
        labels = list(emb.get("labels") or [None] * len(pts))
        if len(labels) != len(pts):
            labels = [None] * len(pts)
        by_class = self.colour_by.currentData() == "class"
        classes = sorted({str(c) for c in labels if c is not None})
        for k in (0, 1):
            sel = dom == k
            if not sel.any():
                continue
            self.points[DOMAIN_NAMES[k]] = pts[sel]
            groups = ([(c, np.array([sel[i] and labels[i] is not None and str(labels[i]) == c for i in range(len(pts))]))
                       for c in classes] + [(None, np.array([sel[i] and labels[i] is None for i in range(len(pts))]))]
                      if by_class else [(None, sel)])
            for c, g in groups:
                if not g.any():
                    continue
                color = (CLASS_COLORS[classes.index(c) % len(CLASS_COLORS)] if by_class and c is not None
                         else (150, 150, 150) if by_class else DOMAIN_COLORS[k])
                name = (f"{DOMAIN_NAMES[k]} {c if c is not None else 'unlabelled'} ({int(g.sum())})" if by_class
                        else f"{DOMAIN_NAMES[k]} ({int(g.sum())})")
                item = pg.ScatterPlotItem(pts[g, 0], pts[g, 1], size=7, pen=pg.mkPen(None),
                                          brush=pg.mkBrush(*color, 170), symbol="o" if k == 0 else "t", name=name,
                                          data=[labels[i] for i in np.flatnonzero(g)], hoverable=True,
                                          tip=lambda x, y, data, d=DOMAIN_NAMES[k]: f"{d}, class {data}"
                                          if data is not None else f"{d}, unlabelled")
                self.plot.addItem(item)


class ShiftPanel(QGroupBox):
    """Data page: "Measure domain shift" between the source and the target-domain data."""

    def __init__(self, studio, parent=None):
        super().__init__("Domain shift (source vs target)", parent)
        self.studio = studio
        self.task = None
        self.result: dict | None = None
        lay = QVBoxLayout(self)
        lay.addWidget(hint("How different the target images look to the model: the maximum mean discrepancy (MMD) "
                           "between both sets' features, with a permutation test. Uses the Model page's network."))
        row = QHBoxLayout()
        self.button = QPushButton("Measure domain shift")
        self.button.setObjectName("measureShift")
        self.button.clicked.connect(lambda: self.start())
        row.addWidget(self.button)
        row.addWidget(QLabel("Picture"))
        self.embedding = QComboBox()
        self.embedding.setObjectName("shiftEmbedding")
        self.embedding.addItem("PCA", "pca")
        self.embedding.addItem("t-SNE (slower)", "tsne")
        row.addWidget(self.embedding)
        row.addWidget(QLabel("Images per side"))
        self.max_images = QSpinBox()
        self.max_images.setRange(10, 5000)
        self.max_images.setValue(300)
        row.addWidget(self.max_images)
        row.addWidget(QLabel("Permutations"))
        self.permutations = QSpinBox()
        self.permutations.setRange(50, 10000)
        self.permutations.setSingleStep(100)
        self.permutations.setValue(500)
        row.addWidget(self.permutations)
        row.addStretch(1)
        lay.addLayout(row)
        prow = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setObjectName("shiftProgress")
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self._cancel)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel)
        self.progress_row = QWidget()
        self.progress_row.setLayout(prow)
        self.progress_row.hide()
        lay.addWidget(self.progress_row)
        self.status = QLabel("")
        self.status.setObjectName("shiftStatus")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.error = ErrorPanel()
        lay.addWidget(self.error)
        self.view = ShiftView()
        self.view.hide()
        lay.addWidget(self.view, 1)
        self.update_enabled()

    def update_enabled(self) -> None:
        p = self.studio.project
        measurable = self.studio.traits().can("target-domain")
        ok = bool(p.data.source and p.data.target_source) and measurable
        self.button.setEnabled(ok and self.task is None)
        if not ok and self.task is None:
            self.status.setText("Choose a target domain above to measure the shift." if measurable
                                else "The shift measure compares images of classes.")

    def start(self) -> None:
        if self.task is not None:
            return
        self.error.clear()
        self.status.setText("Reading both image sets and extracting features…")
        self.progress.setRange(0, 0)
        self.progress_row.show()
        self.button.setEnabled(False)
        project = self.studio.project.model_copy(deep=True)
        self.task = self.studio.tasks.submit(
            measure, project, self.studio.plugins, self.max_images.value(), self.permutations.value(),
            self.embedding.currentData(), pass_task=True, pool="model", name="measure-shift",
            on_progress=self._progress, on_done=self._done, on_error=self._failed)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        phase = getattr(self.task, "phase", "") if self.task is not None else ""
        if phase:
            self.progress.setFormat(f"{phase}: %v / %m")

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finish(self) -> None:
        self.task = None
        self.progress_row.hide()
        self.update_enabled()

    def _done(self, d: dict) -> None:
        self._finish()
        self.result = d
        self.status.setText(f"Measured with {d.get('model')} ({d.get('weights')} weights) at {d.get('image_size')} px.")
        self.view.show_report(d)
        self.view.show()

    def _failed(self, info) -> None:
        cancelled = self.task is not None and self.task.cancelled
        self._finish()
        if cancelled:
            self.status.setText("The measure was cancelled.")
            return
        self.status.setText("The shift could not be measured.")
        self.error.show_info(info, "The shift could not be measured")


def read_run_shift(run_dir: str | Path) -> dict | None:
    """A run's ``domain_shift.json`` (DANN writes it: "before" and "after"), or None."""
    path = Path(run_dir) / "domain_shift.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and (d.get("before") or d.get("after")) else None


class RunShiftView(QWidget):
    """Evaluate page: a run's shift before and after adaptation, side by side."""

    def __init__(self, shift: dict, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        b, a = shift.get("before") or {}, shift.get("after") or {}
        self.summary = QLabel("")
        self.summary.setObjectName("runShiftSummary")
        self.summary.setWordWrap(True)
        parts = []
        if b:
            parts.append(f"before adaptation MMD² {fmt_num(b.get('mmd2'), 4)} (p {p_text(b)})")
        if a:
            parts.append(f"after adaptation MMD² {fmt_num(a.get('mmd2'), 4)} (p {p_text(a)})")
        self.summary.setText("<b>Domain shift</b>: " + " → ".join(parts) + ".")
        lay.addWidget(self.summary)
        lay.addWidget(hint("Before: the pretrained network's features; after: the adapted network's. The two MMD² come "
                           "from different feature spaces (each kernel's bandwidth follows its own median distance): "
                           "read each with its own p-value — a shift that is no longer significant means the "
                           "adapted features no longer tell the domains apart."))
        row = QHBoxLayout()
        self.before = ShiftView("Before adaptation")
        self.after = ShiftView("After adaptation")
        for view, d in ((self.before, b), (self.after, a)):
            if d:
                view.show_report(d)
                row.addWidget(view, 1)
        lay.addLayout(row, 1)
