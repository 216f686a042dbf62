"""The Predict page for captioning and detection runs: dropped images get their caption or
their boxes, and the selected image is shown with it (no Grad-CAM for them)."""
from __future__ import annotations

import numpy as np
from gui_support import close_window, open_window


def test_captioning_run_predicts_captions_on_the_predict_page(qtbot, tmp_path):
    from tlstudio.core.config import Project
    from tlstudio.core.data.digit_scenes import write_digit_scenes
    from tlstudio.core.engine import train

    pairs = write_digit_scenes(tmp_path / "pairs", n=24, canvas_size=48, digits=(1, 7), per_image=(2, 2), seed=2)
    p = Project(name="captions", task="captioning")
    p.data.source = str(pairs / "captions.csv")
    p.model.architecture = "mobilenet_v2"
    p.model.image_size = 32
    p.technique.id = "captioning"
    p.technique.settings = {"embed_size": 32, "hidden_size": 64, "decoding": "greedy"}
    p.training.epochs = 1
    p.training.batch_size = 16
    p.training.device = "cpu"
    p.training.threads = 1
    w = open_window(qtbot, None, wait_models=False)
    res = train(p, runs_dir=w.studio.runs_dir())
    assert res["status"] == "done", res
    w.studio.runsChanged.emit()
    page = w.show_page("predict")
    page.set_run(str(res["run_dir"]))
    assert page.image_panel.isVisibleTo(page) and not page.text_panel.isVisibleTo(page)
    assert "caption" in page.right_title.text() and not page.view_cam.isVisibleTo(page)
    images = sorted((pairs / "images").glob("*.png"))[:2]
    page.predict([str(i) for i in images])
    qtbot.waitUntil(lambda: len(page.results) == 2, timeout=60_000)
    caption = page.results[0]["predicted"]
    assert isinstance(caption, str) and page.table.item(0, 1).text() == caption
    page.table.selectRow(0)
    qtbot.waitUntil(lambda: page.view_image._arr is not None, timeout=30_000)
    assert caption in page.detail.text()
    assert not page.error.isVisibleTo(page)  # no Grad-CAM attempted on a caption
    close_window(qtbot, w)


def test_detection_run_draws_its_boxes_on_the_predict_page(qtbot, tmp_path):
    from tlstudio.core.config import Project
    from tlstudio.core.data.digit_scenes import write_digit_scenes
    from tlstudio.core.engine import train

    scenes = write_digit_scenes(tmp_path / "scenes", n=24, canvas_size=48, digits=(1, 7), per_image=(1, 2), seed=1)
    p = Project(name="boxes", task="detection")
    p.data.source = str(scenes / "boxes.csv")
    p.model.architecture = "mobilenet_v2"
    p.model.image_size = 48
    p.technique.id = "faster-rcnn"
    # a low score threshold: a one-epoch detector's boxes are shown, however unsure
    p.technique.settings = {"trainable_backbone_groups": 0, "fpn_channels": 32, "box_head_size": 64,
                            "rois_per_image": 32, "score_threshold": 0.0}
    p.augmentation.preset = "none"
    p.training.epochs = 1
    p.training.batch_size = 8
    p.training.device = "cpu"
    p.training.threads = 1
    w = open_window(qtbot, None, wait_models=False)
    res = train(p, runs_dir=w.studio.runs_dir())
    assert res["status"] == "done", res
    w.studio.runsChanged.emit()
    page = w.show_page("predict")
    page.set_run(str(res["run_dir"]))
    assert "detected boxes" in page.right_title.text()
    image = sorted((scenes / "images").glob("*.png"))[0]
    page.predict([str(image)])
    qtbot.waitUntil(lambda: len(page.results) == 1, timeout=60_000)
    dets = page.results[0]["detections"]
    page.table.selectRow(0)
    qtbot.waitUntil(lambda: page.view_image._arr is not None, timeout=30_000)
    from PIL import Image

    plain = np.asarray(Image.open(image).convert("RGB"))
    shown = page.view_image._arr
    assert shown.shape == plain.shape
    assert dets  # at threshold 0 every kept box is shown
    # the boxes are drawn in colour on the grey digits, and listed with their scores
    assert np.ptp(plain.astype(int), axis=2).max() == 0 and np.ptp(shown.astype(int), axis=2).max() > 0
    assert f"{float(dets[0]['score']):.2f}" in page.detail.text()
    assert not page.error.isVisibleTo(page)
    close_window(qtbot, w)


def test_detection_trains_from_the_train_button(qtbot, tmp_path):
    """A detection project opened in the window: a click on Train runs Faster R-CNN through
    the window's own run thread, the charts get the losses, and the result names the mAP."""
    from PySide6.QtCore import Qt

    from gui_support import epochs_of
    from tlstudio.core.config import Project
    from tlstudio.core.data.digit_scenes import write_digit_scenes
    from tlstudio.core.runs import Run

    scenes = write_digit_scenes(tmp_path / "scenes", n=24, canvas_size=48, digits=(1, 7), per_image=(1, 2), seed=3)
    p = Project(name="boxes", task="detection")
    p.data.source = str(scenes / "boxes.csv")
    p.model.image_size = 48
    p.technique.id = "faster-rcnn"
    p.technique.settings = {"trainable_backbone_groups": 0, "fpn_channels": 32, "box_head_size": 64,
                            "rois_per_image": 32}
    p.augmentation.preset = "none"
    p.training.epochs = 2
    p.training.batch_size = 8
    p.training.device = "cpu"
    p.training.threads = 1
    project_file = p.save(tmp_path / "proj" / "project.toml")
    w = open_window(qtbot, project_file, wait_models=False)
    train = w.show_page("train")
    assert train.train_btn.isEnabled(), train.reason.text()
    qtbot.mouseClick(train.train_btn, Qt.MouseButton.LeftButton)
    assert train.state == "training"
    qtbot.waitUntil(lambda: train.state == "idle", timeout=300_000)
    assert train.last_status == "done", train.log.toPlainText()[-2000:]
    assert epochs_of(train.events) == [1, 2]
    pts = train.charts.points()
    assert pts["loss/train (batch)"] >= 2 and pts.get("metric/val_map_50") == 2, pts
    run = Run(train.run_dir)
    assert run.status() == "done" and run.project().task == "detection"
    test = run.final().get("test") or {}
    assert 0.0 <= test["map_50"] <= 1.0
    assert f"Test mAP@0.5 {test['map_50']:.3f}" in train.result.label.text(), train.result.label.text()
    close_window(qtbot, w)
