"""Evaluate: a finished run's test results a clinician can check — per-class table, ROC with
a threshold slider for two classes, and a confusion matrix whose cells open exactly those
images, each with its probabilities and a Grad-CAM heat map.  A technique may add its own
result view (``Technique.result_view``), shown here for tasks other than classification."""
from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget,
                               QVBoxLayout, QWidget)

from tlstudio.core.tasks.traits import task_traits

from ..decision import DecisionMixin
from ..widgets import ErrorPanel, ImageView, ThumbStrip, fmt_num, heading, hint, pixmap_from_array, thumbnail
from . import Page

MAX_CELL_IMAGES = 60
CELL_HINTS = {"image": "Click a cell to see exactly those test images, each with its probabilities and a Grad-CAM "
                       "heat map of where the model looked (red = strongest).",
              "text": "Click a cell to see exactly those test texts, each with its probabilities (the technique's "
                      "own tab, and the Predict page, show which words drove a prediction)."}


def load_results(run_dir: str):
    from tlstudio.core.analysis.results import EvaluationResults
    from tlstudio.core.runs import Run

    res = EvaluationResults.load(run_dir)
    roc = res.roc() if res.binary else None
    try:
        project = Run(run_dir).project()
    except Exception:  # noqa: BLE001 - images then cannot be shown, the numbers can
        project = None
    return res, roc, project


def run_texts(run_dir: str) -> dict[str, str]:
    """ref -> text of a text run's test predictions (the "text" column of test_predictions.csv)."""
    import csv

    try:
        with open(Path(run_dir) / "test_predictions.csv", newline="", encoding="utf-8") as f:
            return {r["ref"]: r.get("text") or "" for r in csv.DictReader(f) if r.get("ref")}
    except (OSError, csv.Error, KeyError):
        return {}


def load_results_any(run_dir: str):
    """(results, roc, project, texts): ``texts`` (ref -> text) for a text run, else None."""
    res, roc, project = load_results(run_dir)
    texts = run_texts(run_dir) if project is not None and task_traits(project.task).texts else None
    return res, roc, project, texts


def cell_images(images, refs: list[str], size: int = 96) -> list[tuple[str, np.ndarray | None, str]]:
    out = []
    for ref in refs:
        try:
            out.append((ref, thumbnail(images.load(ref), size), ""))
        except Exception as e:  # noqa: BLE001 - a moved or deleted file is named, the rest load
            out.append((ref, None, str(e)))
    return out


def run_predictor(run_dir: str, plugins, device: str = "cpu"):
    from tlstudio.core.delivery.predict import Predictor

    return Predictor.from_run(run_dir, plugins=plugins, device=device)


def cam_for(predictor, images, ref: str, size: int | None = None):
    """Grad-CAM of a result row's image: (ref, CamResult, overlay thumbnail)."""
    from tlstudio.core.analysis.gradcam import explain

    arr = images.load(ref)
    res = explain(predictor, arr, ref=ref)
    return ref, res, (thumbnail(res.overlay, size) if size else None)


def prediction_device(studio) -> str:
    d = studio.settings.device or "auto"
    return "cpu" if d == "auto" and studio.training_active else d


class EvaluatePage(DecisionMixin, Page):
    key = "evaluate"

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.results = None
        self.roc = None
        self.images = None
        self.run_dir: str | None = None
        self.predictor = None
        self._predictor_for: str | None = None
        self._predictor_task = None
        self.cell_refs: list[str] = []
        self.cell_rows: list[int] = []
        self.cams: dict[str, object] = {}
        self.cell_pos: tuple[int, int] | None = None
        self.texts: dict[str, str] | None = None  # a text run's test texts by ref
        self.extra_view = None
        self.shift_view = None  # a DANN run's before/after domain shift
        self.calls = None  # the class each test image is called at the shown operating point
        self.data_info: dict = {}

        root = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("evalRun")
        self.run_combo.setMinimumWidth(420)
        self.run_combo.activated.connect(lambda i: self.load_run(self.run_combo.itemData(i)))
        top.addWidget(self.run_combo)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.fill_runs)
        top.addWidget(refresh)
        top.addStretch(1)
        root.addLayout(top)
        self.summary = QLabel("Train a run (or open one on the Runs page) to see its test results here.")
        self.summary.setObjectName("evalSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.summary)
        self.error = ErrorPanel()
        root.addWidget(self.error)

        self.tabs = QTabWidget()
        root.addWidget(self.tabs, 1)
        main = QSplitter(Qt.Orientation.Horizontal)
        # left: per class, ROC
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(heading("Per class (test set)"))
        self.per_class = QTableWidget(0, 6)
        self.per_class.setObjectName("perClassTable")
        self.per_class.setHorizontalHeaderLabels(["Class", "Sensitivity", "Specificity", "Precision", "F1", "Support"])
        self.per_class.verticalHeader().hide()
        self.per_class.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        hh = self.per_class.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.per_class.setMinimumHeight(90)
        lv.addWidget(self.per_class)
        self.roc_box = QGroupBox("ROC curve and operating point (two classes)")
        rv = QVBoxLayout(self.roc_box)
        self.roc_plot = None
        self.roc_host = QVBoxLayout()
        rv.addLayout(self.roc_host, 1)
        from ..decision import CalibrationView, DecisionPanel

        self.decision_panel = DecisionPanel()
        self.decision_panel.changed.connect(self._threshold_changed)
        self.decision_panel.useRequested.connect(self._use_operating_point)
        self.decision_panel.chooseRequested.connect(self._choose_on_validation)
        self.slider = self.decision_panel.slider
        self.op_label = self.decision_panel.op_label
        rv.addWidget(self.decision_panel)
        self.roc_box.hide()
        lv.addWidget(self.roc_box, 1)
        lv.addStretch(0)
        main.addWidget(left)

        # right: confusion matrix, the cell's images, one image in detail
        right = QWidget()
        rr = QVBoxLayout(right)
        rr.addWidget(heading("Confusion matrix: rows = true class, columns = predicted"))
        self.cell_hint = hint(CELL_HINTS["image"])
        rr.addWidget(self.cell_hint)
        self.matrix = QTableWidget(0, 0)
        self.matrix.setObjectName("confusionMatrix")
        self.matrix.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matrix.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.matrix.cellClicked.connect(self.open_cell)
        rr.addWidget(self.matrix)
        self.cell_title = heading("")
        self.cell_title.setObjectName("cellTitle")
        rr.addWidget(self.cell_title)
        self.cell_list = ThumbStrip(96, wrap=True)
        self.cell_list.setObjectName("cellImages")
        self.cell_list.setMinimumHeight(120)
        self.cell_list.currentItemChanged.connect(self._image_selected)
        rr.addWidget(self.cell_list, 1)
        detail = QHBoxLayout()
        self.view_image = ImageView(min_size=120)
        self.view_cam = ImageView(min_size=120, placeholder="… and its heat map here.")
        self.view_cam.setObjectName("camView")
        self.view_image.set_placeholder("Click a cell of the matrix, then an image: it appears here …")
        self.view_text = QLabel()
        self.view_text.setObjectName("imageProbabilities")
        self.view_text.setWordWrap(True)
        self.view_text.setMinimumWidth(200)
        self.view_text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.view_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        detail.addWidget(self.view_image, 1)
        detail.addWidget(self.view_cam, 1)
        detail.addWidget(self.view_text, 1)
        rr.addLayout(detail, 2)
        main.addWidget(right)
        main.setStretchFactor(0, 2)
        main.setStretchFactor(1, 3)
        main.setSizes([470, 930])
        self.tabs.addTab(main, "Classification")
        self.calibration = CalibrationView()
        self.calibration.subgroupRequested.connect(self._subgroups)
        self.tabs.addTab(self.calibration, "Calibration and subgroups")

        studio.runsChanged.connect(self.fill_runs)
        studio.currentRunChanged.connect(self._current_changed)
        self.fill_runs()

    def activated(self) -> None:
        if self.run_dir is None and self.run_combo.count():
            self.load_run(self.run_combo.currentData() or self.run_combo.itemData(0))

    # --- runs ------------------------------------------------------------------------------------
    def fill_runs(self) -> None:
        from tlstudio.core.analysis.results import EvaluationResults
        from tlstudio.core.runs import list_runs, summarize

        cur = self.run_dir or self.studio.current_run
        self.run_combo.clear()
        try:
            runs = list_runs(self.studio.runs_dir())
        except OSError:
            runs = []
        for r in runs:
            if r.status() != "done":
                continue
            try:
                s = summarize(r)
            except Exception:  # noqa: BLE001
                continue
            acc = s.test.get("accuracy")
            label = f"{r.id} — {s.technique} on {s.model}" + (f" — test accuracy {acc:.3f}" if acc is not None else "")
            if not EvaluationResults.available(r.dir):
                label += " (custom results)"
            self.run_combo.addItem(label, str(r.dir))
        if cur:
            i = self.run_combo.findData(str(cur))
            if i >= 0:
                self.run_combo.setCurrentIndex(i)

    def _current_changed(self, run_dir: str) -> None:
        from tlstudio.core.runs import Run

        if run_dir and Run(run_dir).status() == "done":
            self.fill_runs()
            self.load_run(run_dir)

    def load_run(self, run_dir: str | None) -> None:
        if not run_dir:
            return
        self.run_dir = str(run_dir)
        i = self.run_combo.findData(self.run_dir)
        if i >= 0:
            self.run_combo.setCurrentIndex(i)
        self.error.clear()
        self._clear()
        self.summary.setText(f"Loading {Path(run_dir).name}…")
        self._show_result_view(run_dir)
        self._show_run_shift(run_dir)
        from tlstudio.core.analysis.results import EvaluationResults

        if not EvaluationResults.available(run_dir):
            self.summary.setText(f"{Path(run_dir).name}: no classification results to show"
                                 + (" (see the technique's own view)." if self.extra_view else "."))
            return
        self.studio.tasks.submit(load_results_any, self.run_dir, on_done=lambda r, d=self.run_dir: self._loaded(d, r),
                                 on_error=lambda info: (self.summary.setText("The results could not be read."),
                                                        self.error.show_info(info, "Results unreadable")))

    def _clear(self) -> None:
        self.results = None
        self.per_class.setRowCount(0)
        self.matrix.clear()
        self.matrix.setRowCount(0)
        self.matrix.setColumnCount(0)
        self.cell_list.clear()
        self.cell_title.setText("")
        self.cell_refs, self.cell_rows, self.cell_pos = [], [], None
        self.cams = {}
        self.view_image.set_array(None)
        self.view_cam.set_array(None)
        self.view_text.setText("")
        self.roc_box.hide()

    def _show_result_view(self, run_dir: str) -> None:
        """The run's task's own results widget (detection boxes, captions, texts ...), in its own tab."""
        if self.extra_view is not None:
            idx = self.tabs.indexOf(self.extra_view)
            if idx >= 0:
                self.tabs.removeTab(idx)
            self.extra_view.deleteLater()
            self.extra_view = None
        from tlstudio.core.runs import Run

        try:
            task_id = Run(run_dir).project().task
        except Exception:  # noqa: BLE001
            return
        task = self.studio.task(task_id)
        if task is None:
            return
        try:
            w = task.result_view(Path(run_dir), self)
            if w is not None and not isinstance(w, QWidget):
                raise TypeError(f"result_view returned a {type(w).__name__}, not a Qt widget")
        except Exception as e:  # noqa: BLE001 - a plugin's view must never break the page
            from .technique import plugin_of

            info = plugin_of(self.studio.plugins, task_id, "tlstudio_tasks")
            if info is not None:
                info.fail(f"result_view raised {type(e).__name__}: {e}", traceback.format_exc())
            self.error.show_error(f"The results view of {task.title or task_id} failed: {type(e).__name__}: {e}",
                                  traceback.format_exc(), title="Plugin view failed")
            return
        if w is not None:  # a task with a view of its own: shown first
            self.extra_view = w
            self.tabs.addTab(w, task.title or task_id)
            self.tabs.setCurrentWidget(w)

    def _show_run_shift(self, run_dir: str) -> None:
        """The shift before and after adaptation, when the run measured it (DANN's domain_shift.json)."""
        from ..shift import RunShiftView, read_run_shift

        if self.shift_view is not None:
            idx = self.tabs.indexOf(self.shift_view)
            if idx >= 0:
                self.tabs.removeTab(idx)
            self.shift_view.deleteLater()
            self.shift_view = None
        shift = read_run_shift(run_dir)
        if shift is None:
            return
        try:
            self.shift_view = RunShiftView(shift)
        except Exception as e:  # noqa: BLE001 - a malformed file: a message, the other tabs stay
            self.error.show_error(f"{run_dir}/domain_shift.json could not be shown: {type(e).__name__}: {e}",
                                  traceback.format_exc(), title="Domain shift unreadable")
            return
        self.tabs.addTab(self.shift_view, "Domain shift")

    def _loaded(self, run_dir: str, payload) -> None:
        if run_dir != self.run_dir:
            return
        self.results, self.roc, project, self.texts = payload
        from tlstudio.core.analysis.results import RunImages

        readers = self.studio.plugins.readers() if self.studio.plugins else None
        # a text run's rows are texts: listed with their words, no pixels and no Grad-CAM
        self.images = RunImages(project, readers) if project is not None and self.texts is None else None
        self.cell_hint.setText(CELL_HINTS["text" if self.texts is not None else "image"])
        self.view_image.setVisible(self.texts is None)
        self.view_cam.setVisible(self.texts is None)
        res = self.results
        m = res.metrics
        ci = m.get("accuracy_ci95") or [None, None]
        parts = [f"<b>{Path(run_dir).name}</b>: {len(res.refs):,} test images",
                 f"accuracy {fmt_num(m.get('accuracy'))} (95% CI {fmt_num(ci[0])}–{fmt_num(ci[1])})",
                 f"balanced accuracy {fmt_num(m.get('balanced_accuracy'))}",
                 f"AUC {fmt_num(m.get('auc'))}", f"macro F1 {fmt_num(m.get('f1_macro'))}"]
        self.summary.setText(" · ".join(parts))
        self.calls = res.predicted.copy()
        self._fill_per_class()
        self._fill_matrix()
        if self.roc is not None:
            from ..decision import stored_text

            self.decision_panel.set_run(res.class_names, res.positive, res.threshold, stored_text(res.decision))
            self._show_roc()
        from tlstudio.core.analysis.confidence import read_json

        self.data_info = read_json(Path(run_dir) / "data.json")
        self.calibration.show_results(res, self.data_info)
        if self._predictor_for != run_dir:
            self.predictor = None
            self._predictor_for = None

    def _fill_per_class(self) -> None:
        res = self.results
        pc = res.per_class() if self.calls is None or (self.calls == res.predicted).all() else res.per_class_at(self.calls)
        self.per_class.setRowCount(len(res.class_names))
        for r, c in enumerate(res.class_names):
            d = pc.get(c, {})
            vals = [c, fmt_num(d.get("sensitivity")), fmt_num(d.get("specificity")), fmt_num(d.get("precision")),
                    fmt_num(d.get("f1")), str(d.get("support", ""))]
            for k, v in enumerate(vals):
                it = QTableWidgetItem(v)
                if k:
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.per_class.setItem(r, k, it)

    def _fill_matrix(self) -> None:
        res = self.results
        cm = res.confusion_at(self.calls) if self.calls is not None else res.confusion_matrix()
        k = len(res.class_names)
        self.matrix.setRowCount(k)
        self.matrix.setColumnCount(k)
        self.matrix.setHorizontalHeaderLabels([f"→ {c}" for c in res.class_names])
        self.matrix.setVerticalHeaderLabels(res.class_names)
        rows = cm.sum(1, keepdims=True).clip(min=1)
        for i in range(k):
            for j in range(k):
                n = int(cm[i, j])
                it = QTableWidgetItem(str(n))
                it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                frac = n / rows[i, 0]
                if i == j:
                    color = QColor.fromRgbF(1 - 0.55 * frac, 1 - 0.25 * frac, 1 - 0.55 * frac)
                else:
                    color = QColor.fromRgbF(1, 1 - 0.6 * frac, 1 - 0.6 * frac)
                it.setBackground(color)
                it.setForeground(QColor("#111111"))
                it.setToolTip(f"true {res.class_names[i]}, predicted {res.class_names[j]}: {n} image{'s' if n != 1 else ''} "
                              f"({100 * frac:.0f} % of the row)")
                self.matrix.setItem(i, j, it)
        self.matrix.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        vh = self.matrix.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(22 if k > 4 else 40)
        self.matrix.setFixedHeight(min(320, vh.length() + self.matrix.horizontalHeader().height() + 4))
        self.per_class.setFixedHeight(min(360, self.per_class.verticalHeader().length()
                                          + self.per_class.horizontalHeader().height() + 6))

    # --- ROC ---------------------------------------------------------------------------------------
    # --- cells and images ----------------------------------------------------------------------------
    def open_cell(self, i: int, j: int) -> None:
        """List exactly the test images of true class ``i`` predicted as ``j``."""
        res = self.results
        if res is None:
            return
        calls = res.predicted if self.calls is None else self.calls
        rows = np.flatnonzero((res.labels == i) & (calls == j)).tolist()
        self.cell_pos = (i, j)
        self.cell_rows = rows
        self.cell_refs = [res.refs[r] for r in rows]
        shown = rows[:MAX_CELL_IMAGES]
        more = f" (the first {MAX_CELL_IMAGES} shown)" if len(rows) > MAX_CELL_IMAGES else ""
        noun = "text" if self.texts is not None else "image"
        self.cell_title.setText(f"True {res.class_names[i]}, predicted {res.class_names[j]}: {len(rows)} {noun}"
                                f"{'s' if len(rows) != 1 else ''}{more}")
        self.cell_list.clear()
        self.view_image.set_array(None)
        self.view_cam.set_array(None)
        self.view_text.setText("")
        self.items = {}
        for r in shown:
            ref = res.refs[r]
            p = res.probs[r]
            k = int(calls[r])
            cap = f"{res.class_names[k]} {p[k]:.2f}"
            tip = f"{ref}\n" + "\n".join(f"p({c}) = {v:.3f}" for c, v in zip(res.class_names, p))
            if self.texts is not None:
                text = self.texts.get(ref, "")
                cap = (text if len(text) <= 60 else text[:59] + "…") + f"\n{cap}"
                tip = f"{text}\n\n{tip}"
            it = self.cell_list.add(None, cap, tip, data=r)
            self.items[ref] = it
        if not shown or self.images is None:
            return
        refs = [res.refs[r] for r in shown]
        pos = (i, j)
        self.studio.tasks.submit(cell_images, self.images, refs,
                                 on_done=lambda got, pos=pos: self._thumbs_loaded(pos, got))

    def _thumbs_loaded(self, pos, got) -> None:
        if pos != self.cell_pos:
            return
        for ref, arr, err in got:
            it = self.items.get(ref)
            if it is None:
                continue
            if arr is not None:
                it.setIcon(pixmap_from_array(arr, self.cell_list.thumb, smooth=False))
            else:
                it.setToolTip(it.toolTip() + f"\n(cannot show: {err})")
        self._start_cams(pos, [ref for ref, arr, _e in got if arr is not None])

    def _ensure_predictor(self, then) -> None:
        if self.predictor is not None and self._predictor_for == self.run_dir:
            then()
            return
        run_dir = self.run_dir

        def done(pred):
            if run_dir != self.run_dir:
                return
            self.predictor = pred
            self._predictor_for = run_dir
            then()

        self.studio.tasks.submit(run_predictor, run_dir, self.studio.plugins, prediction_device(self.studio),
                                 pool="model", on_done=done,
                                 on_error=lambda info: self.error.show_info(info, "The run's model could not be loaded "
                                                                                  "for Grad-CAM"))

    def _start_cams(self, pos, refs: list[str]) -> None:
        def go():
            for ref in refs:
                self.studio.tasks.submit(cam_for, self.predictor, self.images, ref, self.cell_list.thumb, pool="model",
                                         on_done=lambda out, pos=pos: self._cam_done(pos, out))

        if refs:
            self._ensure_predictor(go)

    def _cam_done(self, pos, out) -> None:
        ref, res, thumb = out
        self.cams[ref] = res
        if pos != self.cell_pos:
            return
        it = self.items.get(ref)
        if it is not None and thumb is not None:
            it.setIcon(pixmap_from_array(thumb, self.cell_list.thumb, smooth=False))
        cur = self.cell_list.currentItem()
        if cur is not None and self.results.refs[cur.data(Qt.ItemDataRole.UserRole)] == ref:
            self._show_detail(ref)

    def _image_selected(self, cur, _prev) -> None:
        if cur is None or self.results is None:
            return
        ref = self.results.refs[cur.data(Qt.ItemDataRole.UserRole)]
        self._show_detail(ref)

    def _show_detail(self, ref: str) -> None:
        res = self.results
        r = res.refs.index(ref)
        p = res.probs[r]
        lines = [f"<b>{Path(ref).name}</b>", f"true: {res.class_names[res.labels[r]]}",
                 f"predicted: {res.class_names[(res.predicted if self.calls is None else self.calls)[r]]}", ""]
        order = np.argsort(-p)
        lines += [f"p({res.class_names[k]}) = {p[k]:.3f}" for k in order[:10]]
        if self.texts is not None:
            import html

            self.view_image.set_array(None)
            self.view_cam.set_array(None)
            self.view_text.setText("<br>".join(lines[:3] + [f"“{html.escape(self.texts.get(ref, ''))}”", ""] + lines[4:]))
            return
        cam = self.cams.get(ref)
        if cam is not None:
            self.view_image.set_array(cam.image)
            self.view_cam.set_array(cam.overlay)
            lines += ["", f"Heat map: where the model looked for <i>{cam.target}</i>"
                      + (f" (layer {cam.layer}, {cam.cells[0]}×{cam.cells[1]} cells)." if cam.cells else ".")]
        else:
            self.view_cam.set_array(None)
            lines += ["", "Heat map: computing…"]
            if self.images is not None:
                self.studio.tasks.submit(lambda: self.images.load(ref), on_done=self.view_image.set_array)
        self.view_text.setText("<br>".join(lines))
