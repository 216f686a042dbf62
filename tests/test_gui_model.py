"""Model page (catalog, speed measured once and remembered, Import weights…, the
recommendation) and the learning-rate finder, on the sample project."""
from __future__ import annotations

from pathlib import Path

import pytest

from gui_support import close_window, open_window, sample_copy
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox


def _row(page, name):
    from PySide6.QtCore import Qt

    for r in range(page.table.rowCount()):
        if page.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
            return r
    raise KeyError(name)


def test_catalog_speed_import_and_recommendation(qtbot, tmp_path):
    from tlstudio.core.settings import load_settings

    w = open_window(qtbot, sample_copy(tmp_path / "proj", size=32))
    page = w.show_page("model")
    assert not page.table.isVisibleTo(page)  # the catalog is folded under "All models"
    page.all_models.set_expanded(True)
    r = _row(page, "mobilenet_v2")
    assert page.table.item(r, 1).text() == "✓ ready"
    assert page.table.item(_row(page, "resnet50"), 1).text() == "not ready"
    assert page.table.item(0, 1).text() == "✓ ready"  # ready models first
    page._select("resnet50")
    assert "Not ready" in page.sel_info.text() and "Import weights" in page.sel_info.text()

    # speed: measured once on this machine, shown, remembered
    page._select("mobilenet_v2")
    page.table.selectRow(r)
    assert page.measure_btn.isEnabled()
    page.measure_selected()
    qtbot.waitUntil(lambda: bool(page.speeds.get("mobilenet_v2")), timeout=180_000)
    speed = page.speeds["mobilenet_v2"]
    assert speed > 0 and page.table.item(_row(page, "mobilenet_v2"), 6).text() == f"{speed:.0f}"
    assert any(k.startswith("mobilenet_v2@32px") for k in load_settings().model_speed)

    # the recommendation, for the data the Data page read
    qtbot.waitUntil(lambda: w.studio.data_table is not None, timeout=120_000)
    task = page.recommend()
    # the result reaches the page through a queued signal just after the task is done
    qtbot.waitUntil(lambda: task.done and "Ranking" not in page.rec_text.text(), timeout=180_000)
    text = page.rec_text.text()
    assert "MobileNetV2" in text and f"about {speed:.0f} images a second" in text  # plain words
    assert "ImageNet top-1" not in text and "capacity" not in text
    assert "ImageNet top-1" in page.rec_text.toolTip()  # the figures behind the words
    first = page._recommended
    assert page.use_rec.isVisibleTo(page) == (first != w.studio.project.model.architecture)

    # import weights: the real MobileNetV2 file, as a user who downloaded it elsewhere would
    src = Path(w.studio.model_status["mobilenet_v2"].path)
    copy = tmp_path / "mobilenet_v2-b0353104.pth"
    copy.write_bytes(src.read_bytes())
    task = page.import_weights(str(copy))
    qtbot.waitUntil(lambda: task.done, timeout=120_000)
    assert task.error is None, task.error
    qtbot.waitUntil(lambda: w.studio.model_status["mobilenet_v2"].path.startswith(str(w.studio.library().models_folder())),
                    timeout=60_000)
    # a file that is not weights: a readable message, nothing imported
    bad = tmp_path / "weights.pth"
    bad.write_text("not a checkpoint")
    task = page.import_weights(str(bad))

    def boxes():
        return [b for b in QApplication.topLevelWidgets() if isinstance(b, QMessageBox) and b.isVisible()]

    qtbot.waitUntil(lambda: task.done and bool(boxes()), timeout=60_000)  # the dialog follows the task's end
    box = boxes()[0]
    assert "weights.pth" in box.text() and "Traceback" not in box.text()
    box.close()
    close_window(qtbot, w)


def test_learning_rate_finder_applies_its_suggestion(qtbot, tmp_path):
    w = open_window(qtbot, sample_copy(tmp_path / "proj", size=32), wait_models=False)
    tech = w.show_page("technique")
    assert tech.lr_btn.isEnabled()
    dlg = tech.find_lr(steps=40)
    qtbot.waitUntil(lambda: dlg.found is not None or dlg.error.isVisibleTo(dlg), timeout=240_000)
    assert dlg.found is not None, dlg.error.message.text()
    s = dlg.found["suggested"]
    assert len(dlg.found["lrs"]) >= 5 and s > 0
    assert dlg.apply_btn.isEnabled() and f"{s:.3g}" in dlg.text.text()
    dlg.apply_btn.click()
    assert abs(w.studio.project.training.lr - s) < 1e-12
    assert tech.training_form.values()["lr"] == pytest.approx(s, rel=1e-3)  # the spin box shows 4 digits
    close_window(qtbot, w)


def test_new_project_proposes_the_best_measured_recipe(qtbot, tmp_path):
    """File > New: the technique is progressive unfreezing with the training it recommends
    (the best recipe measured on BreastMNIST, docs/results.md), shown on the technique page."""
    from tlstudio_plugins.finetune import RECOMMENDED_TRAINING

    w = open_window(qtbot, sample_copy(tmp_path / "proj", size=32), wait_models=False)
    w.new_project()
    p = w.studio.project
    assert p.technique.id == "progressive-unfreezing"
    assert {k: getattr(p.training, k) for k in RECOMMENDED_TRAINING} == RECOMMENDED_TRAINING
    # the measured recipe's test-time flip waits for the answer: do mirror images show the same thing?
    assert p.augmentation.mirror_safe is None and not p.augmentation.flips_at_test
    tech = w.show_page("technique")
    assert tech.list.currentItem().data(Qt.ItemDataRole.UserRole) == "progressive-unfreezing"
    assert tech.training_form.values()["class_balance"] == "weighted_loss"
    close_window(qtbot, w)
