"""The window's view of a finished multi-label run: per label, its AUC and its sensitivity
and specificity at the threshold chosen on validation; Qt is imported here only."""
from __future__ import annotations

import json
from pathlib import Path


def MultiLabelResultView(run_dir: Path, parent=None):
    from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

    try:
        ev = json.loads((run_dir / "evaluation_test.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ev = {}

    def fmt(v) -> str:
        return "–" if v is None else f"{v:.3f}"

    view = QWidget(parent)
    lay = QVBoxLayout(view)
    per = ev.get("per_label", {})
    summary = QLabel(f"Test set: {ev.get('n')} images — mean AUC over the labels {fmt(ev.get('auc'))}. Each label's "
                     "threshold was chosen on the validation images." if ev else
                     "This run has no test results (no test split, or it did not finish).")
    summary.setWordWrap(True)
    summary.setObjectName("multilabel_summary")
    lay.addWidget(summary)
    table = QTableWidget(len(per), 6)
    table.setObjectName("per_label_table")
    table.setHorizontalHeaderLabels(["label", "AUC", "threshold", "sensitivity", "specificity", "positives"])
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    for i, (name, pl) in enumerate(per.items()):
        for j, v in enumerate([name, fmt(pl["auc"]), fmt(pl["threshold"]), fmt(pl["sensitivity"]),
                               fmt(pl["specificity"]), str(pl["positives"])]):
            table.setItem(i, j, QTableWidgetItem(v))
    lay.addWidget(table)
    view.table = table
    return view
