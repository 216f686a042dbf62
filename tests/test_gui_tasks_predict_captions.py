"""The Predict page for a captioning run: dropped images get their caption, and the selected
image is shown with it (no Grad-CAM for captions)."""
from __future__ import annotations

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
