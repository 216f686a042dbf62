"""The window, driven as a user drives it, on the bundled sample project: pick a technique,
type an invalid value (Train disabled, reason shown), fix it, train, watch the charts,
Stop, Resume to the end, open a confusion-matrix cell, predict two images."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from gui_support import close_window, epochs_of, open_window, sample_copy, type_into
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from conftest import SAMPLE_DIGITS

pytestmark = pytest.mark.slow


def test_train_stop_resume_evaluate_predict(qtbot, tmp_path):
    w = open_window(qtbot, sample_copy(tmp_path / "proj", epochs=2, size=32))
    s = w.studio
    assert "CPU" in w.device_label.text() or "GPU" in w.device_label.text()
    assert "Handwritten digits" in w.project_label.text()

    # --- Technique: pick one, type an invalid value, see why Train is off, fix it -----------------
    tech = w.show_page("technique")
    tech.select("frozen-features")
    assert s.project.technique.id == "frozen-features"
    tech.select("fine-tuning")
    assert s.project.technique.id == "fine-tuning"
    assert "pretrained network keeps learning" in tech.explanation.text()
    assert not tech.advanced.body.isVisibleTo(tech)  # the technique's own settings are folded under Advanced
    tech.advanced.set_expanded(True)
    groups = tech.form.editor("trainable_groups")
    assert groups.text() == "all"
    train = w.page("train")
    assert train.train_btn.isEnabled()
    type_into(qtbot, groups, "99")
    assert groups.text() == "99"  # kept as typed, not silently clamped
    assert tech.form.errors()["trainable_groups"] == "must be at most 64"
    assert not train.train_btn.isEnabled() and not w.act_train.isEnabled()
    assert "Layer groups to train: must be at most 64" in train.reason.text()
    assert train.reason.isVisibleTo(train)
    assert not train.start()  # F5 or a click cannot start it either
    type_into(qtbot, groups, "3")
    assert not tech.form.errors()
    assert s.project.technique.settings["trainable_groups"] == 3
    assert train.train_btn.isEnabled() and not train.reason.isVisibleTo(train)

    # --- Train, watch the charts, Stop after the first epoch -----------------------------------------
    w.show_page("train")
    qtbot.mouseClick(train.train_btn, Qt.MouseButton.LeftButton)
    assert train.state == "training" and not train.train_btn.isEnabled() and train.stop_btn.isEnabled()
    qtbot.waitUntil(lambda: 1 in epochs_of(train.events), timeout=240_000)
    qtbot.mouseClick(train.stop_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.state == "idle", timeout=120_000)
    assert train.last_status == "stopped"
    from tlstudio.core.runs import Run

    run = Run(train.run_dir)
    assert run.resumable() and run.last_checkpoint.exists()
    pts = train.charts.points()
    assert pts["loss/train (batch)"] >= 2 and pts["loss/validation"] == 1 and pts["metric/val_accuracy"] == 1
    assert any(k.startswith("lr/") for k in pts) and pts["lr/head"] >= 2
    assert train.charts.redraws >= 1  # drawn by the timer, not per event
    assert "can be resumed" in train.result.label.text()
    assert train.resume_btn.isEnabled()

    # --- Resume finishes it -------------------------------------------------------------------------
    qtbot.mouseClick(train.resume_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.state == "idle", timeout=240_000)
    assert train.last_status == "done", train.log.toPlainText()[-2000:]
    assert run.status() == "done" and epochs_of(train.events) == [2]
    assert train.charts.points()["loss/validation"] == 2  # the stopped epoch and the resumed one, one curve
    assert "Test accuracy" in train.result.label.text()
    cmd = train.copy_command()
    assert cmd == f"tlstudio train {run.dir / 'project.toml'}"
    assert QGuiApplication.clipboard().text() == cmd and (run.dir / "project.toml").exists()

    # --- Evaluate: the confusion matrix; a cell lists exactly its images, with Grad-CAM ---------------
    ev = w.show_page("evaluate")
    qtbot.waitUntil(lambda: ev.results is not None and ev.run_dir == str(run.dir), timeout=60_000)
    with open(run.dir / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = ev.results.class_names
    k = len(names)
    assert ev.matrix.rowCount() == k == ev.matrix.columnCount() == 10
    counts = [[sum(1 for r in rows if r["label"] == names[i] and r["predicted"] == names[j]) for j in range(k)]
              for i in range(k)]
    assert [[int(ev.matrix.item(i, j).text()) for j in range(k)] for i in range(k)] == counts
    i, j = max(((i, j) for i in range(k) for j in range(k)), key=lambda c: (c[0] != c[1], counts[c[0]][c[1]]))
    assert counts[i][j] > 0
    rect = ev.matrix.visualRect(ev.matrix.model().index(i, j))
    qtbot.mouseClick(ev.matrix.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    expected = [r["ref"] for r in rows if r["label"] == names[i] and r["predicted"] == names[j]]
    assert ev.cell_refs == expected
    assert ev.cell_list.count() == min(len(expected), 60)
    assert f"True {names[i]}, predicted {names[j]}: {len(expected)} image" in ev.cell_title.text()
    first = ev.cell_list.item(0)
    assert "p(" in first.toolTip()
    qtbot.waitUntil(lambda: expected[0] in ev.cams, timeout=120_000)
    cam = ev.cams[expected[0]]
    assert cam.overlay.dtype.name == "uint8" and cam.overlay.shape[2] == 3
    assert 0.0 <= cam.heat.min() and cam.heat.max() <= 1.0 and cam.target == names[j]
    ev.cell_list.setCurrentRow(0)
    assert "p(" in ev.view_text.text()

    # --- Predict two images ------------------------------------------------------------------------------
    pr = w.show_page("predict")
    assert pr.run_dir == str(run.dir)
    files = [str(sorted((SAMPLE_DIGITS / c).glob("*.png"))[0]) for c in ("1", "7")]
    pr.drop.dropped.emit(files)
    qtbot.waitUntil(lambda: len(pr.results) == 2, timeout=120_000)
    assert [Path(r["ref"]).name for r in pr.results] == [Path(f).name for f in files]
    for r in pr.results:
        assert r["predicted"] in names and abs(sum(r["probabilities"].values()) - 1) < 1e-4
    assert pr.table.rowCount() == 2 and pr.table.item(0, 1).text() in names
    pr.table.selectRow(0)
    qtbot.waitUntil(lambda: files[0] in pr.cams, timeout=60_000)
    out = pr.save_csv(str(tmp_path / "pred.csv"))
    assert out is not None and len(out.read_text().splitlines()) == 3
    close_window(qtbot, w)
