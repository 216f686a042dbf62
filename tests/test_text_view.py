"""The text technique's result view (offscreen, pytest-qt): per-class metrics and the test
texts of each class; trying a sentence points to the Predict page (tested in
test_gui_tasks_predict_text.py), which runs it off the window's thread."""
from __future__ import annotations

import csv
import json

import pytest
from text_helpers import keyword_sentences, make_tiny_model, text_project, write_uci

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tlstudio.core.engine import train

    root = tmp_path_factory.mktemp("view")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLSTUDIO_HOME", str(root / "home"))
        import tlstudio.core.plugins as plugins_mod

        mp.setattr(plugins_mod, "_default", None)
        model = make_tiny_model(root / "tiny-bert", "bert")
        data = write_uci(root / "kw.txt", keyword_sentences(30))
        res = train(text_project(data, model, epochs=1), runs_dir=root / "runs")
    assert res["status"] == "done", res
    return res["run_dir"]


def _view(qtbot, run_dir):
    from tlstudio.core.plugins import get_plugin_manager

    task = get_plugin_manager().task("text-classification")
    view = task.result_view(run_dir)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    return view


def test_per_class_metrics_and_texts_by_class(qtbot, finished_run):
    from PySide6.QtWidgets import QComboBox, QLabel, QTableWidget

    view = _view(qtbot, finished_run)
    assert "Predict page" in view.findChild(QLabel, "try_pointer").text()
    evaluation = json.loads(open(f"{finished_run}/evaluation_test.json").read())
    per = view.findChild(QTableWidget, "per_class_table")
    assert per.rowCount() == 2
    assert {per.item(i, 0).text(): int(per.item(i, 5).text()) for i in range(2)} == \
        {c: v["support"] for c, v in evaluation["per_class"].items()}
    assert "accuracy" in view.findChild(QLabel, "metrics_summary").text()

    with open(f"{finished_run}/test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = view.findChild(QTableWidget, "texts_table")
    assert texts.rowCount() == len(rows)
    assert {texts.item(i, 0).text() for i in range(texts.rowCount())} == {r["text"] for r in rows}
    view.findChild(QComboBox, "class_filter").setCurrentText("positive")
    assert texts.rowCount() == sum(r["label"] == "positive" for r in rows)
    assert {texts.item(i, 1).text() for i in range(texts.rowCount())} <= {"positive"}
    view.findChild(QComboBox, "class_filter").setCurrentText("all classes")
    view.findChild(QComboBox, "outcome_filter").setCurrentText("misclassified")
    assert texts.rowCount() == sum(r["correct"] == "0" for r in rows)
