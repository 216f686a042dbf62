"""Model: the recommended model for this data and computer first, said in plain words (the
numbers in its tooltip); the offline catalog (ready or not, size, parameters, speed measured
here) under "All models"; the weights to start from, importing weights.  For a text technique:
the text models (Hugging Face folders) found on this computer."""
from __future__ import annotations

import importlib
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QInputDialog, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout)

from tlstudio.core.config import ModelConfig

from ..forms import PydanticForm
from ..simplepath import Fold
from ..widgets import Banner, error_dialog, fmt_seconds, heading, hint
from . import Page

COLUMNS = ["Model", "Ready", "Found in", "Size (MB)", "Weights (millions)", "Everyday photos right (%)",
           "Speed here (images/s)"]
COLUMN_TIPS = {4: "Parameters: how many numbers the network learns; larger networks are slower and need more images.",
               5: "ImageNet top-1 accuracy: the share of 50,000 everyday photos (1,000 kinds of objects) the network "
                  "names correctly. It measures what the network knows before it adapts to your images.",
               6: "Training speed measured on this computer at the project's image size (Measure speed)."}
NOT_AVAILABLE = "not available yet"


def recommend_module():
    """tlstudio.core.analysis.recommend, or None while it has not landed in this build."""
    try:
        return importlib.import_module("tlstudio.core.analysis.recommend")
    except ImportError:
        return None


class _NumItem(QTableWidgetItem):
    """Sorts by number, shows text."""

    def __init__(self, value, text: str | None = None):
        super().__init__(text if text is not None else ("–" if value is None else f"{value:g}"))
        self.value = -1.0 if value is None else float(value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other):
        return self.value < getattr(other, "value", -1.0)


class ModelPage(Page):
    key = "model"

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.rec = recommend_module()
        self.speeds: dict[str, float | None] = {}
        root = QVBoxLayout(self)
        root.addWidget(Banner("Choose the pretrained network to start from. The one recommended for your data and "
                              "this computer comes first; every network is under All models. Only networks whose "
                              "weights are on this computer can be used: nothing is ever downloaded."))
        top = QHBoxLayout()
        rec = QGroupBox("Recommended for your data")
        self.rec_box = rec
        rv = QVBoxLayout(rec)
        self.rec_text = QLabel()
        self.rec_text.setObjectName("recommendation")
        self.rec_text.setWordWrap(True)
        self.rec_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.rec_text)
        self.use_rec = QPushButton("Use the recommended model")
        self.use_rec.setObjectName("useRecommended")
        self.use_rec.clicked.connect(self._use_recommendation)
        self.use_rec.hide()
        rv.addWidget(self.use_rec, 0, Qt.AlignmentFlag.AlignLeft)
        rrow = QHBoxLayout()
        rrow.addWidget(QLabel("Time you can give training"))
        self.budget = QSpinBox()
        self.budget.setObjectName("timeBudget")
        self.budget.setRange(1, 24 * 60)
        self.budget.setValue(10)
        self.budget.setSuffix(" min")
        rrow.addWidget(self.budget)
        self.measure_all = QCheckBox("measure the speed of every ready model (slow)")
        rrow.addWidget(self.measure_all)
        self.rec_btn = QPushButton("Recommend again")
        self.rec_btn.setObjectName("recommend")
        self.rec_btn.clicked.connect(self.recommend)
        rrow.addWidget(self.rec_btn)
        rrow.addStretch(1)
        rv.addLayout(rrow)
        rv.addStretch(1)
        top.addWidget(rec, 3)

        sel = QGroupBox("Selected model")
        sv = QVBoxLayout(sel)
        self.sel_title = heading("", 1)
        self.sel_info = QLabel()
        self.sel_info.setObjectName("modelInfo")
        self.sel_info.setWordWrap(True)
        self.sel_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        sv.addWidget(self.sel_title)
        sv.addWidget(self.sel_info)
        form = QFormLayout()
        self.image_form = form
        self.weights = QComboBox()
        self.weights.setObjectName("weightsChoice")
        self.weights.addItem("Pretrained on ImageNet (found offline)", "imagenet")
        self.weights.addItem("None: random start (a from-scratch baseline)", "none")
        self.weights.addItem("A weights file…", "file")
        self.weights.setToolTip("What the network knows before it adapts: what it learned from 1.3 million everyday "
                                "photos (ImageNet, recommended), nothing (to check whether pretraining helps), or "
                                "weights from a file.")
        self.weights.activated.connect(self._weights_chosen)
        form.addRow("Start from", self.weights)
        self.size_form = PydanticForm(ModelConfig, only=["image_size"], title="Model")
        self.size_form.changed.connect(self._size_changed)
        form.addRow(self.size_form)
        self.from_run = QComboBox()
        self.from_run.setObjectName("fromRun")
        self.from_run.setToolTip(ModelConfig.model_fields["from_run"].description or "")
        self.from_run.activated.connect(self._from_run_chosen)
        form.addRow("Start from run", self.from_run)
        sv.addLayout(form)
        sv.addStretch(1)
        top.addWidget(sel, 2)
        root.addLayout(top)

        self.text_box = QGroupBox("Text models on this computer")
        tv = QVBoxLayout(self.text_box)
        tv.addWidget(hint("A text technique adapts a language model (a Hugging Face folder: BERT, DistilBERT, "
                          "MiniLM …). These were found on this computer; put others in the models folder "
                          "(Tools › Settings)."))
        self.text_list = QListWidget()
        self.text_list.setObjectName("textModels")
        self.text_list.currentItemChanged.connect(self._text_model_picked)
        tv.addWidget(self.text_list)
        self.text_box.hide()
        root.addWidget(self.text_box, 1)

        self.all_models = Fold("All models")
        self.all_models.setObjectName("allModels")
        body = self.all_models.body_layout
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("modelTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for c, tip in COLUMN_TIPS.items():
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)  # a click on a header sorts; first shown: ready models first
        self.table.itemSelectionChanged.connect(self._selected)
        self.table.setMinimumHeight(200)
        body.addWidget(self.table, 1)
        brow = QHBoxLayout()
        self.only_ready = QCheckBox("Show ready models only")
        self.only_ready.toggled.connect(self.fill)
        self.measure_btn = QPushButton("Measure speed")
        self.measure_btn.setObjectName("measureSpeed")
        self.measure_btn.clicked.connect(self.measure_selected)
        self.import_btn = QPushButton("Import weights…")
        self.import_btn.setObjectName("importWeights")
        self.import_btn.clicked.connect(self._import_dialog)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.studio.refresh_models)
        for w in (self.only_ready, self.measure_btn, self.import_btn, refresh):
            brow.addWidget(w)
        brow.addStretch(1)
        body.addLayout(brow)
        root.addWidget(self.all_models)
        root.addStretch(1)

        def unfolded(on: bool) -> None:  # the table takes the page's height while shown
            root.setStretchFactor(self.all_models, 1 if on else 0)
            root.setStretch(root.count() - 1, 0 if on else 1)

        self.all_models.toggled.connect(unfolded)
        self._recommended: str | None = None
        self._auto_key = None

        if self.rec is None:
            for b in (self.measure_btn, self.rec_btn):
                b.setEnabled(False)
                b.setToolTip(f"Model recommendation and speed measurement: {NOT_AVAILABLE} in this build.")
            self.rec_text.setText(f"Recommendation: {NOT_AVAILABLE} in this build.")
        else:
            self.rec_text.setText("Read your data on the Data page: the recommendation depends on how many images "
                                  "and classes you have, and on how fast each model trains on this computer.")

        studio.modelsChanged.connect(self.fill)
        studio.modelsChanged.connect(self.auto_recommend)
        studio.dataRead.connect(lambda _t: self.auto_recommend())
        studio.projectEdited.connect(self._project_edited)
        studio.projectReplaced.connect(self.load_project)
        studio.runsChanged.connect(self._fill_runs)
        studio.settingsChanged.connect(self._load_speeds)
        self.load_project()
        self.fill()

    def activated(self) -> None:
        self.auto_recommend()

    # --- project ---------------------------------------------------------------------------------
    def load_project(self) -> None:
        m = self.studio.project.model
        self.size_form.set_values({"image_size": m.image_size})
        i = self.weights.findData(m.weights if m.weights in ("imagenet", "none") else "file")
        if i == 2:
            self.weights.setItemText(2, f"File: {Path(m.weights).name}")
        self.weights.setCurrentIndex(max(0, i))
        self._fill_runs()
        self._select(m.architecture)
        self._load_speeds()
        self._show_task()

    def _project_edited(self, section: str) -> None:
        if section == "technique":
            self._show_task()
        elif section == "data":
            self.auto_recommend()

    def _show_task(self) -> None:
        """Image models, or the text models for a text technique."""
        text = self.studio.traits().texts
        self.text_box.setVisible(text)
        for w in (self.rec_box, self.all_models):
            w.setVisible(not text)
        for row in range(self.image_form.rowCount()):
            self.image_form.setRowVisible(row, not text)
        if text:
            self.fill_text_models()
        else:
            self._describe(self.studio.project.model.architecture)

    def fill_text_models(self) -> None:
        choices = self.studio.text_models
        self.text_list.blockSignals(True)
        self.text_list.clear()
        cur = self.studio.text_model(self.studio.project.model.architecture)
        for c in choices or []:
            it = QListWidgetItem(f"{c.name}  ({c.model_type})")
            it.setData(Qt.ItemDataRole.UserRole, c.name)
            it.setToolTip(f"{c.where}\n{c.path}")
            self.text_list.addItem(it)
            if cur is not None and c.name == cur.name:
                self.text_list.setCurrentItem(it)
        self.text_list.blockSignals(False)
        if cur is not None:
            self.sel_title.setText(cur.name)
            self.sel_info.setText(f"A {cur.model_type} language model, found in {cur.where}.")
            self.sel_info.setToolTip(str(cur.path))
        else:
            self.sel_title.setText(self.studio.project.model.architecture)
            self.sel_info.setText("Looking for text models on this computer…" if choices is None else
                                  "Not a text model found on this computer: choose one in the list." if choices else
                                  "No text model is on this computer: put a Hugging Face folder (config.json, weights "
                                  "and tokenizer) in the models folder.")

    def _text_model_picked(self, cur, _prev) -> None:
        if cur is not None:
            name = cur.data(Qt.ItemDataRole.UserRole)
            if name != self.studio.project.model.architecture:
                self.studio.edit("model", architecture=name)
            self.fill_text_models()

    def _size_changed(self) -> None:
        self.studio.set_form_problems("Model", self.size_form.problems())
        v = self.size_form.values()
        if v and v["image_size"] != self.studio.project.model.image_size:
            self.studio.edit("model", image_size=v["image_size"])
            self._load_speeds()

    def _weights_chosen(self, index: int) -> None:
        kind = self.weights.itemData(index)
        if kind == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Weights to start from", str(Path.home()),
                                                  "Weights (*.pth *.pt *.safetensors *.bin);;All files (*)")
            if not path:
                self.load_project()
                return
            self.weights.setItemText(2, f"File: {Path(path).name}")
            self.studio.edit("model", weights=path)
        else:
            self.studio.edit("model", weights=kind)

    def _fill_runs(self) -> None:
        from tlstudio.core.runs import list_runs

        cur = self.studio.project.model.from_run
        self.from_run.clear()
        self.from_run.addItem("(none: start from the weights above)", "")
        try:
            runs = [r for r in list_runs(self.studio.runs_dir()) if r.best_checkpoint.exists()]
        except OSError:
            runs = []
        for r in runs[:50]:
            self.from_run.addItem(r.id, str(r.dir))
        if cur and self.from_run.findData(cur) < 0:
            self.from_run.addItem(Path(cur).name, cur)
        self.from_run.setCurrentIndex(max(0, self.from_run.findData(cur)))

    def _from_run_chosen(self, index: int) -> None:
        v = self.from_run.itemData(index) or ""
        if v != self.studio.project.model.from_run:
            self.studio.edit("model", from_run=v)

    # --- catalog ---------------------------------------------------------------------------------
    def fill(self) -> None:
        if self.studio.traits().texts:
            self.fill_text_models()
        status = self.studio.model_status
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        if status is None:
            self.sel_info.setText("Looking for pretrained weights on this computer…")
            return
        rows = [s for s in status.values() if s.ready or not self.only_ready.isChecked()]
        rows.sort(key=lambda s: (not s.ready, s.params_m))  # ready first, then small to large
        self.table.setRowCount(len(rows))
        for r, s in enumerate(rows):
            name = QTableWidgetItem(f"{s.title}  ({s.name})")
            name.setData(Qt.ItemDataRole.UserRole, s.name)
            ready = _NumItem(1 if s.ready else 0, "✓ ready" if s.ready else "not ready")
            ready.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            ready.setForeground(QColor("#1e8449" if s.ready else "#b03a2e"))
            where = QTableWidgetItem(s.source or "—")
            where.setToolTip(s.path or s.how_to_add)
            speed = self.speeds.get(s.name)
            items = [name, ready, where, _NumItem(s.size_mb if s.ready else None),
                     _NumItem(s.params_m), _NumItem(s.imagenet_top1),
                     _NumItem(speed, "–" if speed is None else f"{speed:.0f}")]
            for c, it in enumerate(items):
                self.table.setItem(r, c, it)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self._select(self.studio.project.model.architecture)
        n_ready = sum(1 for s in status.values() if s.ready)
        self.all_models.button.setText(f"All models ({n_ready} ready on this computer, {len(status)} in the catalog)")

    def _select(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            it = self.table.item(r, 0)
            if it is not None and it.data(Qt.ItemDataRole.UserRole) == name:
                self.table.blockSignals(True)
                self.table.selectRow(r)
                self.table.blockSignals(False)
                break
        self._describe(name)

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def _selected(self) -> None:
        name = self.selected_name()
        if name and name != self.studio.project.model.architecture:
            self.studio.edit("model", architecture=name)
        if name:
            self._describe(name)

    def _describe(self, name: str) -> None:
        if self.studio.traits().texts:
            return
        status = self.studio.model_status or {}
        s = status.get(name)
        if s is None:
            self.sel_title.setText(name)
            self.sel_info.setText("Not in the catalog." if status else "")
            return
        self.sel_title.setText(s.title)
        parts = [f"{size_words(s.params_m).capitalize()}: {s.params_m:.1f} million weights."]
        if s.imagenet_top1:
            parts.append(f"It names about {s.imagenet_top1:.0f} in 100 everyday photos correctly: the knowledge it "
                         "starts from.")
        if s.ready:
            parts.append(f"Its weights are on this computer ({s.source}).")
        else:
            parts.append("<b>Not ready</b>: no pretrained weights on this computer. To add them:<br>"
                         + s.how_to_add.replace("\n", "<br>") + "<br>or use Import weights….")
        sp = self.speeds.get(name)
        if sp:
            parts.append(f"It trains on about {sp:.0f} images a second at {self.studio.project.model.image_size} px "
                         "on this computer.")
        self.sel_info.setText(" ".join(parts))
        self.sel_info.setToolTip(f"{s.params_m:g} M parameters" + (f", ImageNet top-1 {s.imagenet_top1:g} %"
                                                                 if s.imagenet_top1 else "")
                                 + (f", {s.size_mb:g} MB" if s.ready and s.size_mb else "")
                                 + (f"\nWeights: {s.path}" if s.path else ""))

    # --- speed -----------------------------------------------------------------------------------
    def _load_speeds(self) -> None:
        if self.rec is None or self.studio.model_status is None:
            return
        size, dev = int(self.studio.project.model.image_size), self.studio.settings.device
        names = list(self.studio.model_status)

        def work():
            out = {}
            for n in names:
                try:
                    out[n] = self.rec.speed_of(n, size, dev, measure=False)
                except Exception:  # noqa: BLE001 - unknown is shown as –
                    out[n] = None
            return out

        def done(speeds):
            # a figure measured while this list was read is newer than the list
            self.speeds = {k: v or self.speeds.get(k) for k, v in speeds.items()}
            self.fill()

        self.studio.tasks.submit(work, on_done=done)

    def measure_selected(self) -> None:
        name = self.selected_name() or self.studio.project.model.architecture
        if self.rec is None or not name:
            return
        if self.studio.training_active:
            self.studio.message.emit("Speeds are measured while nothing trains (a run would distort the figure).")
            return
        size, dev = int(self.studio.project.model.image_size), self.studio.settings.device
        self.measure_btn.setEnabled(False)
        self.measure_btn.setText("Measuring…")

        def done(v):
            self.measure_btn.setEnabled(True)
            self.measure_btn.setText("Measure speed")
            self.speeds[name] = v
            self.fill()
            self.studio.message.emit(f"{name}: {v:.0f} images/s at {size} px (remembered).")

        def failed(info):
            self.measure_btn.setEnabled(True)
            self.measure_btn.setText("Measure speed")
            error_dialog(self, "Speed measurement failed", info)

        self.studio.tasks.submit(self.rec.speed_of, name, size, dev, measure=True, pool="model",
                                 on_done=done, on_error=failed)

    # --- import ----------------------------------------------------------------------------------
    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import pretrained weights", str(Path.home()),
                                              "Weights (*.pth *.pt *.safetensors *.bin);;All files (*)")
        if not path:
            return
        status = self.studio.model_status or {}
        options = ["Detect the model from the file"] + [f"{s.title} ({n})" for n, s in status.items()]
        choice, ok = QInputDialog.getItem(self, "Import weights", "These weights are for:", options, 0, False)
        if not ok:
            return
        name = None if options.index(choice) == 0 else list(status)[options.index(choice) - 1]
        self.import_weights(path, name)

    def import_weights(self, path: str, name: str | None = None):
        """Check a weights file and copy it into the models folder (in a worker)."""
        self.import_btn.setEnabled(False)

        def work():
            return self.studio.library().import_weights(path, name)

        def done(dest):
            self.import_btn.setEnabled(True)
            self.studio.message.emit(f"Weights imported: {dest}")
            self.studio.refresh_models()

        def failed(info):
            self.import_btn.setEnabled(True)
            error_dialog(self, "These weights cannot be imported", info)

        return self.studio.tasks.submit(work, pool="model", on_done=done, on_error=failed)

    # --- recommendation --------------------------------------------------------------------------
    def auto_recommend(self) -> None:
        """Recommend once the data are read and the catalog is known (speeds as remembered: quick)."""
        t = self.studio.data_table
        if self.rec is None or t is None or not getattr(t, "class_names", None) or self.studio.model_status is None \
                or not self.studio.traits().can("model-ranking"):
            return
        key = (id(t), self.studio.project.model.image_size)
        if key != self._auto_key:
            self._auto_key = key
            self.recommend(measure=not self.studio.training_active)  # each ready model is timed once, remembered

    def recommend(self, measure: bool | None = None):
        """Rank the ready models for the data read (in a worker); ``measure``: time the models whose
        speed on this computer is not known yet (default: the check box)."""
        if self.rec is None:
            return None
        table = self.studio.data_table
        if table is None or not table.class_names:
            self.rec_text.setText("Read your data on the Data page first: the recommendation depends on how many "
                                  "images and classes you have.")
            return None
        n_images = int(sum(table.report.counts.values()))
        sp = self.studio.project.data.split
        n_train = max(1, int(round(n_images * (1 - sp.val_fraction - sp.test_fraction))))
        n_classes = len(table.class_names)
        size, dev = int(self.studio.project.model.image_size), self.studio.settings.device
        budget = self.budget.value() * 60.0
        if measure is None:
            measure = self.measure_all.isChecked() and not self.studio.training_active
        self.rec_btn.setEnabled(False)
        self.rec_text.setText("Ranking the ready models…" + (" (measuring how fast each trains on this computer, "
                                                              "once)" if measure else ""))

        def work():
            return self.rec.recommend(n_train, n_classes, size, dev, budget, library=self.studio.library(), measure=measure)

        def done(recs):
            self.rec_btn.setEnabled(True)
            self.show_recommendations(recs)
            if measure:
                self._load_speeds()  # the speeds just measured, into the table

        def failed(info):
            self.rec_btn.setEnabled(True)
            self.rec_text.setText(f"No recommendation: {info.message}")

        return self.studio.tasks.submit(work, pool="model", on_done=done, on_error=failed)

    def show_recommendations(self, recs) -> None:
        if not recs:
            self.rec_text.setText("No model is ready on this computer: import weights first.")
            self.use_rec.hide()
            return
        first = recs[0]
        epochs = int(self.studio.project.training.epochs)
        best = max((r.imagenet_top1 for r in recs if r.imagenet_top1 is not None), default=None)
        lines = [f"<b>{plain_recommendation(first, epochs, best)}</b>"]
        for r in recs[1:3]:
            lines.append(f"Next: {plain_recommendation(r, epochs, best)}")
        self.rec_text.setText("<br><br>".join(lines))
        self.rec_text.setToolTip("\n\n".join(r.reason for r in recs[:3]))  # the figures behind the words
        self._recommended = first.name
        title = getattr(first, "title", "") or first.name
        taken = first.name == self.studio.project.model.architecture
        self.use_rec.setText(f"Use {title}")
        self.use_rec.setVisible(not taken)

    def _use_recommendation(self) -> None:
        if self._recommended:
            self.studio.edit("model", architecture=self._recommended)
            self._select(self._recommended)
            self.use_rec.hide()


def size_words(params_m: float) -> str:
    return "a small, fast network" if params_m < 8 else "a medium-sized network" if params_m < 30 else \
        "a large, slow network"


def plain_recommendation(r, epochs: int, best_top1: float | None) -> str:
    """A model recommendation (tlstudio.core.analysis.recommend.Recommendation) in words a clinician uses;
    its figures go in the tooltip."""
    title = r.title or r.name
    parts = [f"{title} is {size_words(r.params_m)}."]
    if r.images_per_s and r.est_seconds_per_epoch:
        total = fmt_seconds(epochs * r.est_seconds_per_epoch)
        parts.append(f"On this computer it learns from about {r.images_per_s:.0f} images a second: one pass over "
                     f"your images takes about {fmt_seconds(r.est_seconds_per_epoch)}, {epochs} passes about {total}"
                     + ("." if r.fits_budget is not False else ", more than the time you gave."))
    else:
        parts.append("Its speed on this computer is not measured yet (tick 'measure the speed' and recommend again).")
    if r.imagenet_top1 is not None and best_top1 is not None:
        parts.append("Of the ready networks it knows everyday photos best." if r.imagenet_top1 >= best_top1 - 1e-9 else
                     "It knows everyday photos a little less well than the best network here."
                     if best_top1 - r.imagenet_top1 < 5 else "It knows everyday photos less well than larger networks.")
    cap = (r.details or {}).get("capacity_weight")
    if cap is not None:
        parts.append("With a few hundred images, a bigger network would mostly learn them by heart, so size helps "
                     "only a little." if cap < 0.75 else "With this many images, a bigger network can use its size.")
    return " ".join(parts)
