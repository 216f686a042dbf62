"""Settings and Plugins dialogs."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from tlstudio.core.settings import Settings, data_dir

from .widgets import Banner, ErrorPanel, hint

DEVICES = ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps"]


class SettingsDialog(QDialog):
    """Models folder, runs folder, device: saved in settings.toml (tlstudio.core.settings)."""

    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.setWindowTitle("Settings")
        self.resize(620, 260)
        s = studio.settings
        v = QVBoxLayout(self)
        form = QFormLayout()
        self.runs = self._folder_row(form, "Runs folder", s.runs_dir, str(data_dir() / "runs"),
                                     Settings.model_fields["runs_dir"].description)
        self.models = self._folder_row(form, "Models folder", s.models_dir, str(data_dir() / "models"),
                                       Settings.model_fields["models_dir"].description
                                       + " Weights you import are copied here.")
        self.device = QComboBox()
        self.device.setObjectName("settingsDevice")
        self.device.setEditable(True)
        self.device.addItems(DEVICES)
        self.device.setEditText(s.device or "auto")
        self.device.setToolTip("The device runs use when their project says auto: auto picks a GPU when there is one.")
        form.addRow("Device", self.device)
        v.addLayout(form)
        v.addWidget(hint("The runs folder is shared with the command line (tlstudio train), so runs started there "
                         "appear on the Runs page."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        v.addWidget(buttons)

    def _folder_row(self, form: QFormLayout, label: str, value: str, default: str, tip: str) -> QLineEdit:
        row = QHBoxLayout()
        edit = QLineEdit(value)
        edit.setPlaceholderText(f"default: {default}")
        edit.setToolTip(tip)
        b = QPushButton("Choose…")
        b.clicked.connect(lambda: self._pick(edit, label))
        row.addWidget(edit, 1)
        row.addWidget(b)
        w = QWidget()
        w.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        form.addRow(label, w)
        return edit

    def _pick(self, edit: QLineEdit, label: str) -> None:
        path = QFileDialog.getExistingDirectory(self, label, edit.text() or str(data_dir()))
        if path:
            edit.setText(path)

    def accept(self) -> None:
        s = self.studio.settings.model_copy(deep=True)
        s.runs_dir = self.runs.text().strip()
        s.models_dir = self.models.text().strip()
        s.device = self.device.currentText().strip() or "auto"
        self.studio.save_settings(s)
        super().accept()


class PluginsDialog(QDialog):
    """Every plugin: loaded, failed (with its error) or disabled; enable and disable
    (remembered), then reload."""

    COLS = ["On", "Plugin", "Package", "Version", "Status", "Provides", "Problem"]

    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.setWindowTitle("Plugins")
        self.resize(980, 520)
        v = QVBoxLayout(self)
        pm = studio.plugins
        note = ("Techniques, data readers, weight sources and exporters come from plugins. A plugin that fails is "
                "listed here with its error and left out; the rest of the studio works on.")
        if pm is not None and pm.safe_mode:
            note += " Safe mode: every third-party plugin is off for this session."
        v.addWidget(Banner(note, warn=bool(pm and pm.safe_mode)))
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(self.COLS))
        self.table.setObjectName("pluginTable")
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.itemSelectionChanged.connect(self._selected)
        split.addWidget(self.table)
        self.details = ErrorPanel()
        split.addWidget(self.details)
        v.addWidget(split, 1)
        self.buttons = QDialogButtonBox()
        self.apply_btn = self.buttons.addButton("Apply and reload plugins", QDialogButtonBox.ButtonRole.ApplyRole)
        self.apply_btn.setObjectName("applyPlugins")
        self.apply_btn.clicked.connect(self.apply)
        self.apply_btn.setEnabled(False)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        v.addWidget(self.buttons)
        self.checks: dict[str, QCheckBox] = {}
        self.fill()
        studio.pluginsChanged.connect(self.fill)

    def fill(self) -> None:
        pm = self.studio.plugins
        self.checks.clear()
        if pm is None:
            self.table.setRowCount(0)
            return
        infos = sorted(pm.plugins.values(), key=lambda p: (p.status != "failed", not p.builtin, p.name))
        self.infos = infos
        self.table.setRowCount(len(infos))
        disabled = set(pm.settings.disabled_plugins)
        for r, p in enumerate(infos):
            cb = QCheckBox()
            cb.setChecked(p.name not in disabled)
            cb.setToolTip("Switch the plugin on or off (remembered); Apply reloads the plugins.")
            cb.toggled.connect(lambda _on: self.apply_btn.setEnabled(True))
            self.checks[p.name] = cb
            holder = QWidget()
            h = QHBoxLayout(holder)
            h.setContentsMargins(6, 0, 0, 0)
            h.addWidget(cb)
            self.table.setCellWidget(r, 0, holder)
            status = p.status
            if status == "disabled" and pm.safe_mode and not p.builtin and p.name not in disabled:
                status = "disabled (safe mode)"
            provides = "; ".join(f"{k.replace('tlstudio_', '')}: {', '.join(v)}" for k, v in p.provides.items() if v)
            notes = list(getattr(p, "notes", []))  # a slow load ...
            vals = [p.name + ("  (built in)" if p.builtin else ""), p.dist, p.version, status, provides,
                    p.errors[0] if p.errors else (notes[0] if notes else "")]
            for c, text in enumerate(vals, start=1):
                it = QTableWidgetItem(text)
                it.setToolTip("\n".join(p.errors) if c == 6 and p.errors else text)
                if c == 4:
                    it.setForeground(QColor({"loaded": "#1e8449", "failed": "#b03a2e"}.get(p.status, "#7f7f7f")))
                self.table.setItem(r, c, it)
        self.table.resizeColumnsToContents()
        if self.table.columnWidth(5) > 300:
            self.table.setColumnWidth(5, 300)
        self.table.horizontalHeader().setSectionResizeMode(len(self.COLS) - 1, QHeaderView.ResizeMode.Stretch)
        self.apply_btn.setEnabled(False)

    def status_of(self, name: str) -> str:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 1).text().split("  (")[0] == name:
                return self.table.item(r, 4).text()
        raise KeyError(name)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        p = self.infos[rows[0].row()]
        if p.errors:
            self.details.show_error("\n".join(p.errors), "\n\n".join(p.details),
                                    title=f"{p.name} — {p.dist} {p.version}".rstrip() + f": {p.status}")
        else:
            self.details.show_error(f"{p.name}: {p.status}. Module {p.module}.", title=p.name)
            self.details.setStyleSheet("QFrame#errorPanel { background: #f4f6f7; border: 1px solid #d5d8dc; }")
            return
        self.details.setStyleSheet("QFrame#errorPanel { background: #fdecea; border: 1px solid #e6b0aa; }")

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.checks[name].setChecked(enabled)

    def apply(self) -> None:
        pm = self.studio.plugins
        if pm is None:
            return
        for name, cb in self.checks.items():
            pm.set_enabled(name, cb.isChecked(), save=False)
        from tlstudio.core.settings import load_settings, save_settings

        s = load_settings()
        s.disabled_plugins = list(pm.settings.disabled_plugins)
        save_settings(s)
        self.studio.settings.disabled_plugins = list(s.disabled_plugins)
        self.apply_btn.setEnabled(False)
        self.studio.reload_plugins()


class AboutDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        from tlstudio import __version__

        self.setWindowTitle("About Transfer Learning Studio")
        v = QVBoxLayout(self)
        lab = QLabel(f"<h3>Transfer Learning Studio {__version__}</h3>"
                     "<p>Adapt a pretrained network to your own images by pointing and clicking, offline.</p>"
                     "<p>Every run can be repeated from the command line: <tt>tlstudio train &lt;run&gt;/project.toml</tt>.</p>")
        lab.setWordWrap(True)
        v.addWidget(lab)
        b = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        b.accepted.connect(self.accept)
        v.addWidget(b)


class _Relay(QObject):
    """Carries events from a worker thread to the dialog (a queued signal)."""

    event = Signal(object)


class ExportDialog(QDialog):
    """Export a finished run: a format (the exporter plugins; ONNX for a text run) and a package
    folder; the export and its parity check run in a worker; the parity figure and the package
    path, or the error in plain words, are shown when it ends."""

    def __init__(self, studio, run_dir: str, parent=None):
        super().__init__(parent)
        from .runactions import default_export_folder, export_formats, run_task

        self.studio = studio
        self.run_dir = str(run_dir)
        self.summary: dict | None = None
        self.task = None
        self.setWindowTitle(f"Export {Path(run_dir).name}")
        self.resize(640, 320)
        v = QVBoxLayout(self)
        form = QFormLayout()
        self.format = QComboBox()
        self.format.setObjectName("exportFormat")
        for fid, title in export_formats(studio.plugins, run_task(run_dir)).items():
            self.format.addItem(title, fid)
        form.addRow("Format", self.format)
        row = QHBoxLayout()
        self.folder = QLineEdit()
        self.folder.setObjectName("exportFolder")
        self.folder.setToolTip("The package folder: new, empty, or an earlier package of the same run (replaced)")
        pick = QPushButton("Choose…")
        pick.clicked.connect(self._pick)
        row.addWidget(self.folder, 1)
        row.addWidget(pick)
        w = QWidget()
        row.setContentsMargins(0, 0, 0, 0)
        w.setLayout(row)
        form.addRow("Package folder", w)
        v.addLayout(form)
        self._default = lambda fid: str(default_export_folder(run_dir, fid))
        self.folder.setText(self._default(self.format.currentData() or "onnx"))
        self.format.currentIndexChanged.connect(self._format_changed)
        v.addWidget(hint("The exported model is run again on real inputs of the run and compared with the PyTorch "
                         "model; a package that does not match is not written."))
        self.progress = QProgressBar()
        self.progress.setObjectName("exportProgress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.hide()
        v.addWidget(self.progress)
        self.stage = QLabel("")
        self.stage.setObjectName("exportStage")
        self.stage.setWordWrap(True)
        v.addWidget(self.stage)
        self.outcome = Banner("")
        self.outcome.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.outcome.label.setOpenExternalLinks(True)
        self.outcome.hide()
        v.addWidget(self.outcome)
        self.error = ErrorPanel()
        v.addWidget(self.error)
        v.addStretch(1)
        self.buttons = QDialogButtonBox()
        self.export_btn = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_btn.setObjectName("exportButton")
        self.close_btn = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_btn.clicked.connect(self.export)
        self.close_btn.clicked.connect(self.reject)
        v.addWidget(self.buttons)
        self._relay = _Relay(self)
        self._relay.event.connect(self._on_event)
        if self.format.count() == 0:
            self.export_btn.setEnabled(False)
            self.error.show_error("No exporter is available: check the Plugins dialog (ONNX needs onnx and "
                                  "onnxruntime, TorchScript needs torch).", title="Cannot export")

    def _format_changed(self) -> None:
        text = self.folder.text().strip()
        if not text or any(text == self._default(self.format.itemData(i)) for i in range(self.format.count())):
            self.folder.setText(self._default(self.format.currentData()))

    def _pick(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Package folder", self.folder.text())
        if d:
            self.folder.setText(d)

    def export(self) -> None:
        from .runactions import export_package

        out = self.folder.text().strip()
        if not out:
            self.error.show_error("Choose a package folder first.", title="Cannot export")
            return
        fmt = self.format.currentData()
        self.error.clear()
        self.outcome.hide()
        self.summary = None
        self.export_btn.setEnabled(False)
        self.progress.setRange(0, 0)  # busy: the export reports stages, not a count
        self.progress.show()
        self.stage.setText(f"Exporting to {self.format.currentText()} …")
        self.task = self.studio.tasks.submit(export_package, self.run_dir, fmt, out, plugins=self.studio.plugins,
                                             on_event=self._relay.event.emit, pool="model", name="export",
                                             on_done=self._done, on_error=self._failed)

    def _on_event(self, e: dict) -> None:
        if e.get("kind") in ("stage", "log") and e.get("message"):
            self.stage.setText(str(e["message"]))

    def _end(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.hide()
        self.export_btn.setEnabled(True)

    def _done(self, res: dict) -> None:
        from .runactions import parity_text

        self._end()
        self.summary = res
        self.stage.setText("")
        pkg = res["package"]
        self.outcome.set_text(f"{parity_text(res)}<br>Package: <a href='{QUrl.fromLocalFile(pkg).toString()}'>{pkg}</a>"
                              f"<br>Files: {', '.join(res['files'])}", warn=not res.get("passed"))
        self.studio.runsChanged.emit()

    def _failed(self, info) -> None:
        self._end()
        self.stage.setText("")
        self.error.show_error(info.message, info.details, info.advice, title="The export failed")
