"""Predict: drop images or a folder, get the trained run's predictions with probabilities,
a Grad-CAM heat map for the selected image, and save them as CSV.  For a text run: type a
sentence, get its class, the probabilities and the words that drove it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from tlstudio.core.tasks.traits import IMAGE_CLASSIFICATION

from ..textpredict import TextPredictPanel
from ..widgets import DropArea, ErrorPanel, ImageView, error_dialog, heading, hint, plural
from . import Page
from .evaluate import prediction_device, run_predictor

MAX_PROB_COLUMNS = 10


def predict_files(predictor, paths: list[str]) -> list[dict]:
    return predictor.predict_paths(paths)


def annotated_prediction(res: dict) -> np.ndarray:
    """The predicted image with its detections drawn (detection) or as it is (other tasks)."""
    from tlstudio.core.data.image import read_file

    from ..taskdata import draw_boxes

    img = read_file(res["ref"])[0]
    dets = res.get("detections") or []
    if dets:
        labels = [str(d["label"]) for d in dets]
        img = draw_boxes(img, [d["box"] for d in dets], labels, sorted(set(labels)),
                         [f"{d['label']} {float(d['score']):.2f}" for d in dets])
    return img


def explain_file(predictor, path: str):
    from tlstudio.core.analysis.gradcam import explain

    return explain(predictor, path)


def decision_words(predictor, res: dict) -> str:
    """The run's decision and the prediction set, in words (above the probabilities)."""
    from tlstudio.core.delivery.predict import set_text

    dec = getattr(predictor, "decision", None)
    lines = []
    if "set" in res:
        lines.append(f"Prediction set ({dec.conformal_level:.0%}): <b>{set_text(res['set'])}</b>"
                     if dec is not None and dec.conformal_level else f"Prediction set: {set_text(res['set'])}")
    if dec is not None and dec.binary:
        lines.append(f"Operating point: '{dec.positive_class}' from a probability of {dec.threshold:.3f}")
    if dec is not None and dec.temperature != 1.0:
        lines.append("Probabilities calibrated (temperature scaling)")
    return "".join(f"{x}<br>" for x in lines)


class PredictPage(Page):
    key = "predict"

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.predictor = None
        self._predictor_for: str | None = None
        self.results: list[dict] = []
        self.run_dir: str | None = None
        self.cams: dict[str, object] = {}
        self._pending: list[str] = []

        root = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Model of run"))
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("predictRun")
        self.run_combo.setMinimumWidth(420)
        self.run_combo.activated.connect(lambda i: self.set_run(self.run_combo.itemData(i)))
        top.addWidget(self.run_combo)
        top.addStretch(1)
        root.addLayout(top)
        self.image_panel = QWidget()
        self.text_panel = TextPredictPanel(studio, self._with_predictor, lambda: self.predictor)
        self.text_panel.hide()
        self.run_task = IMAGE_CLASSIFICATION.id
        outer = root
        root = QVBoxLayout(self.image_panel)
        root.setContentsMargins(0, 0, 0, 0)
        drow = QHBoxLayout()
        self.drop = DropArea("Drop images or a folder here — or use the buttons on the right")
        self.drop.setFixedHeight(110)
        self.drop.dropped.connect(self.predict)
        drow.addWidget(self.drop, 1)
        col = QVBoxLayout()
        b_files = QPushButton("Add images…")
        b_files.clicked.connect(self._add_files)
        b_folder = QPushButton("Add a folder…")
        b_folder.clicked.connect(self._add_folder)
        self.save_btn = QPushButton("Save as CSV…")
        self.save_btn.setObjectName("savePredictions")
        self.save_btn.clicked.connect(self._save_dialog)
        self.save_btn.setEnabled(False)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        for b in (b_files, b_folder, self.save_btn, clear):
            col.addWidget(b)
        drow.addLayout(col)
        root.addLayout(drow)
        self.status = QLabel("")
        self.status.setObjectName("predictStatus")
        root.addWidget(self.status)
        self.error = ErrorPanel()
        root.addWidget(self.error)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.table = QTableWidget(0, 3)
        self.table.setObjectName("predictionTable")
        self.table.setHorizontalHeaderLabels(["Image", "Predicted", "Confidence"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.itemSelectionChanged.connect(self._selected)
        split.addWidget(self.table)
        right = QWidget()
        rv = QVBoxLayout(right)
        self.right_title = heading("Selected image and its Grad-CAM heat map")
        rv.addWidget(self.right_title)
        imgs = QHBoxLayout()
        self.view_image = ImageView(min_size=180, placeholder="Select a predicted image: it appears here …")
        self.view_cam = ImageView(min_size=180, placeholder="… and its heat map here.")
        self.view_cam.setObjectName("predictCam")
        imgs.addWidget(self.view_image)
        imgs.addWidget(self.view_cam)
        rv.addLayout(imgs, 1)
        self.detail = QLabel()
        self.detail.setObjectName("predictDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.detail)
        self.right_hint = hint("Red marks the regions that pushed the model most towards its answer; check that "
                               "they are the regions an expert would look at.")
        rv.addWidget(self.right_hint)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([820, 580])
        root.addWidget(split, 1)
        outer.addWidget(self.image_panel, 1)
        outer.addWidget(self.text_panel, 1)

        studio.runsChanged.connect(self.fill_runs)
        studio.currentRunChanged.connect(self._current_changed)
        self.fill_runs()

    # --- run ---------------------------------------------------------------------------------------
    def fill_runs(self) -> None:
        from tlstudio.core.runs import list_runs

        cur = self.run_dir or self.studio.current_run
        self.run_combo.clear()
        try:
            runs = [r for r in list_runs(self.studio.runs_dir()) if r.status() == "done" and r.best_checkpoint.exists()]
        except OSError:
            runs = []
        for r in runs:
            try:
                p = r.project()
                label = f"{r.id} — {p.technique.id} on {p.model.architecture}"
            except Exception:  # noqa: BLE001
                label = r.id
            self.run_combo.addItem(label, str(r.dir))
        if cur and self.run_combo.findData(str(cur)) >= 0:
            self.run_combo.setCurrentIndex(self.run_combo.findData(str(cur)))
            self.set_run(str(cur))
        elif self.run_combo.count() and self.run_dir is None:
            self.set_run(self.run_combo.itemData(0))

    def _current_changed(self, run_dir: str) -> None:
        from tlstudio.core.runs import Run

        if run_dir and Run(run_dir).status() == "done":
            self.fill_runs()
            self.set_run(run_dir)

    def set_run(self, run_dir: str | None) -> None:
        """Predict with this run's model: the predictions of another model are cleared (never
        shown under this one's name)."""
        if run_dir and run_dir != self.run_dir:
            had = len(self.results)
            self.run_dir = str(run_dir)
            self.predictor = None
            self._predictor_for = None
            self.clear()
            i = self.run_combo.findData(self.run_dir)
            if i >= 0:
                self.run_combo.setCurrentIndex(i)
            self._show_task()
            if had:
                self.status.setText(f"Model changed to {Path(run_dir).name}: the {plural(had, 'prediction')} of the "
                                    "other model were cleared. Add the images again to predict them with this one.")

    def _show_task(self) -> None:
        """Texts are typed, images dropped: the panel follows the run's task."""
        from tlstudio.core.runs import Run

        try:
            self.run_task = Run(self.run_dir).project().task
        except Exception:  # noqa: BLE001 - an unreadable run: the image panel says why when used
            self.run_task = IMAGE_CLASSIFICATION.id
        traits = self.studio.traits(self.run_task)
        self.text_panel.clear()
        self.text_panel.setVisible(traits.texts)
        self.image_panel.setVisible(not traits.texts)
        self.view_cam.setVisible(traits.can("grad-cam"))
        self.right_title.setText(traits.prediction_title)
        self.right_hint.setVisible(traits.can("grad-cam"))

    # --- predicting --------------------------------------------------------------------------------
    def _add_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Images to predict", str(Path.home()),
                                                "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.dcm);;All files (*)")
        if paths:
            self.predict(paths)

    def _add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A folder of images to predict", str(Path.home()))
        if path:
            self.predict([path])

    def predict(self, paths: list[str]) -> None:
        """Predict these files and folders with the chosen run's model (in a worker)."""
        if not self.run_dir:
            self.status.setText("No trained run yet: train one first (or pick one above).")
            return
        self.error.clear()
        run_dir = self.run_dir
        self.status.setText(f"Predicting {plural(len(paths), 'item')} with {Path(run_dir).name}…")

        def go():
            self.studio.tasks.submit(predict_files, self.predictor, list(map(str, paths)), pool="model",
                                     on_done=lambda res, d=run_dir: self._predicted(d, res),
                                     on_error=lambda info: (self.status.setText("Prediction failed."),
                                                            self.error.show_info(info, "Prediction failed")))

        self._with_predictor(go)

    def _with_predictor(self, then, on_error=None) -> None:
        if self.predictor is not None and self._predictor_for == self.run_dir:
            then()
            return
        run_dir = self.run_dir
        if not run_dir:
            self.status.setText("No trained run yet: train one first (or pick one above).")
            return
        self.status.setText("Loading the run's model…")

        def failed(info):
            self.status.setText("The model could not be loaded.")
            if on_error is not None:
                on_error(info)
            else:
                self.error.show_info(info, "The run's model could not be loaded")

        def done(pred):
            if run_dir != self.run_dir:
                return
            self.predictor = pred
            self._predictor_for = run_dir
            self.status.setText("")
            then()

        self.studio.tasks.submit(run_predictor, run_dir, self.studio.plugins, prediction_device(self.studio),
                                 pool="model", on_done=done, on_error=failed)

    def _predicted(self, run_dir: str, results: list[dict]) -> None:
        if run_dir != self.run_dir:
            return
        known = {r["ref"] for r in self.results}
        self.results += [r for r in results if r["ref"] not in known]
        self._fill()
        bad = sum(1 for r in self.results if r.get("error"))
        self.status.setText(f"{plural(len(self.results), 'image')} predicted by {Path(run_dir).name}"
                            + (f", {bad} could not be read" if bad else "") + ". Select one to see its heat map.")
        self.save_btn.setEnabled(bool(self.results))

    def _fill(self) -> None:
        from tlstudio.core.delivery.predict import set_text

        names = self.predictor.class_names if self.predictor else []
        shown = names[:MAX_PROB_COLUMNS]
        has_set = any("set" in r for r in self.results)
        cols = (["Image", "Predicted", "Confidence"] + (["Prediction set"] if has_set else [])
                + [f"p({c})" for c in shown] + ["Problem"])
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        self.table.setRowCount(len(self.results))
        for r, res in enumerate(self.results):
            probs = res.get("probabilities", {})
            pred = res.get("predicted", "")
            vals = [Path(res["ref"]).name, str(pred) if pred != "" else "—",
                    f"{probs[pred]:.3f}" if pred in probs else ""]
            if has_set:
                vals.append(set_text(res["set"]) if "set" in res and not res.get("error") else "")
            vals += [f"{probs[c]:.3f}" if c in probs else "" for c in shown]
            vals.append(res.get("error", ""))
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                if c == 0:
                    it.setToolTip(res["ref"])
                    it.setData(Qt.ItemDataRole.UserRole, res["ref"])
                if res.get("error"):
                    it.setForeground(QColor("#b03a2e"))
                self.table.setItem(r, c, it)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(len(cols) - 1, QHeaderView.ResizeMode.Stretch)

    def clear(self) -> None:
        self.results = []
        self.cams.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(3)
        self.table.setHorizontalHeaderLabels(["Image", "Predicted", "Confidence"])
        self.view_image.set_array(None)
        self.view_cam.set_array(None)
        self.detail.setText("")
        self.status.setText("")
        self.save_btn.setEnabled(False)

    # --- selection and Grad-CAM ---------------------------------------------------------------------
    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        ref = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
        res = next((r for r in self.results if r["ref"] == ref), None)
        if res is None:
            return
        if res.get("error"):
            self.view_image.set_array(None)
            self.view_cam.set_array(None)
            self.detail.setText(f"<b>{Path(ref).name}</b>: {res['error']}")
            return
        if self.studio.traits(self.run_task).annotation:
            self._show_annotated(ref, res)
            return
        probs = sorted(res.get("probabilities", {}).items(), key=lambda kv: -kv[1])
        self.detail.setText(f"<b>{Path(ref).name}</b> → <b>{res.get('predicted')}</b><br>"
                            + decision_words(self.predictor, res)
                            + "<br>".join(f"p({c}) = {v:.3f}" for c, v in probs[:10]))
        cam = self.cams.get(ref)
        if cam is not None:
            self.view_image.set_array(cam.image)
            self.view_cam.set_array(cam.overlay)
            return
        self.view_cam.set_array(None)
        if not self.studio.traits(self.run_task).can("grad-cam"):  # no heat map for this task: the image alone
            self.view_image.set_array(None)
            self.studio.tasks.submit(annotated_prediction, res,
                                     on_done=lambda img, ref=ref: self._annotated_done(ref, img),
                                     on_error=lambda info: self.error.show_info(info, "The image could not be shown"))
            return
        self.studio.tasks.submit(explain_file, self.predictor, ref, pool="model",
                                 on_done=lambda cam, ref=ref: self._cam_done(ref, cam),
                                 on_error=lambda info: self.error.show_info(info, "Grad-CAM failed"))

    def _show_annotated(self, ref: str, res: dict) -> None:
        """Detection: the boxes drawn on the image, listed with their scores; captioning: the caption."""
        import html

        dets = res.get("detections")
        if dets is not None:
            lines = [f"{html.escape(str(d['label']))} {float(d['score']):.2f} "
                     f"[{', '.join(f'{float(v):.0f}' for v in d['box'])}]" for d in dets]
            body = "<br>".join(lines) or "nothing detected above the score threshold"
        else:
            body = f"“{html.escape(str(res.get('predicted', '')))}”"
        self.detail.setText(f"<b>{html.escape(Path(ref).name)}</b><br>{body}")
        self.view_image.set_array(None)
        self.studio.tasks.submit(annotated_prediction, res, on_done=lambda img, ref=ref: self._annotated_done(ref, img),
                                 on_error=lambda info: self.error.show_info(info, "The image could not be shown"))

    def _annotated_done(self, ref: str, img) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) == ref:
            self.view_image.set_array(img)

    def _cam_done(self, ref: str, cam) -> None:
        self.cams[ref] = cam
        rows = self.table.selectionModel().selectedRows()
        if rows and self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) == ref:
            self.view_image.set_array(cam.image)
            self.view_cam.set_array(cam.overlay)

    # --- saving ----------------------------------------------------------------------------------------
    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save predictions", str(Path.home() / "predictions.csv"),
                                              "CSV (*.csv)")
        if path:
            self.save_csv(path)

    def save_csv(self, path: str) -> Path | None:
        if self.predictor is None or not self.results:
            return None
        try:
            out = self.predictor.write_csv(self.results, path)  # with the run's name in a "run" column
        except OSError as e:
            error_dialog(self, "Could not save", f"{path}: {e}")
            return None
        self.status.setText(f"Saved {plural(len(self.results), 'prediction')} of {Path(self.run_dir).name} to {out}")
        return out
