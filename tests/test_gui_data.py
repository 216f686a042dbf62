"""Data page: the validation report (class chart, skipped files with reasons, thumbnails per
class), the augmentation preview regenerated when a setting changes, the target domain."""
from __future__ import annotations

import numpy as np
from gui_support import close_window, open_window
from PySide6.QtWidgets import QComboBox

from conftest import make_digit_folder


def test_data_report_thumbnails_and_augmentation_preview(qtbot, tmp_path):
    data = make_digit_folder(tmp_path / "digits", classes=(0, 1, 7), per_class=12)
    src = sorted((data / "7").glob("*.png"))[0]
    (data / "7" / "truncated.png").write_bytes(src.read_bytes()[:60])
    (data / "1" / "notes.png").write_text("these are my notes, not an image")
    target = make_digit_folder(tmp_path / "target", classes=(3,), per_class=5)
    w = open_window(qtbot, None, wait_models=False)
    page = w.show_page("data")
    page.set_source(str(data))
    qtbot.waitUntil(lambda: page.table is not None, timeout=60_000)
    assert w.studio.project.data.source == str(data)
    assert page.chart_heights() == {"0": 12, "1": 12, "7": 12}
    assert "36 usable images in 3 classes" in page.summary.text()
    assert page.tabs.tabText(1) == "Skipped (2)"
    skipped = {page.skipped.item(r, 0).text().rsplit("/", 1)[-1]: page.skipped.item(r, 1).text()
               for r in range(page.skipped.rowCount())}
    assert set(skipped) == {"truncated.png", "notes.png"}
    assert "text" in skipped["notes.png"].lower()
    assert all(skipped.values())
    qtbot.waitUntil(lambda: set(page.thumbs) == {"0", "1", "7"}, timeout=60_000)
    assert page.thumbs["0"].count() == 8 and page.thumbs["7"].count() == 8  # the first eight of each class

    # the preview: the same images before and after, drawn again when a setting changes
    qtbot.waitUntil(lambda: page.preview_generation >= 1, timeout=60_000)
    gen = page.preview_generation
    before = [row[0].copy() for row in page.preview_rows]
    preset = page.aug_form.editor("preset")
    assert isinstance(preset, QComboBox) and preset.findText("standard") >= 0
    preset.setCurrentText("standard")
    assert w.studio.project.augmentation.preset == "standard"
    rot = page.aug_form.editor("rotation")
    rot.setValue(90.0)
    assert w.studio.project.augmentation.rotation == 90.0
    qtbot.waitUntil(lambda: page.preview_generation > gen, timeout=60_000)
    rows = page.preview_rows
    assert all(np.array_equal(r[0], b) for r, b in zip(rows, before))  # "before" stays the same images
    assert any(not np.array_equal(r[0], r[1]) for r in rows)  # "after" is augmented
    rot.setValue(500.0)  # beyond 180: marked, not applied, and Train says why
    assert page.aug_form.errors()["rotation"] == "must be at most 180"
    assert w.studio.project.augmentation.rotation == 90.0
    assert any("Augmentation: Rotation (degrees): must be at most 180" in p for p in w.studio.problems())
    rot.setValue(15.0)
    assert not any(p.startswith("Augmentation") for p in w.studio.problems())

    # the target domain (domain adaptation)
    page.target.setText(str(target))
    page._target_typed()
    assert w.studio.project.data.target_source == str(target)
    qtbot.waitUntil(lambda: "5 usable images" in page.target_info.text(), timeout=60_000)
    close_window(qtbot, w)


def test_unreadable_data_is_a_message_not_a_crash(qtbot, tmp_path):
    bad = tmp_path / "table.csv"
    bad.write_text("filename,diagnosis\nmissing.png,benign\n")
    w = open_window(qtbot, None, wait_models=False)
    page = w.show_page("data")
    page.set_source(str(bad))
    qtbot.waitUntil(lambda: page.table is not None or page.error.isVisibleTo(page), timeout=60_000)
    assert page.table is not None and page.skipped.rowCount() == 1
    assert "file not found" in page.skipped.item(0, 1).text()
    page.set_source(str(tmp_path / "nothing-here"))
    qtbot.waitUntil(lambda: page.error.isVisibleTo(page), timeout=60_000)
    assert "no such file or folder" in page.error.message.text()
    assert not page.error.details.isVisibleTo(page)
    close_window(qtbot, w)
