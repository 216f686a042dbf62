"""Runs page, a text-classification run: Export… offers ONNX (the formats its task takes) and
writes a package with the tokenizer, showing its parity figure on the run's own texts."""
from __future__ import annotations

from gui_support import close_window, open_window
from text_helpers import keyword_sentences, make_tiny_model, text_project, write_uci


def test_text_run_exports_onnx_with_its_tokenizer(qtbot, tmp_path):
    from tlstudio.core.engine import train
    from tlstudio.core.settings import load_settings

    data = write_uci(tmp_path / "sentences.txt", keyword_sentences(30))
    model = make_tiny_model(tmp_path / "tiny-bert", "bert", layers=1, hidden=32)
    res = train(text_project(data, model, epochs=1), runs_dir=load_settings().runs_path())
    assert res["status"] == "done", res
    run_dir = res["run_dir"]

    w = open_window(qtbot, None, wait_models=False)
    rp = w.show_page("runs")
    qtbot.waitUntil(lambda: any(r["dir"] == run_dir for r in rp.rows), timeout=30_000)
    rp.select(run_dir)
    dlg = rp.export()
    assert [dlg.format.itemData(i) for i in range(dlg.format.count())] == ["onnx"]
    out = tmp_path / "text-package"
    dlg.folder.setText(str(out))
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: dlg.summary is not None or dlg.error.isVisible(), timeout=120_000)
    assert dlg.summary is not None, dlg.error.message.text()
    assert (out / "model.onnx").is_file() and (out / "labels.json").is_file()
    assert (out / "tokenizer_config.json").is_file() or (out / "tokenizer.json").is_file()
    text = dlg.outcome.label.text()
    assert "Parity passed" in text and "texts" in text and str(out) in text
    dlg.close()
    close_window(qtbot, w)
