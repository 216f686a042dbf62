"""A radiographer's first hour, in the real window (offscreen): open the medical sample, read the
data report, take the recommended model and technique, answer the mirror question, choose how
long to train, train, evaluate, train a second run on other data, predict a folder with the two
runs in turn, compare them (a warning: different data and classes), export, and write the
report.  Each step asserts what the user sees."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from gui_support import close_window, type_into
from PIL import Image
from PySide6.QtCore import QPoint, QRect, Qt

from conftest import REPO

pytestmark = pytest.mark.slow

NPZ = REPO / "resources" / "samples" / "breast-ultrasound" / "breastmnist.npz"


def _ultrasound_folder(folder: Path, n: int = 6) -> Path:
    """A folder of PNGs as a clinic would hand them over: test images of the sample."""
    folder.mkdir(parents=True)
    with np.load(NPZ) as z:
        for i in range(n):
            Image.fromarray(z["test_images"][i]).save(folder / f"scan-{i:02d}.png")
    return folder


def _click(qtbot, button) -> None:
    """A click on a radio button's circle (its text may be shorter than the row)."""
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(8, button.height() // 2))


def _train(qtbot, w, timeout=900_000):
    train = w.show_page("train")
    assert train.train_btn.isEnabled(), train.reason.text()
    qtbot.mouseClick(train.train_btn, Qt.MouseButton.LeftButton)
    assert train.state == "training"
    qtbot.waitUntil(lambda: train.state == "idle", timeout=timeout)
    assert train.last_status == "done", train.log.toPlainText()[-3000:]
    return train


def test_a_radiographers_first_hour(qtbot, tmp_path):
    from tlstudio.gui.mainwindow import MainWindow, default_size

    samples_before = {f: f.read_bytes() for f in (REPO / "resources").rglob("*") if f.is_file()}
    # --- first start: a window that fits a 1366 x 768 laptop -------------------------------------
    assert default_size(QRect(0, 0, 1366, 768)) == (1350, 720)
    w = MainWindow()
    w.confirm = False
    qtbot.addWidget(w)
    w.resize(1366, 720)
    w.show()
    w.start()
    guide = w.guide()  # Help > Guide: offline, in plain words
    text = guide.text.toPlainText()
    assert "Sensitivity" in text and "Specificity" in text and "AUC" in text and "needs exactly two classes" in text
    guide.close()

    # --- File > Open sample > Breast ultrasound: the data are read at once, with progress ----------
    samples = {a.text(): a for a in w.sample_menu.actions()}
    assert set(samples) == {"Breast ultrasound (BreastMNIST)", "Handwritten digits (MNIST)"}
    data = w.page("data")
    samples["Breast ultrasound (BreastMNIST)"].trigger()
    assert "Breast ultrasound (sample)" in w.windowTitle() and "(not saved)" in w.windowTitle()
    assert data.table is not None or (data.progress_row.isVisibleTo(data) and "Reading" in data.summary.text())
    qtbot.waitUntil(lambda: data.table is not None, timeout=60_000)
    summary = data.summary.text()
    assert "780 usable images in 2 classes" in summary and "Split: train 546, val 78, test 156" in summary
    assert "1 group of identical images" in summary and data.tabs.tabText(1) == "Skipped (0)"
    assert data.chart_heights() == {"malignant": 210, "normal or benign": 570}
    area = data.right_area  # the split and augmentation panel is not cut off on a 1366-pixel screen
    assert area.widget().minimumSizeHint().width() <= area.viewport().width() + 1
    qtbot.waitUntil(lambda: w.studio.plugins is not None and w.studio.model_status is not None, timeout=180_000)

    # --- Model: the recommended one first, in plain words; the catalog folded ----------------------
    model = w.show_page("model")
    qtbot.waitUntil(lambda: model._recommended is not None, timeout=120_000)
    rec = model.rec_text.text()
    assert "is a small, fast network" in rec and "ImageNet top-1" not in rec and "capacity" not in rec
    assert "ImageNet top-1" in model.rec_text.toolTip()
    assert not model.all_models.expanded() and not model.table.isVisibleTo(model)
    if model.use_rec.isVisibleTo(model):
        qtbot.mouseClick(model.use_rec, Qt.MouseButton.LeftButton)
    assert w.studio.project.model.architecture == model._recommended
    type_into(qtbot, model.size_form.editor("image_size"), "32")  # small images: a short first run
    assert w.studio.project.model.image_size == 32

    # --- Technique: the recommended one, only those for images, the simple questions -----------------
    tech = w.show_page("technique")
    assert w.studio.project.technique.id == "progressive-unfreezing"
    assert tech.list.item(0).text() == "Progressive unfreezing\n★ recommended for your data"
    assert "546 training images" in tech.advice_bar.label.text() and not tech.advice_bar.button.isVisibleTo(tech)
    assert not tech.fits("bert-text-classification") and not tech.fits("faster-rcnn") and tech.fits("frozen-features")
    texts = [tech.list.item(i).text() for i in range(tech.list.count())]
    assert "Text classification (BERT)\nfor texts:\nyour data are images in classes" in texts
    assert not {t.split("\n")[0] for t in texts} & set(w.studio.techniques())  # titles, not ids
    assert not tech.advanced.expanded() and not tech.panel_box.isVisibleTo(tech)
    assert tech.mirror.state.isVisibleTo(tech) and w.studio.project.augmentation.mirror_safe is None
    _click(qtbot, tech.mirror.yes)
    assert w.studio.project.augmentation.mirror_safe is True and not tech.mirror.state.isVisibleTo(tech)
    qtbot.waitUntil(lambda: bool(tech.plan and tech.plan.images_per_s), timeout=180_000)
    quick = tech.duration.radios["quick"]
    assert quick.text().startswith("Quick: 4 epochs, about ")
    assert tech.duration.radios["standard"].isChecked()
    _click(qtbot, quick)
    assert w.studio.project.training.epochs == 4
    tech.advanced.set_expanded(True)  # an engineer's change, under Advanced
    assert tech.training_form.editor("threads").text() == "all"
    assert not tech.training_form.shown("momentum")  # AdamW: no SGD momentum
    type_into(qtbot, tech.training_form.editor("epochs"), "2")
    assert w.studio.project.training.epochs == 2 and tech.duration.choice() is None
    assert "Now: 2 epochs (set under Advanced)" in tech.duration.custom.text()

    # --- Train: the planned epochs, the charts that matter, the command --------------------------------
    train = w.show_page("train")
    assert train.epoch_bar.maximum() == 2 and train.epoch_bar.value() == 0  # "epoch 0 of 2" before the start
    assert not train.charts.plots["lr"].isVisibleTo(train)  # learning rates are behind a toggle
    _train(qtbot, w)
    run_a = train.run_dir
    assert "Test accuracy" in train.result.label.text() and "AUC" in train.result.label.text()
    pts = train.charts.points()
    assert pts["loss/validation"] == 2 and pts["metric/val_accuracy"] == 2 and pts["lr/head"] >= 2
    assert train.eta.text() == "" and train.command.text().startswith("Repeat this run from a terminal:")
    train.details.setChecked(True)
    assert train.charts.plots["lr"].isVisibleTo(train)

    # --- Evaluate: per class, ROC for two classes, light panels until a cell is opened -----------------
    ev = w.show_page("evaluate")
    qtbot.waitUntil(lambda: ev.results is not None and ev.run_dir == run_a, timeout=120_000)
    assert [ev.per_class.item(r, 0).text() for r in range(ev.per_class.rowCount())] == ["malignant", "normal or benign"]
    assert ev.roc_box.isVisibleTo(ev)
    assert "Click a cell" in ev.view_image.text() and "#202020" not in ev.view_image.styleSheet()  # not black
    ev.open_cell(0, 0)
    assert ev.cell_refs and ev.cell_list.count() == min(len(ev.cell_refs), 60)

    # --- a second run, on other data: the digits sample, one epoch --------------------------------------
    w.open_sample("digits")
    qtbot.waitUntil(lambda: data.table is not None and data.table.report.total == 600, timeout=120_000)
    assert data.chart_heights() == {str(d): 60 for d in range(10)}  # no bar or class of the ultrasound left
    type_into(qtbot, w.show_page("model").size_form.editor("image_size"), "32")
    tech = w.show_page("technique")
    tech.advanced.set_expanded(True)
    type_into(qtbot, tech.training_form.editor("epochs"), "1")
    _train(qtbot, w)
    run_b = train.run_dir
    assert run_b != run_a

    # --- Predict a folder with run A, then with run B: one model's results at a time -------------------
    folder = _ultrasound_folder(tmp_path / "clinic")
    pr = w.show_page("predict")
    assert [pr.table.horizontalHeaderItem(c).text() for c in range(3)] == ["Image", "Predicted", "Confidence"]
    pr.set_run(run_a)
    pr.predict([str(folder)])
    qtbot.waitUntil(lambda: len(pr.results) == 6, timeout=120_000)
    heads = [pr.table.horizontalHeaderItem(c).text() for c in range(pr.table.columnCount())]
    assert "p(malignant)" in heads and pr.table.rowCount() == 6
    pr.table.selectRow(0)
    qtbot.waitUntil(lambda: len(pr.cams) == 1, timeout=120_000)
    pr.set_run(run_b)
    assert pr.results == [] and pr.table.rowCount() == 0 and not pr.cams
    assert pr.view_image.text().startswith("Select a predicted image") and "were cleared" in pr.status.text()
    pr.predict([str(folder)])
    qtbot.waitUntil(lambda: len(pr.results) == 6, timeout=120_000)
    heads = [pr.table.horizontalHeaderItem(c).text() for c in range(pr.table.columnCount())]
    assert "p(7)" in heads and "p(malignant)" not in heads
    out = pr.save_csv(str(tmp_path / "predictions.csv"))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["run"] for r in rows} == {Path(run_b).name}

    # --- Runs: the project and the data of each run; comparing different data is flagged ---------------
    rp = w.show_page("runs")
    qtbot.waitUntil(lambda: {run_a, run_b} <= {r["dir"] for r in rp.rows}, timeout=60_000)
    cols = [rp.table.horizontalHeaderItem(c).text() for c in range(rp.table.columnCount())]
    shown = {rp.table.item(r, cols.index("Project")).text(): rp.table.item(r, cols.index("Data")).text()
             for r in range(rp.table.rowCount())}
    assert shown == {"Breast ultrasound (sample)": "breastmnist.npz", "Handwritten digits (sample)": "digits"}
    rp.select(run_a, run_b)
    rp.compare()
    qtbot.waitUntil(lambda: len(rp.compared) == 2, timeout=60_000)
    warning = rp.compare_warning.label.text()
    assert rp.compare_warning.isVisibleTo(rp) and "different data (A: breastmnist.npz; B: digits)" in warning
    assert "different classes" in warning and "malignant" in warning

    # --- Export run A, and its report (no browser on this machine: the window says where it is) --------
    rp.select(run_a)
    dlg = rp.export()
    dlg.format.setCurrentIndex([dlg.format.itemData(i) for i in range(dlg.format.count())].index("onnx"))
    dlg.folder.setText(str(tmp_path / "package"))
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: dlg.summary is not None or dlg.error.isVisible(), timeout=300_000)
    assert dlg.summary is not None, dlg.error.message.text()
    assert "Parity passed" in dlg.outcome.label.text() and (tmp_path / "package" / "model_card.md").is_file()
    dlg.close()
    rp.open_url = lambda url: False  # as on a workstation without a web browser
    rp.report()
    qtbot.waitUntil(lambda: rp.report_path is not None, timeout=120_000)
    assert "no web browser could be opened" in rp.note.text() and rp.report_path in rp.note.text()
    close_window(qtbot, w)
    # trying the samples never changed them (no split written into them, nothing added)
    assert {f: f.read_bytes() for f in (REPO / "resources").rglob("*") if f.is_file()} == samples_before


def test_the_first_start_opens_on_the_medical_sample(qtbot):
    """`make run` = `python -m tlstudio.gui --sample breast-ultrasound`: the window opens on an
    unsaved copy of the medical sample, whose data paths point at the sample's files."""
    from tlstudio.gui.app import parse_args
    from tlstudio.gui.mainwindow import MainWindow

    make = (REPO / "Makefile").read_text()
    assert "-m tlstudio.qtcheck" in make and "-m tlstudio.gui --sample breast-ultrasound" in make
    args = parse_args(["--sample", "breast-ultrasound"])
    w = MainWindow()
    w.confirm = False
    qtbot.addWidget(w)
    w.start(args.project, args.sample)
    p = w.studio.project
    assert w.studio.path is None and p.name == "Breast ultrasound (sample)"
    assert Path(p.data.source) == NPZ and p.data.options["class_names"] == ["malignant", "normal or benign"]
    qtbot.waitUntil(lambda: w.studio.plugins is not None, timeout=180_000)
    close_window(qtbot, w)



def test_a_text_technique_takes_the_one_text_model_and_gives_the_image_model_back(qtbot, tmp_path):
    """Choosing the text technique with an image model named takes the one text model found (not
    a failure at Train that names it); going back to an image technique gives the image model back."""
    from gui_support import open_window, sample_copy

    w = open_window(qtbot, sample_copy(tmp_path / "proj"))
    s = w.studio
    if len(s.text_models or []) != 1:
        pytest.skip(f"{len(s.text_models or [])} text models on this machine (the rule is for exactly one)")
    s.set_technique("bert-text-classification", task="text-classification")
    assert s.project.model.architecture == s.text_models[0].name
    assert not [p for p in s.problems() if p.startswith("Model")]
    model = w.show_page("model")
    assert model.text_box.isVisibleTo(model) and not model.rec_box.isVisibleTo(model)
    assert model.text_list.currentItem().text().startswith(s.text_models[0].name)
    s.set_technique("fine-tuning", task="image-classification")
    assert s.project.model.architecture == "mobilenet_v2" and model.rec_box.isVisibleTo(model)
    close_window(qtbot, w)
