"""The result views of the built-in tasks: the window's own view of a finished run (detection
boxes, captions, texts by class).  Qt is imported inside each function: importing this module
imports no Qt, and core never does."""
from __future__ import annotations

import csv
import json
from pathlib import Path


def _load_results(run_dir, nothing: str) -> dict:
    f = Path(run_dir) / "test_predictions.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"images": [], "message": f"{nothing} in {run_dir} (the run has no test split, or did not finish)."}
    except (OSError, ValueError) as e:
        return {"images": [], "message": f"{f}: cannot be read ({e})."}


def _read_json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- object detection --------------------------------------------------------------------------
def DetectionResultView(run_dir, parent=None):
    """The test images with their true boxes (green) and the detections (orange, with class
    and score) above a score threshold chosen with the slider."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
    from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QSlider, QVBoxLayout, QWidget)

    class View(QWidget):
        TRUE, FOUND = QColor(40, 200, 80), QColor(255, 140, 0)

        def __init__(self):
            super().__init__(parent)
            self.results = _load_results(run_dir, "No test predictions")
            self.images = self.results.get("images", [])
            self.list = QListWidget()
            for im in self.images:
                self.list.addItem(Path(im["ref"]).name)
            self.canvas = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
            self.canvas.setMinimumSize(320, 320)
            self.slider = QSlider(Qt.Orientation.Horizontal)
            self.slider.setRange(0, 100)
            self.slider.setValue(round(100 * float(self.results.get("score_threshold", 0.5))))
            self.caption = QLabel()
            self.legend = QLabel("green: true boxes   orange: detections (class and score)")
            right = QVBoxLayout()
            right.addWidget(self.canvas, 1)
            right.addWidget(self.caption)
            right.addWidget(self.slider)
            right.addWidget(self.legend)
            lay = QHBoxLayout(self)
            lay.addWidget(self.list)
            lay.addLayout(right, 3)
            self.list.currentRowChanged.connect(lambda _: self.redraw())
            self.slider.valueChanged.connect(lambda _: self.redraw())
            if self.images:
                self.list.setCurrentRow(0)
            else:
                self.canvas.setText(self.results.get("message", "No test predictions in this run."))

        @property
        def threshold(self) -> float:
            return self.slider.value() / 100

        def visible_detections(self) -> list[dict]:
            row = self.list.currentRow()
            if not 0 <= row < len(self.images):
                return []
            return [d for d in self.images[row]["predicted"] if d["score"] >= self.threshold]

        def redraw(self) -> None:
            row = self.list.currentRow()
            if not 0 <= row < len(self.images):
                return
            im = self.images[row]
            pix = QPixmap(im["ref"])
            if pix.isNull():
                pix = QPixmap(int(im["width"]), int(im["height"]))
                pix.fill(QColor(60, 60, 60))
            scale = max(1.0, 320 / max(pix.width(), pix.height()))
            pix = pix.scaled(round(pix.width() * scale), round(pix.height() * scale),
                             Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            sx, sy = pix.width() / im["width"], pix.height() / im["height"]
            out = QPixmap(pix.size())
            out.fill(QColor(0, 0, 0))
            p = QPainter(out)
            p.drawPixmap(0, 0, pix)
            p.setFont(QFont(p.font().family(), 9))
            shown = self.visible_detections()
            for color, boxes, scored in ((self.TRUE, im["truth"], False), (self.FOUND, shown, True)):
                p.setPen(QPen(color, 2))
                for b in boxes:
                    x1, y1, x2, y2 = b["box"]
                    r = QRectF(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy)
                    p.drawRect(r)
                    text = f"{b['label']} {b['score']:.2f}" if scored else b["label"]
                    p.drawText(r.adjusted(2, 1 if scored else r.height() - 14, 0, 0).topLeft() + _pt(0, 10), text)
            p.end()
            self.canvas.setPixmap(out)
            self.caption.setText(f"{Path(im['ref']).name}: {len(im['truth'])} true boxes, {len(shown)} detections "
                                 f"with score >= {self.threshold:.2f}")

    def _pt(x, y):
        from PySide6.QtCore import QPointF

        return QPointF(x, y)

    return View()



# --- captioning ----------------------------------------------------------------------------------
def CaptionResultView(run_dir, parent=None):
    """Each test image with the generated caption beside its reference captions."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QVBoxLayout, QWidget

    class View(QWidget):
        def __init__(self):
            super().__init__(parent)
            self.results = _load_results(run_dir, "No test captions")
            self.images = self.results.get("images", [])
            self.list = QListWidget()
            for im in self.images:
                self.list.addItem(Path(im["ref"]).name)
            self.picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
            self.picture.setMinimumSize(256, 256)
            self.generated = QLabel(wordWrap=True)
            self.generated.setTextFormat(Qt.TextFormat.RichText)
            self.references = QLabel(wordWrap=True)
            side = QVBoxLayout()
            side.addWidget(QLabel(f"<b>Generated</b> ({self.results.get('decoding', '')} decoding)"))
            side.addWidget(self.generated)
            side.addWidget(QLabel("<b>References</b>"))
            side.addWidget(self.references)
            side.addStretch(1)
            lay = QHBoxLayout(self)
            lay.addWidget(self.list, 1)
            lay.addWidget(self.picture, 2)
            lay.addLayout(side, 2)
            self.list.currentRowChanged.connect(self.show_image)
            if self.images:
                self.list.setCurrentRow(0)
            else:
                self.picture.setText(self.results.get("message", "No test captions in this run."))

        def show_image(self, row: int) -> None:
            if not 0 <= row < len(self.images):
                return
            im = self.images[row]
            pix = QPixmap(im["ref"])
            if pix.isNull():
                self.picture.setText(f"{Path(im['ref']).name}\n(image not found)")
            else:
                self.picture.setPixmap(pix.scaled(256, 256, Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.SmoothTransformation))
            cider = im.get("cider")
            self.generated.setText(f"<i>{_html(im['caption']) or '(empty)'}</i>"
                                   + (f"<br>CIDEr-D {cider:.2f}" if cider is not None else ""))
            self.references.setText("<br>".join(f"• {_html(r)}" for r in im["references"]))

    return View()



# --- text classification -------------------------------------------------------------------------
def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def TextResultView(run_dir: Path, parent=None):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QTabWidget,
                                   QVBoxLayout, QWidget)

    def table(headers: list[str], name: str) -> QTableWidget:
        t = QTableWidget(0, len(headers))
        t.setObjectName(name)
        t.setHorizontalHeaderLabels(headers)
        t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        return t

    def fmt(v) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    class View(QWidget):
        """A finished text-classification run: per-class metrics, texts by class. Trying a
        sentence of one's own is the Predict page's (in the model thread, never the window's)."""

        def __init__(self):
            super().__init__(parent)
            self.run_dir = run_dir
            self.evaluation = _read_json_or_empty(run_dir / "evaluation_test.json")
            self.data = _read_json_or_empty(run_dir / "data.json")
            self.rows = _read_rows(run_dir / "test_predictions.csv")
            self.class_names = list(self.evaluation.get("class_names") or self.data.get("class_names") or [])
            tabs = QTabWidget(self)
            tabs.setObjectName("text_result_tabs")
            tabs.addTab(self._metrics_tab(), "Per-class results")
            tabs.addTab(self._texts_tab(), "Texts by class")
            lay = QVBoxLayout(self)
            lay.setContentsMargins(0, 0, 0, 0)
            pointer = QLabel("To try a text of your own — its class, every class's probability and the words that "
                             "drove it — open the Predict page (Ctrl+6).")
            pointer.setObjectName("try_pointer")
            pointer.setWordWrap(True)
            lay.addWidget(pointer)
            lay.addWidget(tabs)
            self.tabs = tabs

        # --- per-class metrics ------------------------------------------------------------------
        def _metrics_tab(self) -> QWidget:
            w = QWidget()
            lay = QVBoxLayout(w)
            ev = self.evaluation
            if not ev:
                lay.addWidget(QLabel("This run has no test results (no test split, or it did not finish)."))
                self.per_class = table(["class"], "per_class_table")
                lay.addWidget(self.per_class)
                return w
            ci = ev.get("accuracy_ci95") or [None, None]
            summary = QLabel(f"Test set: {ev.get('n')} texts — accuracy {fmt(ev.get('accuracy'))} (95% CI "
                             f"{fmt(ci[0])}–{fmt(ci[1])}), balanced accuracy {fmt(ev.get('balanced_accuracy'))}, "
                             f"AUC {fmt(ev.get('auc'))}, macro F1 {fmt(ev.get('f1_macro'))}")
            summary.setObjectName("metrics_summary")
            summary.setWordWrap(True)
            lay.addWidget(summary)
            t = self.truncation_line()
            if t:
                lay.addWidget(QLabel(t))
            self.per_class = table(["class", "sensitivity (recall)", "specificity", "precision", "F1", "support"],
                                   "per_class_table")
            per = ev.get("per_class", {})
            self.per_class.setRowCount(len(per))
            for i, (name, pc) in enumerate(per.items()):
                for j, v in enumerate([name, pc.get("sensitivity"), pc.get("specificity"), pc.get("precision"),
                                       pc.get("f1"), pc.get("support")]):
                    self.per_class.setItem(i, j, QTableWidgetItem(fmt(v)))
            lay.addWidget(self.per_class)
            cm = ev.get("confusion_matrix") or []
            names = ev.get("class_names") or []
            lay.addWidget(QLabel("Confusion matrix (rows: true class, columns: predicted):"))
            self.confusion = table(names, "confusion_table")
            self.confusion.setRowCount(len(cm))
            self.confusion.setVerticalHeaderLabels(names)
            self.confusion.verticalHeader().setVisible(True)
            for i, r in enumerate(cm):
                for j, v in enumerate(r):
                    item = QTableWidgetItem(str(v))
                    if i == j:
                        item.setBackground(QColor(46, 160, 67, 60))
                    self.confusion.setItem(i, j, item)
            lay.addWidget(self.confusion)
            return w

        def truncation_line(self) -> str:
            t = self.data.get("truncation") or {}
            if not t:
                return ""
            return (f"Maximum length {t['max_length']} tokens: {t['truncated']} of {t['texts']} texts were cut "
                    f"(longest {t['longest_tokens']} tokens).")

        # --- texts by class ---------------------------------------------------------------------
        def _texts_tab(self) -> QWidget:
            w = QWidget()
            lay = QVBoxLayout(w)
            row = QHBoxLayout()
            row.addWidget(QLabel("True class:"))
            self.class_filter = QComboBox()
            self.class_filter.setObjectName("class_filter")
            self.class_filter.addItems(["all classes", *self.class_names])
            row.addWidget(self.class_filter)
            row.addWidget(QLabel("Show:"))
            self.outcome_filter = QComboBox()
            self.outcome_filter.setObjectName("outcome_filter")
            self.outcome_filter.addItems(["all", "misclassified", "correct"])
            row.addWidget(self.outcome_filter)
            row.addStretch(1)
            self.count_label = QLabel("")
            row.addWidget(self.count_label)
            lay.addLayout(row)
            self.texts = table(["text", "true class", "predicted", "confidence"], "texts_table")
            self.texts.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            self.texts.setWordWrap(True)
            lay.addWidget(self.texts)
            self.class_filter.currentIndexChanged.connect(self.fill_texts)
            self.outcome_filter.currentIndexChanged.connect(self.fill_texts)
            self.fill_texts()
            return w

        def fill_texts(self) -> None:
            cls = self.class_filter.currentText()
            outcome = self.outcome_filter.currentText()
            rows = [r for r in self.rows if (cls == "all classes" or r.get("label") == cls)
                    and (outcome == "all" or (r.get("correct") == "1") == (outcome == "correct"))]
            self.texts.setRowCount(len(rows))
            for i, r in enumerate(rows):
                conf = r.get(f"p_{r.get('predicted')}")
                cells = [r.get("text", r.get("ref", "")), r.get("label", ""), r.get("predicted", ""),
                         f"{100 * float(conf):.0f}%" if conf else ""]
                for j, v in enumerate(cells):
                    item = QTableWidgetItem(v)
                    if j == 0:
                        item.setToolTip(v)
                    if r.get("correct") == "0":
                        item.setForeground(QColor(200, 40, 40))
                    self.texts.setItem(i, j, item)
            self.count_label.setText(f"{len(rows)} of {len(self.rows)} test texts")

    return View()


