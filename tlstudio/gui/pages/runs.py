"""Runs: the history from the run store; open a run, compare two, resume an interrupted one,
follow one that another process (the command line, torchrun) is writing."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl, Qt
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..widgets import Banner, fmt_num, fmt_seconds, heading
from . import Page

COLUMNS = ["Started", "Status", "Technique", "Model", "Best (validation)", "Test accuracy", "Test AUC", "Project", "Data",
           "Run"]
STATUS_COLORS = {"done": "#1e8449", "running": "#1f618d", "failed": "#b03a2e", "stopped": "#9a5b00",
                 "interrupted": "#9a5b00"}
COMPARE_ROWS = [("test_accuracy", "Test accuracy"), ("test_balanced_accuracy", "Balanced accuracy"),
                ("test_auc", "AUC"), ("test_f1_macro", "Macro F1"), ("test_loss", "Test loss"),
                ("best_epoch", "Best epoch"), ("train_seconds", "Training time")]


def _started(run_id: str) -> str:
    try:
        return dt.datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ""


def scan_runs(root: Path) -> list[dict]:
    """One row per run (off the GUI thread: it reads every run's small JSON files)."""
    from tlstudio.core.runs import list_runs, summarize

    rows = []
    for r in list_runs(root):
        try:
            s = summarize(r)
        except Exception:  # noqa: BLE001 - a damaged run still lists
            continue
        try:
            project = r.project().name
        except Exception:  # noqa: BLE001 - a damaged run still lists
            project = "?"
        rows.append({"dir": s.path, "id": s.id, "status": s.status, "technique": s.technique, "model": s.model,
                     "best_metric": s.best_metric, "best_value": s.best_value, "test": s.test,
                     "resumable": r.resumable(), "started": _started(s.id), "project": project, "data": s.data})
    return rows


def compare_data(dirs: list[str]) -> list[dict]:
    from tlstudio.core.runs import Run

    out = []
    for d in dirs:
        r = Run(d)
        final = r.final()
        try:
            p = r.project()
            meta = {"technique": p.technique.id, "model": p.model.architecture, "image size": p.model.image_size,
                    "epochs": p.training.epochs, "learning rate": p.training.lr, "batch size": p.training.batch_size,
                    "project": p.name, "data": p.data.source}
        except Exception:  # noqa: BLE001
            meta = {}
        started = next(r.iter_events({"start"}), {}).get("time", 0.0)
        classes = list((final.get("test") or {}).get("class_names") or [])
        out.append({"dir": d, "id": r.id, "epochs": r.epochs(), "final": final, "meta": meta, "started": started,
                    "monitor": final.get("monitor") or r.status_info().get("monitor", ""), "classes": classes,
                    "fingerprint": r.env().get("data_fingerprint")})
    return sorted(out, key=lambda x: x["started"])  # A is the earlier run


def comparison_warning(data: list[dict]) -> str:
    """Why the compared runs' figures cannot be set side by side ("" when they can): other data
    (another source or other images), or other classes."""
    if len(data) < 2:
        return ""
    names = ["AB"[i] if i < 2 else str(i) for i in range(len(data))]
    out = []
    sources = [d["meta"].get("data") for d in data]
    prints = [d.get("fingerprint") for d in data]
    if len(set(sources)) > 1 or (all(prints) and len(set(prints)) > 1):
        where = "; ".join(f"{n}: {Path(s or '?').name}" for n, s in zip(names, sources))
        out.append(f"These runs used different data ({where}), so their test figures were measured on different "
                   "images and cannot be compared.")
    classes = [tuple(d.get("classes") or ()) for d in data]
    if all(classes) and len(set(classes)) > 1:
        what = "; ".join(f"{n}: {', '.join(c[:6])}{' …' if len(c) > 6 else ''}" for n, c in zip(names, classes))
        out.append(f"They tell apart different classes ({what}).")
    return " ".join(out)


class RunsPage(Page):
    key = "runs"

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.rows: list[dict] = []
        self.compared: list[dict] = []
        root = QVBoxLayout(self)
        root.addWidget(Banner("Every run is a folder in the run store with its project file, metrics, checkpoints and "
                              "report. A run started from the command line (tlstudio train) appears here too: "
                              "select it and press Follow to watch it live."))
        bar = QHBoxLayout()
        self.buttons = {}
        for key, text, tip in (("refresh", "Refresh", "Read the run store again"),
                               ("open", "Open", "Show the run's curves and results"),
                               ("compare", "Compare two", "Select two runs (Ctrl+click) to overlay their curves"),
                               ("resume", "Resume", "Continue a stopped or interrupted run from its last epoch"),
                               ("follow", "Follow", "Watch a run that another process is writing"),
                               ("folder", "Open folder", "Open the run folder in the file manager"),
                               ("export", "Export…", "Export the finished run as a checked model package (ONNX, "
                                                     "TorchScript) with its model card"),
                               ("report", "Report", "Write the run's report (report.html: curves, test results with "
                                                    "confidence intervals, settings) and open it")):
            b = QPushButton(text)
            b.setObjectName(f"runs_{key}")
            b.setToolTip(tip)
            b.clicked.connect(getattr(self, key if key != "open" else "open_selected"))
            bar.addWidget(b)
            self.buttons[key] = b
        bar.addStretch(1)
        self.where = QLabel()
        self.where.setStyleSheet("color: #555555;")
        bar.addWidget(self.where)
        root.addLayout(bar)
        self.note = QLabel()
        self.note.setObjectName("runsNote")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.note.setOpenExternalLinks(True)
        self.note.hide()
        root.addWidget(self.note)
        self.export_dialog = None
        self.report_path: str | None = None
        self.open_reports = True  # open a written report in the browser (tests turn it off)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda _i: self.open_selected())
        split.addWidget(self.table)
        self.compare_box = QWidget()
        cv = QVBoxLayout(self.compare_box)
        cv.setContentsMargins(0, 0, 0, 0)
        self.compare_title = heading("")
        cv.addWidget(self.compare_title)
        self.compare_warning = Banner("", warn=True)
        self.compare_warning.setObjectName("compareWarning")
        self.compare_warning.hide()
        cv.addWidget(self.compare_warning)
        ch = QHBoxLayout()
        self.compare_plots: dict[str, object] = {}
        self.plot_host = ch
        self.compare_table = QTableWidget(0, 3)
        self.compare_table.setObjectName("compareTable")
        self.compare_table.verticalHeader().hide()
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_table.setMinimumWidth(360)
        ch.addWidget(self.compare_table)
        cv.addLayout(ch, 1)
        self.compare_box.hide()
        split.addWidget(self.compare_box)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        root.addWidget(split, 1)

        self._timer = QTimer(self)
        self._timer.setInterval(3000)
        self._timer.timeout.connect(self._auto_refresh)
        self._scanning = False
        studio.runsChanged.connect(self.refresh)
        studio.settingsChanged.connect(self.refresh)
        studio.pluginsChanged.connect(self._update_buttons)  # Export needs the exporter plugins
        self.refresh()
        self._update_buttons()

    def activated(self) -> None:
        self.refresh()
        self._timer.start()

    def _auto_refresh(self) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._timer.stop()

    # --- list ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self._scanning:
            return
        self._scanning = True
        root = self.studio.runs_dir()
        self.where.setText(f"Run store: {root}")

        def done(rows):
            self._scanning = False
            self.fill(rows)

        def failed(info):
            self._scanning = False
            self.where.setText(f"Run store {root}: {info.message}")

        self.studio.tasks.submit(scan_runs, root, on_done=done, on_error=failed)

    def fill(self, rows: list[dict]) -> None:
        selected = set(self.selected_dirs())
        self.rows = rows
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            t = row["test"] or {}
            best = f"{row['best_metric']} = {fmt_num(row['best_value'])}" if row["best_metric"] else ""
            status = row["status"] + (" (resumable)" if row["resumable"] and row["status"] != "done" else "")
            vals = [row["started"], status, row["technique"], row["model"], best, fmt_num(t.get("accuracy")),
                    fmt_num(t.get("auc")), row.get("project", ""), Path(row.get("data") or "").name, row["id"]]
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                if c == 8:
                    it.setToolTip(row.get("data") or "")
                if c == 1:
                    it.setForeground(QColor(STATUS_COLORS.get(row["status"], "#333333")))
                it.setData(Qt.ItemDataRole.UserRole, row["dir"])
                self.table.setItem(r, c, it)
            if row["dir"] in selected:
                self.table.selectRow(r)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self._update_buttons()

    def selected_dirs(self) -> list[str]:
        sm = self.table.selectionModel()
        if sm is None:
            return []
        return [self.table.item(i.row(), 0).data(Qt.ItemDataRole.UserRole) for i in sm.selectedRows()]

    def select(self, *run_dirs: str) -> None:
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) in {str(d) for d in run_dirs}:
                self.table.selectRow(r)
        self.table.setSelectionMode(mode)
        self._update_buttons()

    def _row(self, run_dir: str) -> dict | None:
        return next((r for r in self.rows if r["dir"] == run_dir), None)

    def _update_buttons(self) -> None:
        sel = self.selected_dirs()
        one = self._row(sel[0]) if len(sel) == 1 else None
        idle = self.studio.plugins is not None and not self.studio.training_active
        self.buttons["open"].setEnabled(one is not None)
        self.buttons["compare"].setEnabled(len(sel) == 2)
        self.buttons["resume"].setEnabled(bool(one and one["resumable"] and one["status"] != "running" and idle))
        self.buttons["resume"].setToolTip(self._resume_tip(one))
        self.buttons["follow"].setEnabled(bool(one and one["status"] == "running" and not self.studio.training_active))
        self.buttons["folder"].setEnabled(one is not None)
        self.buttons["export"].setEnabled(bool(one and one["status"] == "done" and self.studio.plugins is not None))
        self.buttons["report"].setEnabled(bool(one and one["status"] != "running"))

    @staticmethod
    def _resume_tip(row: dict | None) -> str:
        """Why Resume is off for a run that stopped before the end of its first epoch (the
        checkpoint is written at each epoch's end)."""
        if row and not row["resumable"] and row["status"] in ("stopped", "failed", "interrupted"):
            return ("This run ended before its first epoch was complete, so there is no checkpoint to continue "
                    "from: start it again from the Train page.")
        return "Continue a stopped or interrupted run from its last epoch"

    # --- actions ---------------------------------------------------------------------------------
    def open_selected(self) -> None:
        sel = self.selected_dirs()
        if len(sel) != 1:
            return
        d = sel[0]
        row = self._row(d) or {}
        train = self.window_.page("train")
        if train.state == "idle":
            train.show_history(d)
        self.studio.set_current_run(d)
        self.window_.show_page("evaluate" if row.get("status") == "done" else "train")

    def resume(self) -> None:
        sel = self.selected_dirs()
        if len(sel) == 1 and self.window_.page("train").resume_run(sel[0]):
            self.window_.show_page("train")

    def follow(self) -> None:
        sel = self.selected_dirs()
        if len(sel) == 1 and self.window_.page("train").follow(sel[0]):
            self.window_.show_page("train")

    def folder(self) -> None:
        sel = self.selected_dirs()
        if len(sel) == 1:
            QDesktopServices.openUrl(QUrl.fromLocalFile(sel[0]))

    def export(self):
        """The Export dialog for the selected finished run (returned, for tests)."""
        from ..dialogs import ExportDialog

        sel = self.selected_dirs()
        if len(sel) != 1 or self.studio.plugins is None:
            return None
        self.export_dialog = ExportDialog(self.studio, sel[0], self)
        self.export_dialog.show()
        return self.export_dialog

    def report(self) -> None:
        """Write the selected run's report.html in a worker, say where it is and open it."""
        from ..runactions import write_report

        sel = self.selected_dirs()
        if len(sel) != 1:
            return
        self.report_path = None
        self.buttons["report"].setEnabled(False)
        self.note.setText(f"Writing the report of {Path(sel[0]).name} …")
        self.note.show()

        def done(path: str) -> None:
            self.report_path = path
            self._update_buttons()
            link = f"<a href='{QUrl.fromLocalFile(path).toString()}'>{path}</a>"
            self.note.setText(f"Report written: {link}")
            if self.open_reports and not self.open_url(QUrl.fromLocalFile(path)):
                self.note.setText(f"Report written, but no web browser could be opened here. The report is the file "
                                  f"{link}: open it in a browser (it needs no internet).")

        def failed(info) -> None:
            self._update_buttons()
            self.note.setText(f"The report could not be written: {info.message}")

        self.studio.tasks.submit(write_report, sel[0], name="report", on_done=done, on_error=failed)

    def open_url(self, url) -> bool:
        """Open a file in the desktop's program for it (False when none could be started)."""
        return QDesktopServices.openUrl(url)

    def compare(self) -> None:
        sel = self.selected_dirs()
        if len(sel) == 2:
            self.compare_runs(sel)

    def compare_runs(self, dirs: list[str]) -> None:
        """Overlay the curves of runs and tabulate their results: A is the earlier run."""
        self.studio.tasks.submit(compare_data, list(dirs), on_done=self._show_compare)

    def _show_compare(self, data: list[dict]) -> None:
        from ..charts import PALETTE, styled_plot

        import pyqtgraph as pg

        self.compared = data
        self.compare_title.setText("Comparing " + " and ".join(d["id"] for d in data))
        warning = comparison_warning(data)
        self.compare_warning.set_text(f"⚠ {warning}" if warning else "", warn=True)
        monitors = {d["monitor"] for d in data if d["monitor"]}
        metric = monitors.pop() if len(monitors) == 1 else "val_accuracy"
        if not metric.startswith("val_") or metric == "val_loss":  # "last", "auto": the accuracy
            metric = "val_accuracy"
        specs = [("val_loss", "Validation loss"), (metric, f"Validation {metric[4:]}"), ("train_loss", "Training loss")]
        for key, p in self.compare_plots.items():  # a chart of an earlier comparison's metric goes away
            p.setVisible(key in dict(specs))
        for key, title in specs:
            p = self.compare_plots.get(key)
            if p is None:
                p = styled_plot(title)
                p.setObjectName(f"compare_{key}")
                self.plot_host.insertWidget(len(self.compare_plots), p, 1)
                self.compare_plots[key] = p
            p.clear()
            p.getPlotItem().setTitle(f"<span style='font-size:10pt; font-weight:600'>{title}</span>")
            for i, d in enumerate(data):
                xs = [e["epoch"] for e in d["epochs"] if e.get(key) is not None]
                ys = [e[key] for e in d["epochs"] if e.get(key) is not None]
                color = PALETTE[i % len(PALETTE)]
                p.plot(xs, ys, pen=pg.mkPen(color, width=2), symbol="o", symbolSize=6, symbolBrush=color,
                       name=f"{'AB'[i] if i < 2 else i}: {d['meta'].get('technique', '')}")
        rows = [("run", "Run")] + COMPARE_ROWS + [(k, k.capitalize()) for k in (
            "project", "data", "technique", "model", "image size", "epochs", "learning rate", "batch size")]
        self.compare_table.setColumnCount(1 + len(data))
        self.compare_table.setHorizontalHeaderLabels(["", *["AB"[i] if i < 2 else str(i) for i in range(len(data))]])
        self.compare_table.setRowCount(len(rows))
        for r, (key, label) in enumerate(rows):
            self.compare_table.setItem(r, 0, QTableWidgetItem(label))
            for c, d in enumerate(data):
                if key == "run":
                    it = QTableWidgetItem(d["id"][:15])
                    it.setToolTip(d["dir"])
                    self.compare_table.setItem(r, c + 1, it)
                    continue
                v = d["final"].get(key, d["meta"].get(key))
                text = fmt_seconds(v) if key == "train_seconds" else Path(v).name if key == "data" and v else fmt_num(v)
                it = QTableWidgetItem(text)
                if key == "data":
                    it.setToolTip(str(v or ""))
                self.compare_table.setItem(r, c + 1, it)
        self.compare_table.resizeColumnsToContents()
        self.compare_box.show()
