"""Data: choose the data of the project's task (images, texts, annotated images), read and
check them, the split and the augmentation; what the read found is shown by
:mod:`.datareport` (counts, skipped items and why, thumbnails or texts per class, the preview)."""
from __future__ import annotations

import json

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QSplitter,
                               QTableWidget, QTabWidget, QVBoxLayout, QWidget)

from tlstudio.core.config import AugmentationConfig, SplitConfig
from tlstudio.core.data.readers import has_builtin_readers
from tlstudio.core.tasks.traits import ANNOTATION_KINDS

from ..forms import PydanticForm
from ..tasks import ErrorInfo
from ..taskdata import option_choices, table_kind
from ..widgets import Banner, ErrorPanel, ThumbStrip, clear_layout, heading, hint
from . import Page, scrolled
from .datareport import PREVIEW_IMAGES, DataReport

BUILTIN_FORMATS = ["auto", "folder", "csv", "npz", "dicom"]
AUTO_COLUMN = "(found by name)"
def read_table(source: str, fmt: str, options: dict, readers, task=None):
    from tlstudio.core.data import read_data

    return read_data(source, fmt, options, readers,
                     progress=(task.report if task else None),
                     should_stop=(lambda: task.cancelled) if task else None)


class DataPage(DataReport, Page):
    key = "data"

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.table = None
        self._read_task = None
        self._read_token = None
        self._preview_task = None
        self._preview_seed = 0
        self.preview_generation = 0  # how many previews were drawn (tests read it)
        self.thumbs: dict[str, ThumbStrip] = {}

        root = QVBoxLayout(self)
        self.banner = Banner("Choose your images: a folder with one sub-folder per class, a CSV table (path, label), "
                             "a MedMNIST-style .npz or DICOM files. Every image is opened and checked; unusable ones "
                             "are listed with the reason and left out.")
        root.addWidget(self.banner)

        src = QGroupBox("Images")
        self.src_box = src
        form = QFormLayout(src)
        self.src_form = form
        row = QHBoxLayout()
        self.source = QLineEdit()
        self.source.setObjectName("dataSource")
        self.source.setPlaceholderText("a folder of class folders, a .csv, an .npz, or DICOM files")
        self.source.editingFinished.connect(self._source_typed)
        b_folder = QPushButton("Folder…")
        b_folder.clicked.connect(lambda: self._choose(folder=True))
        b_file = QPushButton("File…")
        b_file.clicked.connect(lambda: self._choose(folder=False))
        self.fmt = QComboBox()
        self.fmt.setObjectName("dataFormat")
        self.fmt.addItems(BUILTIN_FORMATS)
        self.fmt.setToolTip("How to read the data: auto recognises folders, CSV, NPZ and DICOM.")
        self.fmt.currentTextChanged.connect(self._format_changed)
        self.read_btn = QPushButton("Read and check")
        self.read_btn.setObjectName("readData")
        self.read_btn.clicked.connect(self.read)
        for w in (self.source, b_folder, b_file, QLabel("Format"), self.fmt, self.read_btn):
            row.addWidget(w)
        form.addRow("Data", row)
        self.options = QLineEdit()
        self.options.setPlaceholderText('reader options as JSON, e.g. {"label_column": "diagnosis"}')
        self.options.editingFinished.connect(self._options_typed)
        form.addRow("Reader options", self.options)
        crow = QHBoxLayout()
        self.text_column = QComboBox()
        self.text_column.setObjectName("textColumn")
        self.text_column.setToolTip("The column (or field) that holds the texts.")
        self.label_column = QComboBox()
        self.label_column.setObjectName("labelColumn")
        self.label_column.setToolTip("The column (or field) that holds the labels.")
        self.test_files = QComboBox()
        self.test_files.setObjectName("testFiles")
        self.test_files.setToolTip("A folder of sentence<TAB>label files: keep one file (one source) aside as the test "
                                   "set — train on the others, test on this one.")
        for combo, key in ((self.text_column, "text_column"), (self.label_column, "label_column"),
                           (self.test_files, "test_files")):
            combo.addItem(AUTO_COLUMN, "")
            combo.activated.connect(lambda _i, c=combo, k=key: self._column_chosen(k, c.currentData()))
        self.column_labels = {}
        for combo, key, text in ((self.text_column, "text_column", "Text column"),
                                 (self.label_column, "label_column", "Label column"),
                                 (self.test_files, "test_files", "Test file")):
            self.column_labels[key] = QLabel(text)
            crow.addWidget(self.column_labels[key])
            crow.addWidget(combo, 1)
        self.test_files.hide()
        self.column_labels["test_files"].hide()
        self.columns_row = QWidget()
        self.columns_row.setLayout(crow)
        self.columns_label = QLabel("Columns")
        form.addRow(self.columns_label, self.columns_row)
        self.column_choices: dict[str, list[str]] = {}
        self._set_columns_visible(False)
        trow = QHBoxLayout()
        self.target = QLineEdit()
        self.target.setObjectName("targetSource")
        self.target.setPlaceholderText("optional: images of the target domain (another scanner or hospital), labels not needed")
        self.target.editingFinished.connect(self._target_typed)
        t_folder = QPushButton("Folder…")
        t_folder.clicked.connect(lambda: self._choose(folder=True, target=True))
        t_file = QPushButton("File…")
        t_file.clicked.connect(lambda: self._choose(folder=False, target=True))
        t_clear = QPushButton("Clear")
        t_clear.clicked.connect(lambda: self._set_target(""))
        for w in (self.target, t_folder, t_file, t_clear):
            trow.addWidget(w)
        form.addRow("Target domain", trow)
        self.target_row = trow
        self.target_info = hint("Used by domain-adaptation techniques; other techniques ignore it.")
        form.addRow("", self.target_info)
        root.addWidget(src)

        prow = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setFormat("Reading %v / %m")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._cancel)
        prow.addWidget(self.progress)
        prow.addWidget(self.cancel_btn)
        self.progress_row = QWidget()
        self.progress_row.setLayout(prow)
        self.progress_row.hide()
        root.addWidget(self.progress_row)
        self.error = ErrorPanel()
        root.addWidget(self.error)

        split = QSplitter(Qt.Orientation.Horizontal)
        # left: the report
        self.tabs = QTabWidget()
        rep = QWidget()
        rv = QVBoxLayout(rep)
        self.summary = QLabel("No data read yet.")
        self.summary.setObjectName("dataSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.summary)
        self.chart_box = QVBoxLayout()
        rv.addLayout(self.chart_box, 1)
        self.chart = None
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #9a5b00;")
        rv.addWidget(self.warnings)
        self.tabs.addTab(rep, "Report")
        self.skipped = QTableWidget(0, 2)
        self.skipped.setObjectName("skippedTable")
        self.skipped.setHorizontalHeaderLabels(["File", "Why it was skipped"])
        self.skipped.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.skipped.horizontalHeader().setStretchLastSection(True)
        self.skipped.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.tabs.addTab(self.skipped, "Skipped (0)")
        self.thumb_host = QWidget()
        self.thumb_layout = QVBoxLayout(self.thumb_host)
        self.thumb_layout.addStretch(1)
        self.tabs.addTab(scrolled(self.thumb_host), "Images per class")
        from ..shift import ShiftPanel

        self.shift_panel = ShiftPanel(studio)
        self.shift_tab = scrolled(self.shift_panel)
        self.tabs.addTab(self.shift_tab, "Domain shift")
        from ..leakview import GroupsLeakPanel

        self.groups_panel = GroupsLeakPanel(studio)
        self.tabs.addTab(self.groups_panel, "Patients and leaks")
        self.text_previews: dict[str, list[str]] = {}  # class -> texts shown (tests read it)
        self.annotated: list[dict] = []  # the annotated examples shown (detection / captioning)
        split.addWidget(self.tabs)

        # right: split and augmentation
        right = QWidget()
        rr = QVBoxLayout(right)
        sbox = QGroupBox("Split")
        sv = QVBoxLayout(sbox)
        self.split_form = PydanticForm(SplitConfig, exclude=["file"], title="Split")
        self.split_form.changed.connect(self._split_changed)
        sv.addWidget(self.split_form)
        rr.addWidget(sbox)
        abox = QGroupBox("Augmentation (training only)")
        self.aug_box = abox
        av = QVBoxLayout(abox)
        self.aug_form = PydanticForm(AugmentationConfig, title="Augmentation")
        self.aug_form.changed.connect(self._aug_changed)
        av.addWidget(self.aug_form)
        head = QHBoxLayout()
        preview_title = heading("Preview: the images as the model sees them, then varied at random")
        preview_title.setWordWrap(True)  # the panel fits beside the report on a 1366-pixel screen
        head.addWidget(preview_title, 1)
        self.new_draw = QPushButton("New examples")
        self.new_draw.clicked.connect(self._new_draw)
        head.addWidget(self.new_draw)
        av.addLayout(head)
        self.preview_host = QWidget()
        self.preview_grid = QGridLayout(self.preview_host)
        self.preview_grid.setSpacing(3)
        self.preview_grid.setColumnStretch(PREVIEW_IMAGES + 1, 1)
        self.preview_note = hint("Read the data to see examples.")
        av.addWidget(self.preview_note)
        av.addWidget(self.preview_host)
        rr.addWidget(abox)
        rr.addStretch(1)
        self.preview_host.setMinimumWidth(PREVIEW_IMAGES * 69 + 64)  # the images and their row labels
        self.right_area = area = scrolled(right)  # never cut off on the right: the report beside it gives way
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setMinimumWidth(right.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
        split.addWidget(area)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        root.addWidget(split, 1)

        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(250)
        self._preview_timer.timeout.connect(self.refresh_preview)

        self._read_for_task: str | None = None
        self._waiting_for_plugins = False
        studio.projectReplaced.connect(self.load_project)
        studio.pluginsChanged.connect(self._plugins_changed)
        studio.projectEdited.connect(self._project_edited)
        self.load_project()

    # --- project <-> controls ------------------------------------------------------------------
    def load_project(self) -> None:
        p = self.studio.project
        self.source.setText(p.data.source)
        self.target.setText(p.data.target_source)
        self.options.setText(json.dumps(p.data.options) if p.data.options else "")
        self.fmt.blockSignals(True)
        if self.fmt.findText(p.data.format) < 0:
            self.fmt.addItem(p.data.format)
        self.fmt.setCurrentText(p.data.format)
        self.fmt.blockSignals(False)
        self.split_form.set_values(p.data.split)
        self.aug_form.set_values(p.augmentation)
        self._show_task()
        self._clear_report()
        if p.data.source:
            self.read()  # images are read at once with the built-in readers, before the plugins have loaded
        self._show_target_info()

    # --- the task: which readers, which views ------------------------------------------------------
    def _set_columns_visible(self, on: bool) -> None:
        self.columns_row.setVisible(on)
        self.columns_label.setVisible(on)

    def _show_task(self) -> None:
        """The task's words, and the tools that apply to it (its traits)."""
        t = self.studio.traits()
        self.banner.set_text(t.description or f"Choose your data for {t.title or t.id}.")
        self.source.setPlaceholderText(t.sources or "a folder or a file of your data")
        self.tabs.setTabText(2, t.examples_title)
        self._set_columns_visible(t.texts)  # the text and label columns of a table
        self.src_box.setTitle(t.data_title)
        # the target domain and its shift measure are images of the same classes; texts are not augmented
        self.src_form.setRowVisible(self.target_row, t.can("target-domain"))
        self.src_form.setRowVisible(self.target_info, t.can("target-domain"))
        self.tabs.setTabVisible(self.tabs.indexOf(self.shift_tab), t.can("target-domain"))
        self.aug_box.setVisible(t.can("augmentation"))
        self.shift_panel.update_enabled()

    def _project_edited(self, section: str) -> None:
        """A technique of another task reads the data with that task's readers; an augmentation
        changed elsewhere (the Technique page's mirror question) is shown here too."""
        if section == "augmentation" and self.aug_form.values() != self.studio.project.augmentation.model_dump(mode="json"):
            self.aug_form.set_values(self.studio.project.augmentation)
            self._preview_timer.start()
        if section != "technique":
            return
        self._show_task()
        if self._read_for_task not in (None, self.studio.project.task) and self.studio.project.data.source \
                and self.studio.plugins is not None:
            self.read()

    def _column_chosen(self, key: str, value: str | None) -> None:
        """A text or label column chosen: into the reader options, and read again."""
        opts = dict(self.studio.project.data.options)
        if value:
            opts[key] = value
        else:
            opts.pop(key, None)
        if opts == self.studio.project.data.options:
            return
        self.options.setText(json.dumps(opts) if opts else "")
        self.options.setStyleSheet("")
        self.studio.set_form_problems("Reader options", [])
        self.studio.edit("data", options=opts)
        self.read()

    def _fill_columns(self, choices: dict[str, list[str]]) -> None:
        self.column_choices = choices
        opts = self.studio.project.data.options
        # a table offers its columns; a folder of sentence<TAB>label files its files (for the test set)
        table = "text_column" in choices or "test_files" not in choices
        for combo, key in ((self.text_column, "text_column"), (self.label_column, "label_column"),
                           (self.test_files, "test_files")):
            shown = table if key != "test_files" else len(choices.get("test_files", [])) > 1
            combo.setVisible(shown)
            self.column_labels[key].setVisible(shown)
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(AUTO_COLUMN if key != "test_files" else "(none: a random split)", "")
            for v in choices.get(key, []):
                if v:
                    combo.addItem(v, v)
            cur = opts.get(key) or ""
            cur = ",".join(map(str, cur)) if isinstance(cur, (list, tuple)) else str(cur)
            if cur and combo.findData(cur) < 0:
                combo.addItem(f"{cur} (not in the file)", cur)
            combo.setCurrentIndex(max(0, combo.findData(cur)))
            combo.setEnabled(bool(choices.get(key)))
            combo.blockSignals(False)

    def _load_column_choices(self, source: str, fmt: str, readers) -> None:
        def done(res):
            if source != str(self.studio.project.resolve(self.studio.project.data.source)):
                return
            self._fill_columns(res[1])

        self.studio.tasks.submit(option_choices, source, fmt, readers, name="column-choices", on_done=done)

    def _plugins_changed(self) -> None:
        pm = self.studio.plugins
        ids = ["auto"] + [r.id for r in pm.readers()] if pm else BUILTIN_FORMATS
        cur = self.fmt.currentText()
        self.fmt.blockSignals(True)
        self.fmt.clear()
        self.fmt.addItems(list(dict.fromkeys(ids)))
        self.fmt.setCurrentText(cur)
        self.fmt.blockSignals(False)
        if self.table is None and self.studio.project.data.source and (self._read_task is None
                                                                       or self._waiting_for_plugins):
            self.read()

    def _choose(self, folder: bool, target: bool = False) -> None:
        start = str(self.studio.project.base_dir)
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder of images", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a data file", start,
                                                  "Data files (*.csv *.tsv *.txt *.json *.jsonl *.npz *.dcm *.dicom);;"
                                                  "All files (*)")
        if not path:
            return
        if target:
            self._set_target(path)
        else:
            self.set_source(path)

    def set_source(self, path: str, fmt: str | None = None) -> None:
        """Use these images (absolute path) and read them."""
        self.source.setText(path)
        changes = {"source": path}
        if fmt:
            changes["format"] = fmt
            self.fmt.setCurrentText(fmt)
        self.studio.edit("data", **changes)
        self.shift_panel.update_enabled()
        self.read()

    def _source_typed(self) -> None:
        text = self.source.text().strip()
        if text != self.studio.project.data.source:
            self.set_source(text)

    def _format_changed(self, fmt: str) -> None:
        if fmt and fmt != self.studio.project.data.format:
            self.studio.edit("data", format=fmt)
            if self.studio.project.data.source:
                self.read()

    def _options_typed(self) -> None:
        text = self.options.text().strip()
        try:
            opts = json.loads(text) if text else {}
            if not isinstance(opts, dict):
                raise ValueError("expected an object")
        except (json.JSONDecodeError, ValueError) as e:
            self.studio.set_form_problems("Reader options", [f"not valid JSON ({e})"])
            self.options.setStyleSheet("border: 1px solid #c0392b;")
            return
        self.options.setStyleSheet("")
        self.studio.set_form_problems("Reader options", [])
        if opts != self.studio.project.data.options:
            self.studio.edit("data", options=opts)
            self.read()

    def _set_target(self, path: str) -> None:
        self.target.setText(path)
        if path != self.studio.project.data.target_source:
            self.studio.edit("data", target_source=path)
        self._show_target_info()
        self.shift_panel.update_enabled()

    def _target_typed(self) -> None:
        self._set_target(self.target.text().strip())

    def _show_target_info(self) -> None:
        p = self.studio.project
        if not p.data.target_source:
            self.target_info.setText("Used by domain-adaptation techniques; other techniques ignore it.")
            return
        path = p.resolve(p.data.target_source)
        if not path.exists():
            self.target_info.setText(f"{path} does not exist.")
            return
        self.target_info.setText("Reading the target-domain images…")
        readers = self._readers(p.task)  # images of the same classes

        def done(table):
            r = table.report
            self.target_info.setText(f"Target domain: {r.total:,} usable images ({r.unlabelled:,} unlabelled), "
                                     f"{len(r.skipped):,} skipped. Used by domain-adaptation techniques.")

        self.studio.tasks.submit(read_table, str(path), "auto", {}, readers, on_done=done,
                                 on_error=lambda info: self.target_info.setText(f"Target domain: {info.message}"))

    def _split_changed(self) -> None:
        self.studio.set_form_problems("Split", self.split_form.problems())
        vals = self.split_form.values()
        if vals is None:
            return
        vals["file"] = self.studio.project.data.split.file
        if vals != self.studio.project.data.split.model_dump(mode="json"):
            self.studio.replace("data.split", vals)
            self._show_report()

    def _aug_changed(self) -> None:
        self.studio.set_form_problems("Augmentation", self.aug_form.problems())
        vals = self.aug_form.values()
        if vals is None:
            return
        aug = self.studio.project.augmentation
        if vals["mirror_safe"] != aug.mirror_safe and vals["mirror_safe"] is not None:
            vals["horizontal_flip"] = vals["mirror_safe"]  # the answer decides the flips (as on the Technique page)
            self.aug_form.set_values(vals)
        if vals != aug.model_dump(mode="json"):
            self.studio.replace("augmentation", vals)
        self._preview_timer.start()

    # --- reading ---------------------------------------------------------------------------------
    def read(self) -> None:
        p = self.studio.project
        if not p.data.source:
            return
        if self._read_task is not None:
            self._read_task.cancel()
        self.error.clear()
        self._clear_report()
        self.studio.set_data(None)
        self.progress_row.show()
        self.progress.setRange(0, 0)
        self._read_for_task = p.task
        self._show_task()
        self._waiting_for_plugins = self.studio.plugins is None and not has_builtin_readers(p.task)
        if self._waiting_for_plugins:  # texts, boxes, captions: their readers are plugins
            self.summary.setText(f"Preparing to read {p.resolve(p.data.source).name}: the readers are loading…")
            return
        traits = self.studio.traits()
        self.summary.setText(f"Reading and checking every {traits.item}…")
        readers = self._readers(p.task)
        if traits.texts:
            self._load_column_choices(str(p.resolve(p.data.source)), p.data.format, readers)
        token = object()  # which read a result belongs to (a newer read makes older ones moot)
        self._read_token = token
        self._read_task = self.studio.tasks.submit(
            read_table, str(p.resolve(p.data.source)), p.data.format, dict(p.data.options), readers, pass_task=True,
            name="read-data", on_progress=self._progress, on_done=lambda t, token=token: self._read_done(token, t),
            on_error=lambda info, token=token: self._read_failed(token, info))

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.summary.setText(f"Reading and checking {done:,} of {total:,}…")

    def _cancel(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()

    def _read_failed(self, token, info: ErrorInfo) -> None:
        if token is not self._read_token:
            return
        task, self._read_task = self._read_task, None
        self.progress_row.hide()
        if task is not None and task.cancelled:
            self.summary.setText("Reading was cancelled.")
            return
        self.studio.set_data(None, info.message)
        self.summary.setText("The data could not be read.")
        self.error.show_info(info, "The data could not be read")

    def _read_done(self, token, table) -> None:
        if token is not self._read_token:
            return
        self._read_task = None
        self.progress_row.hide()
        self.table = table
        self.studio.set_data(table)
        self._show_report()
        self.groups_panel.show_table(table)
        kind = table_kind(table)
        if kind == "text":
            self._show_texts()
        elif kind in ANNOTATION_KINDS:
            self._load_annotated()
        else:
            self._load_thumbnails()
        self.refresh_preview()

    # --- report ----------------------------------------------------------------------------------
    def _readers(self, task: str) -> list | None:
        """The readers (built-in and plugins') of ``task``: a .csv of images is not a text table."""
        pm = self.studio.plugins
        if not pm:
            return None
        return [r for r in pm.readers() if getattr(r, "task", "image-classification") == task] or None

    def _clear_report(self) -> None:
        self.table = None
        self.summary.setText("No data read yet.")
        self.warnings.setText("")
        self.skipped.setRowCount(0)
        self.tabs.setTabText(1, "Skipped (0)")
        self.thumbs.clear()
        self.text_previews = {}
        self.annotated = []
        self.groups_panel.clear()
        clear_layout(self.thumb_layout)
        self.thumb_layout.addStretch(1)
        clear_layout(self.preview_grid)
        self.preview_note.show()
        if self.chart is not None:  # no bars, no class names, no legend of the data read before
            self.chart.clear()
            self.chart.getPlotItem().getAxis("bottom").setTicks(None)
            if self.chart.getPlotItem().legend is not None:
                self.chart.getPlotItem().legend.clear()
            self.bar_items = []

    def split_counts(self) -> dict[str, dict[str, int]] | None:
        from tlstudio.core.data import make_split, split_counts

        t = self.table
        sp = self.studio.project.data.split
        if t is None or not t.class_names:
            return None
        try:
            return split_counts(t, make_split(t, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed))
        except Exception:  # noqa: BLE001 - e.g. "given" with a source that has no split: the engine says why
            return None

    def image_split_counts(self) -> dict[str, int] | None:
        """{split: images} (annotated images have no class to count by)."""
        from collections import Counter

        from tlstudio.core.data import make_split

        t = self.table
        sp = self.studio.project.data.split
        if t is None or not t.items:
            return None
        try:
            c = Counter(make_split(t, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed))
        except Exception:  # noqa: BLE001 - the engine says why when it trains
            return None
        return {s: c.get(s, 0) for s in ("train", "val", "test")}
