"""The window's decision tools on a real two-class run: choosing the positive class and moving
the threshold slider change the confusion matrix cells, the per-class table and the banner;
"Use this operating point" stores it in the run; the Calibration tab shows the figures; the
Predict page shows the prediction set; the Data page counts patients."""
from __future__ import annotations

import json
import os

import pytest
from gui_support import close_window, open_window

from conftest import make_digit_folder, quick_project


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui-decision")
    old = os.environ.get("TLSTUDIO_HOME")
    os.environ["TLSTUDIO_HOME"] = str(root / "home")
    try:
        from tlstudio.core.engine import train
        from tlstudio.core.plugins import PluginManager

        data = make_digit_folder(root / "digits", classes=(3, 8), per_class=40)
        p = quick_project(data, "frozen-features", epochs=3, lr=3e-3, monitor="val_auc")
        p.model.image_size = 32
        p.data.split.val_fraction = 0.25
        p.data.split.test_fraction = 0.3
        final = train(p, runs_dir=root / "runs", plugins=PluginManager())
        assert final["status"] == "done", final
    finally:
        if old is None:
            os.environ.pop("TLSTUDIO_HOME", None)
        else:
            os.environ["TLSTUDIO_HOME"] = old
    return root / "runs", final


def cells(ev) -> list[list[int]]:
    m = ev.matrix
    return [[int(m.item(i, j).text()) for j in range(m.columnCount())] for i in range(m.rowCount())]


def test_positive_class_and_slider_change_the_matrix(qtbot, run_store, monkeypatch):
    runs_dir, final = run_store
    monkeypatch.setenv("TLSTUDIO_RUNS_DIR", str(runs_dir))
    w = open_window(qtbot, None, wait_models=False)
    ev = w.show_page("evaluate")
    ev.load_run(final["run_dir"])
    qtbot.waitUntil(lambda: ev.results is not None and ev.roc_box.isVisibleTo(ev), timeout=60_000)
    res = ev.results
    panel = ev.decision_panel
    assert [panel.positive.itemText(i) for i in range(2)] == ["3", "8"] and panel.positive.currentText() == "8"
    assert cells(ev) == res.confusion_matrix().tolist()  # the stored operating point
    seen = set()
    for t in (0.02, 0.3, 0.98):
        ev.set_threshold(t)
        m = cells(ev)
        calls = res.calls_at(t, 1)
        assert m == res.confusion_at(calls).tolist()
        assert sum(map(sum, m)) == len(res.labels)
        assert ev.per_class.item(1, 1).text() == f"{res.per_class_at(calls)['8']['sensitivity']:.3f}"
        assert f"threshold {t:.3f}" in ev.summary.text()
        seen.add(str(m))
    assert len(seen) >= 2  # the slider re-calls the images
    ev.set_threshold(0.98)
    low_8 = cells(ev)[1][1]  # few 8s called at 0.98
    panel.positive.setCurrentIndex(0)  # the user chooses "3" as the finding
    panel.positive.activated.emit(0)
    assert "positive class 3" in ev.roc_plot.getPlotItem().titleLabel.text
    flipped = cells(ev)
    assert flipped == res.confusion_at(res.calls_at(0.98, 0)).tolist() and flipped[1][1] != low_8
    assert "sensitivity (3)" in ev.summary.text()

    # store it: the run's decision.json changes, Evaluate reloads at the stored point
    ev.set_threshold(0.4)
    panel.use_btn.click()
    dec_path = os.path.join(final["run_dir"], "decision.json")
    qtbot.waitUntil(lambda: json.loads(open(dec_path).read()).get("threshold") == pytest.approx(0.4), timeout=60_000)
    qtbot.waitUntil(lambda: ev.results is not None and ev.results.threshold == pytest.approx(0.4), timeout=60_000)
    dec = json.loads(open(dec_path).read())
    assert dec["class_names"][dec["positive"]] == "3" and "Evaluate page" in dec["chosen_on"]
    assert "Stored: positive '3', threshold 0.400" in panel.stored.text()
    assert cells(ev) == ev.results.confusion_at(ev.results.calls_at(0.4, 0)).tolist()

    ev.tabs.setCurrentWidget(ev.calibration)
    assert "Calibration on test (ECE / MCE / Brier)" in ev.calibration.figures.text()
    assert "Prediction sets on test" in ev.calibration.figures.text()
    assert len(ev.calibration.plot.getPlotItem().listDataItems()) >= 2  # the diagonal and a curve
    close_window(qtbot, w)


def test_predict_page_shows_the_prediction_set(qtbot, run_store, monkeypatch):
    from tlstudio.core.analysis.results import EvaluationResults

    runs_dir, final = run_store
    monkeypatch.setenv("TLSTUDIO_RUNS_DIR", str(runs_dir))
    w = open_window(qtbot, None, wait_models=False)
    pp = w.show_page("predict")
    pp.set_run(final["run_dir"])
    refs = EvaluationResults.load(final["run_dir"]).refs[:4]
    pp.predict(refs)
    qtbot.waitUntil(lambda: len(pp.results) == 4, timeout=120_000)
    heads = [pp.table.horizontalHeaderItem(c).text() for c in range(pp.table.columnCount())]
    assert "Prediction set" in heads
    col = heads.index("Prediction set")
    assert all(pp.table.item(r, col).text() for r in range(4))
    pp.table.selectRow(0)
    assert "Prediction set (90%)" in pp.detail.text()
    close_window(qtbot, w)


def test_data_page_counts_patients_and_lists_a_planted_leak_side_by_side(qtbot, tmp_path):
    import csv
    import shutil

    from test_grouped_split import patient_csv

    src = patient_csv(tmp_path / "data", patients=18)
    data = src.parent
    with open(src, newline="") as f:  # a test image copied into train: the leak to find
        rows = list(csv.reader(f))
    from tlstudio.core.data import make_split, read_data

    table = read_data(src)
    split = make_split(table, "stratified", 0.15, 0.15, 0)  # by patient; written as the CSV's own split
    leaked = next(it for it, s in zip(table.items, split) if s == "test")
    shutil.copy(leaked.ref, data / "copy.png")
    rows = [rows[0] + ["split"]] + [r + [s] for r, s in zip(rows[1:], split)]
    rows.append(["copy.png", leaked.label, "P900", "north", "train"])
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    w = open_window(qtbot, None, wait_models=False)
    page = w.show_page("data")
    page.set_source(str(src))
    qtbot.waitUntil(lambda: page.table is not None, timeout=60_000)
    panel = page.groups_panel
    assert "19 patients/groups" in panel.groups.text() and "no patient lies in two splits" in panel.groups.text()
    panel.check_btn.click()
    qtbot.waitUntil(lambda: panel.report is not None, timeout=180_000)
    pairs = {(panel.pairs.item(r, 0).toolTip(), panel.pairs.item(r, 1).toolTip()) for r in range(panel.pairs.rowCount())}
    assert any(b.endswith("copy.png") for _a, b in pairs)
    row = next(r for r in range(panel.pairs.rowCount()) if panel.pairs.item(r, 1).toolTip().endswith("copy.png"))
    assert not panel.pairs.item(row, 0).icon().isNull() and not panel.pairs.item(row, 1).icon().isNull()
    assert "twin in another split" in panel.leak_text.text()
    close_window(qtbot, w)
