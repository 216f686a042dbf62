"""The Data page's "Patients and leaks" tab: the patients (groups) of the data, whether the
project's stored split still matches the data and keeps every patient in one split, and the
leakage check (the same or a near-identical image in two splits), pairs side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from tlstudio.core.tasks.traits import table_task

from .widgets import heading, hint, pixmap_from_array, thumbnail

THUMB = 72
MAX_PAIRS_SHOWN = 200


def project_split(table, project) -> tuple[list[str] | None, str, object]:
    """(assignments, where they come from, the stored split's check or None) for the project's data."""
    from tlstudio.core.data import make_split
    from tlstudio.core.data.split import check_split

    sp = project.data.split
    chk = None
    if sp.file:
        path = project.resolve(sp.file)
        if path.exists():
            chk = check_split(path, table)
            if chk.matches:
                return chk.assignments, f"the stored split {path.name}", chk
    try:
        return make_split(table, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed), "the split training would make", chk
    except Exception:  # noqa: BLE001 - the engine says why when it trains
        return None, "", chk


def leak_check(table, assignments, plugins=None):
    """The leakage check (in a worker): the report and a few thumbnails per pair."""
    from tlstudio.core.analysis.leakage import check_table_leaks
    from tlstudio.core.models import ModelLibrary

    lib = ModelLibrary(sources=(plugins.model_sources() if plugins else None) or None)
    rep = check_table_leaks(table, assignments, library=lib)
    index = {it.ref: i for i, it in enumerate(table.items)}
    thumbs = {}
    for lk in rep.leaks[:MAX_PAIRS_SHOWN]:
        for ref in (lk.a_ref, lk.b_ref):
            if ref not in thumbs:
                try:
                    thumbs[ref] = thumbnail(table.load_image(index[ref]), THUMB * 2)
                except Exception:  # noqa: BLE001 - a file gone since: the pair is listed without it
                    thumbs[ref] = None
    return rep, thumbs


class GroupsLeakPanel(QWidget):
    def __init__(self, studio, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.table = None
        self.report = None
        self.assignments = None
        v = QVBoxLayout(self)
        v.addWidget(heading("Patients (groups)"))
        self.groups = QLabel("Read the data to see its patients.")
        self.groups.setObjectName("groupsSummary")
        self.groups.setWordWrap(True)
        v.addWidget(self.groups)
        srow = QHBoxLayout()
        self.split_state = QLabel("")
        self.split_state.setObjectName("storedSplitState")
        self.split_state.setWordWrap(True)
        srow.addWidget(self.split_state, 1)
        self.new_split = QPushButton("Make a new split…")
        self.new_split.setObjectName("makeNewSplit")
        self.new_split.clicked.connect(self.make_new_split)
        self.new_split.hide()
        srow.addWidget(self.new_split)
        v.addLayout(srow)
        v.addWidget(hint("Images of one patient (both sides, follow-up studies, several slices) belong in one split: "
                         "a CSV column patient / patient_id / subject / group, or the DICOM PatientID, keeps them "
                         "together."))
        lrow = QHBoxLayout()
        lrow.addWidget(heading("Leakage: the same image in two splits"))
        self.check_btn = QPushButton("Check for leaks")
        self.check_btn.setObjectName("checkLeaks")
        self.check_btn.clicked.connect(self.check)
        lrow.addWidget(self.check_btn)
        lrow.addStretch(1)
        v.addLayout(lrow)
        self.leak_text = QLabel("")
        self.leak_text.setObjectName("leakSummary")
        self.leak_text.setWordWrap(True)
        v.addWidget(self.leak_text)
        self.pairs = QTableWidget(0, 5)
        self.pairs.setObjectName("leakPairs")
        self.pairs.setHorizontalHeaderLabels(["Validation / test image", "Its twin", "Splits", "Hash bits apart",
                                              "Feature similarity"])
        self.pairs.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.pairs.setIconSize(QSize(THUMB, THUMB))
        self.pairs.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.pairs.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        v.addWidget(self.pairs, 1)

    # --- data ---------------------------------------------------------------------------------------
    def clear(self) -> None:
        self.table = self.report = self.assignments = None
        self.groups.setText("Read the data to see its patients.")
        self.split_state.setText("")
        self.new_split.hide()
        self.leak_text.setText("")
        self.pairs.setRowCount(0)

    def show_table(self, table) -> None:
        from tlstudio.core.data.split import group_summary

        self.clear()
        self.table = table
        if not hasattr(table, "labels") or not table.class_names:
            self.groups.setText("Patients are counted for classification data.")
            self.check_btn.setEnabled(False)
            return
        self.check_btn.setEnabled(self.studio.traits(table_task(table)).can("leakage-check"))
        self.assignments, where, chk = project_split(table, self.studio.project)
        gs = group_summary(table, self.assignments)
        if gs:
            pg = gs["per_group"]
            text = (f"<b>{gs['groups']:,} patients/groups</b>, {pg['min']}–{pg['max']} images each (median "
                    f"{pg['median']:g})" + (f"; {gs['items_without_group']:,} images name none" if gs["items_without_group"]
                                            else "") + ". ")
            if not gs["split_by_group"]:
                text += "Fewer than 3 patients are named (anonymised data?): images are split one by one."
            elif self.assignments is not None:
                leak = gs["leaking"]
                text += (f"<span style='color:#b03a2e'>In {where}, {len(leak):,} patient(s) lie in more than one split "
                         f"(e.g. {leak[0]}): their images inflate the test figures.</span>" if leak
                         else f"In {where}, no patient lies in two splits.")
            self.groups.setText(text)
        else:
            self.groups.setText("The data names no patients (no patient / subject / group column, no DICOM PatientID): "
                                "images are split one by one.")
        if chk is not None and not chk.matches:
            self.split_state.setText(f"<span style='color:#b03a2e'>{chk.message()}</span>")
            self.new_split.show()
        elif chk is not None:
            self.split_state.setText(f"The stored split {chk.path.name} matches the data.")

    def make_new_split(self) -> None:
        """The data changed since the stored split was made: ask, then move the old one aside."""
        from tlstudio.core.data.split import archive_split

        p = self.studio.project
        path = p.resolve(p.data.split.file)
        ans = QMessageBox.question(self, "Make a new split?",
                                   f"The data changed since {path.name} was made. A new split moves images between "
                                   "training, validation and test, so results are no longer comparable with earlier "
                                   f"runs. The old split is kept as {path.name}.old-N.\n\nMake a new split?")
        if ans != QMessageBox.StandardButton.Yes:
            return
        archive_split(path)
        if self.table is not None:
            self.show_table(self.table)

    # --- leakage ------------------------------------------------------------------------------------
    def check(self) -> None:
        if self.table is None or self.assignments is None:
            self.leak_text.setText("Read the data first (the check needs its split).")
            return
        self.check_btn.setEnabled(False)
        self.leak_text.setText("Looking for the same image in two splits…")
        table = self.table
        self.studio.tasks.submit(leak_check, table, list(self.assignments), self.studio.plugins,
                                 on_done=lambda out, t=table: self._checked(t, out),
                                 on_error=lambda info: (self.check_btn.setEnabled(True),
                                                        self.leak_text.setText(f"The check failed: {info.message}")))

    def _checked(self, table, out) -> None:
        self.check_btn.setEnabled(True)
        if table is not self.table:
            return
        rep, thumbs = out
        self.report = rep
        self.leak_text.setText(rep.summary() + (f" ({rep.note})" if rep.note else ""))
        shown = rep.leaks[:MAX_PAIRS_SHOWN]
        self.pairs.setRowCount(len(shown))
        for r, lk in enumerate(shown):
            for c, ref in enumerate((lk.a_ref, lk.b_ref)):
                it = QTableWidgetItem(Path(ref).name)
                it.setToolTip(ref)
                arr = thumbs.get(ref)
                if arr is not None:
                    it.setIcon(pixmap_from_array(np.asarray(arr), THUMB, smooth=False))
                self.pairs.setItem(r, c, it)
            for c, text in ((2, f"{lk.a_split} / {lk.b_split}"), (3, str(lk.hamming)),
                            (4, "–" if lk.cosine is None else f"{lk.cosine:.3f}")):
                it = QTableWidgetItem(text)
                it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.pairs.setItem(r, c, it)
