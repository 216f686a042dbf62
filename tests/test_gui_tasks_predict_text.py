"""The Predict page for a text run: type a sentence, read the class, every class's
probability and the words that drove it, coloured by weight, with the method named."""
from __future__ import annotations

import pytest
from gui_support import close_window, open_window
from text_helpers import keyword_sentences, make_tiny_model, text_project, write_uci


def test_text_run_predicts_a_typed_sentence_with_its_words(qtbot, tmp_path):
    from PySide6.QtCore import Qt

    from tlstudio.core.engine import train

    w = open_window(qtbot, None, wait_models=False)
    model = make_tiny_model(tmp_path / "tiny-bert", "bert")
    data = write_uci(tmp_path / "kw.txt", keyword_sentences(30))
    res = train(text_project(data, model, epochs=1), runs_dir=w.studio.runs_dir())
    assert res["status"] == "done", res
    w.studio.runsChanged.emit()
    page = w.show_page("predict")
    page.set_run(str(res["run_dir"]))
    panel = page.text_panel
    assert panel.isVisibleTo(page) and not page.image_panel.isVisibleTo(page)  # a text run: type, not drop

    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    assert panel.verdict.text() == "Type a text first."

    panel.input.setPlainText("The battery was excellent and I love the screen.")
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.last is not None, timeout=60_000)
    result = panel.last
    assert result["predicted"] in ("negative", "positive")
    assert result["predicted"] in panel.verdict.text() and "%" in panel.verdict.text()
    probs = panel.probabilities
    assert probs.rowCount() == 2 and probs.item(0, 0).text() == result["predicted"]  # most probable first
    assert sum(float(probs.item(i, 1).text().rstrip("%")) for i in range(2)) == pytest.approx(100.0, abs=0.2)
    assert "integrated gradients" in panel.method.text()  # the method the technique reported
    html = panel.words.toHtml()
    for word in ("battery", "excellent", "love", "screen"):
        assert word in html
    assert html.count("background-color") >= len(result["words"])  # every word coloured by its weight
    assert {w["word"] for w in result["words"]} >= {"battery", "excellent", "love"}

    # Evaluate: a confusion-matrix cell lists exactly its test texts (no pixels, no Grad-CAM)
    import csv

    ev = w.show_page("evaluate")
    ev.load_run(str(res["run_dir"]))
    qtbot.waitUntil(lambda: ev.results is not None, timeout=60_000)
    with open(f"{res['run_dir']}/test_predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    true, pred = rows[0]["label"], rows[0]["predicted"]
    i, j = ev.results.class_names.index(true), ev.results.class_names.index(pred)
    ev.open_cell(i, j)
    expected = [r["text"] for r in rows if r["label"] == true and r["predicted"] == pred]
    assert ev.cell_list.count() == len(expected) and "text" in ev.cell_title.text()
    assert ev.cell_list.item(0).text().split("\n")[0] in (t if len(t) <= 60 else t[:59] + "…" for t in expected)
    ev.cell_list.setCurrentRow(0)
    assert "predicted:" in ev.view_text.text() and "“" in ev.view_text.text()
    assert not ev.view_cam.isVisibleTo(ev) and not ev.error.isVisibleTo(ev)

    # a model that cannot be loaded is a message, not a crash
    page.set_run(str(tmp_path / "no-such-run"))
    panel.predict("Another text.")
    qtbot.waitUntil(lambda: panel.error.isVisibleTo(panel), timeout=60_000)
    close_window(qtbot, w)
