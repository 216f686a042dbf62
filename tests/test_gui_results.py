"""Evaluate (two classes: ROC, AUC, a threshold slider that moves sensitivity and
specificity) and Runs (history, compare two) on real runs of a two-class digit task."""
from __future__ import annotations

import os

import numpy as np
import pytest
from gui_support import close_window, open_window

from conftest import make_digit_folder, quick_project


@pytest.fixture(scope="module")
def binary_runs(tmp_path_factory):
    """Two finished two-class runs (frozen features: quick), in their own run store."""
    root = tmp_path_factory.mktemp("binary")
    old = os.environ.get("TLSTUDIO_HOME")
    os.environ["TLSTUDIO_HOME"] = str(root / "home")
    try:
        from tlstudio.core.engine import train
        from tlstudio.core.plugins import PluginManager

        data = make_digit_folder(root / "digits", classes=(3, 8), per_class=40)
        runs = []
        for lr in (3e-3, 3e-2):
            p = quick_project(data, "frozen-features", epochs=3, lr=lr, monitor="val_auc")
            p.model.image_size = 32
            p.data.split.test_fraction = 0.3
            final = train(p, runs_dir=root / "runs", plugins=PluginManager())
            assert final["status"] == "done", final
            runs.append(final)
    finally:
        if old is None:
            os.environ.pop("TLSTUDIO_HOME", None)
        else:
            os.environ["TLSTUDIO_HOME"] = old
    return root / "runs", runs


def test_roc_and_threshold_slider(qtbot, binary_runs, monkeypatch):
    runs_dir, runs = binary_runs
    monkeypatch.setenv("TLSTUDIO_RUNS_DIR", str(runs_dir))
    w = open_window(qtbot, None, wait_models=False)
    ev = w.show_page("evaluate")
    assert ev.run_combo.count() == 2
    ev.load_run(runs[0]["run_dir"])
    qtbot.waitUntil(lambda: ev.results is not None and ev.roc_box.isVisibleTo(ev), timeout=60_000)
    res = ev.results
    assert res.class_names == ["3", "8"]
    assert f"AUC {runs[0]['test_auc']:.3f}" in ev.summary.text()
    curve = ev.roc_plot.getPlotItem().listDataItems()
    assert any(len(c.getData()[0]) > 2 for c in curve)  # the ROC curve itself
    assert ev.per_class.rowCount() == 2

    from tlstudio.core.analysis.metrics import binary_operating_point

    probs, labels = res.probs[:, 1], res.labels
    seen = set()
    for t in (0.05, 0.5, 0.95):
        ev.set_threshold(t)
        op = binary_operating_point(probs, labels, t)
        assert ev.operating_point == op
        assert f"sensitivity <b>{op['sensitivity']:.3f}</b>" in ev.op_label.text()
        assert f"specificity <b>{op['specificity']:.3f}</b>" in ev.op_label.text()
        seen.add((op["sensitivity"], op["specificity"]))
        x, y = ev.op_marker.getData()
        assert np.isclose(x[0], 1 - op["specificity"]) and np.isclose(y[0], op["sensitivity"])
    assert len(seen) > 1  # the slider really moves the operating point
    close_window(qtbot, w)


def test_runs_history_and_compare(qtbot, binary_runs, monkeypatch):
    runs_dir, runs = binary_runs
    monkeypatch.setenv("TLSTUDIO_RUNS_DIR", str(runs_dir))
    w = open_window(qtbot, None, wait_models=False)
    rp = w.show_page("runs")
    qtbot.waitUntil(lambda: len(rp.rows) == 2, timeout=30_000)
    assert {r["status"] for r in rp.rows} == {"done"}
    assert {r["technique"] for r in rp.rows} == {"frozen-features"}
    assert all(rp.table.item(r, 4).text().startswith("val_auc = ") for r in range(2))
    rp.select(runs[0]["run_dir"], runs[1]["run_dir"])
    assert rp.buttons["compare"].isEnabled() and not rp.buttons["open"].isEnabled()
    rp.compare()
    qtbot.waitUntil(lambda: len(rp.compared) == 2, timeout=30_000)
    plot = rp.compare_plots["val_loss"].getPlotItem()
    curves = plot.listDataItems()
    assert len(curves) == 2 and all(len(c.getData()[0]) == 3 for c in curves)
    row = {rp.compare_table.item(r, 0).text(): r for r in range(rp.compare_table.rowCount())}
    assert [rp.compare_table.item(row["Run"], c).toolTip() for c in (1, 2)] == [runs[0]["run_dir"], runs[1]["run_dir"]]
    assert rp.compare_table.item(row["Test accuracy"], 1).text() == f"{runs[0]['test_accuracy']:.3f}"
    assert rp.compare_table.item(row["Test accuracy"], 2).text() == f"{runs[1]['test_accuracy']:.3f}"
    assert rp.compare_table.item(row["Learning rate"], 2).text() == "0.030"

    rp.select(runs[1]["run_dir"])
    rp.open_selected()
    ev = w.pages["evaluate"]
    assert w.tabs.currentIndex() == 4
    qtbot.waitUntil(lambda: ev.results is not None and ev.run_dir == runs[1]["run_dir"], timeout=30_000)
    assert w.pages["train"].charts.points()["loss/validation"] == 3  # the opened run's curves
    close_window(qtbot, w)
