"""The Data page by task: a text table is counted per class with a few texts of each class
shown, its text and label columns are chosen from the file's header (a new choice reads
again); detection data shows its report and images with their boxes; captioning data its
captions; an unreadable file is a message."""
from __future__ import annotations

import csv

from gui_support import close_window, open_window


def _write_notes(path):
    rows = [("report", "finding", "site")]
    for i in range(6):
        rows.append((f"Smooth margins, no calcification seen in image {i}.", "benign", "left" if i % 2 else "right"))
        rows.append((f"Spiculated mass with irregular border number {i}.", "malignant", "right"))
    rows.append(("", "benign", "left"))  # an empty text
    rows.append(("Smooth margins, no calcification seen in image 0.", "benign", "right"))  # a duplicate of row 2
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def _texts_shown(page) -> dict[str, list[str]]:
    from PySide6.QtWidgets import QLabel

    out: dict[str, list[str]] = {}
    for lab in page.thumb_host.findChildren(QLabel):
        if lab.objectName().startswith("text_"):
            out.setdefault(lab.objectName()[5:], []).append(lab.text())
    return out


def test_text_table_counts_previews_and_column_choice(qtbot, tmp_path):
    notes = _write_notes(tmp_path / "notes.csv")
    w = open_window(qtbot, None, wait_models=False)
    w.studio.set_technique("bert-text-classification", task="text-classification")
    page = w.show_page("data")
    assert page.columns_row.isVisibleTo(page) and page.tabs.tabText(2) == "Texts per class"
    # texts are not augmented, and a target domain of images means nothing to them
    assert not page.aug_box.isVisibleTo(page) and not page.target.isVisibleTo(page)
    assert not page.tabs.isTabVisible(page.tabs.indexOf(page.shift_tab))
    page.set_source(str(notes))
    # no column is called label/class/...: the read says so, and the header fills the choices
    qtbot.waitUntil(lambda: page.error.isVisibleTo(page) and page.label_column.count() > 1, timeout=60_000)
    assert "label_column" in page.error.message.text()
    assert [page.label_column.itemText(i) for i in range(page.label_column.count())][1:] == ["report", "finding", "site"]

    page.label_column.setCurrentIndex(page.label_column.findData("finding"))
    page.label_column.activated.emit(page.label_column.currentIndex())
    assert w.studio.project.data.options == {"label_column": "finding"}
    qtbot.waitUntil(lambda: page.table is not None, timeout=60_000)
    assert page.chart_heights() == {"benign": 6, "malignant": 6}
    text = page.summary.text()
    assert "12 usable texts in 2 classes" in text and "benign 6" in text and "malignant 6" in text
    assert "2 rows skipped" in text and "empty text 1" in text and "duplicate 1" in text
    reasons = {page.skipped.item(r, 0).text(): page.skipped.item(r, 1).text() for r in range(page.skipped.rowCount())}
    assert reasons["notes.csv:14"] == "empty text" and reasons["notes.csv:15"] == "duplicate of notes.csv:2"
    shown = _texts_shown(page)
    assert set(shown) == {"benign", "malignant"} and len(shown["benign"]) == 5
    assert all("Smooth margins" in t for t in shown["benign"]) and all("Spiculated" in t for t in shown["malignant"])

    # another label column: read again, other classes
    table = page.table
    page.label_column.setCurrentIndex(page.label_column.findData("site"))
    page.label_column.activated.emit(page.label_column.currentIndex())
    qtbot.waitUntil(lambda: page.table is not None and page.table is not table, timeout=60_000)
    assert page.chart_heights() == {"left": 3, "right": 9}
    assert set(_texts_shown(page)) == {"left", "right"}
    assert '"label_column": "site"' in page.options.text()

    # an unreadable file is a message, not a crash
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01\x02binary")
    page.set_source(str(bad))
    qtbot.waitUntil(lambda: page.error.isVisibleTo(page), timeout=60_000)
    assert "not a text file" in page.error.message.text()
    close_window(qtbot, w)


def test_detection_and_captioning_data_show_boxes_and_captions(qtbot, tmp_path):
    from tlstudio.core.data.digit_scenes import write_digit_scenes

    scenes = tmp_path / "scenes"
    write_digit_scenes(scenes, n=12, per_image=(2, 2))
    boxes = scenes / "boxes.csv"
    with open(boxes, "a", encoding="utf-8") as f:  # a box outside its image and a zero-area one
        first = next(csv.reader(open(boxes, encoding="utf-8").read().splitlines()[1:2]))[0]
        f.write(f"{first},500,500,600,600,3\n{first},5,5,5,20,3\n")
    w = open_window(qtbot, None, wait_models=False)
    w.studio.set_technique("faster-rcnn", task="detection")
    page = w.show_page("data")
    page.set_source(str(boxes))
    qtbot.waitUntil(lambda: page.table is not None and bool(page.annotated), timeout=60_000)
    text = page.summary.text()
    assert "usable images with" in text and "boxes" in text and "Boxes per class" in text
    reasons = [page.skipped.item(r, 1).text() for r in range(page.skipped.rowCount())]
    assert any("outside the image" in r for r in reasons) and any("zero-area" in r for r in reasons)
    drawn = [row for row in page.annotated if row["boxes"]]
    assert drawn and all(row["image"] is not None for row in drawn)
    assert sum(page.chart_heights().values()) == page.table.report.annotations

    w.studio.set_technique("captioning", task="captioning")  # the page reads again with the caption readers
    page.set_source(str(scenes / "captions.csv"))
    qtbot.waitUntil(lambda: page.table is not None and bool(page.annotated) and bool(page.annotated[0]["captions"]), timeout=60_000)
    assert "captions" in page.summary.text() and page.tabs.tabText(2) == "Images with captions"
    assert any(" left of " in c or " right of " in c for c in page.annotated[0]["captions"])
    close_window(qtbot, w)


def test_a_folder_of_sentence_files_offers_a_test_file(qtbot, tmp_path):
    from text_helpers import keyword_sentences, write_uci

    rows = keyword_sentences(12)
    write_uci(tmp_path / "uci" / "amazon_labelled.txt", rows[:14])
    write_uci(tmp_path / "uci" / "yelp_labelled.txt", rows[14:])
    w = open_window(qtbot, None, wait_models=False)
    w.studio.set_technique("bert-text-classification", task="text-classification")
    page = w.show_page("data")
    page.set_source(str(tmp_path / "uci"))
    qtbot.waitUntil(lambda: page.table is not None and page.test_files.count() == 3, timeout=60_000)
    assert page.test_files.isVisibleTo(page) and not page.text_column.isVisibleTo(page)  # files, not columns
    assert "24 usable texts" in page.summary.text()
    table = page.table
    page.test_files.setCurrentIndex(page.test_files.findData("yelp_labelled"))
    page.test_files.activated.emit(page.test_files.currentIndex())
    assert w.studio.project.data.options["test_files"] == "yelp_labelled"
    qtbot.waitUntil(lambda: page.table is not None and page.table is not table, timeout=60_000)
    assert {it.split for it in page.table.items if it.meta["file"] == "yelp_labelled"} == {"test"}
    assert "test 10" in page.summary.text()  # the yelp file is the test set
    close_window(qtbot, w)


def test_the_window_knows_each_task_before_the_plugins_load(qtbot):
    """From the manifests alone (no plugin imported yet): the Data page shows each task's own
    words and tools, and the Technique page lists the techniques, greyed out until they load."""
    from PySide6.QtCore import Qt

    from tlstudio.gui.mainwindow import MainWindow

    w = MainWindow()
    w.confirm = False
    qtbot.addWidget(w)
    assert w.studio.plugins is None
    data, tech = w.page("data"), w.page("technique")
    seen = {}
    for task in ("image-classification", "text-classification", "detection", "captioning"):
        w.studio.project.task = task
        data._show_task()
        seen[task] = (data.src_box.title(), not data.columns_row.isHidden(), data.src_form.isRowVisible(data.target_row),
                      data.tabs.isTabVisible(data.tabs.indexOf(data.shift_tab)), not data.aug_box.isHidden())
    assert seen == {"image-classification": ("Images", False, True, True, True),
                    "text-classification": ("Texts", True, False, False, False),
                    "detection": ("Annotated images", False, False, False, True),
                    "captioning": ("Captioned images", False, False, False, True)}
    w.studio.project.task = "image-classification"
    tech.fill()
    items = {tech.list.item(i).data(Qt.ItemDataRole.UserRole): tech.list.item(i) for i in range(tech.list.count())}
    assert {"fine-tuning", "faster-rcnn", "bert-text-classification"} <= set(items)
    assert "for images with boxes (loading…)" in items["faster-rcnn"].text()
    assert not items["fine-tuning"].flags() & Qt.ItemFlag.ItemIsEnabled
    assert w.studio.plugins is None
    w.close()
