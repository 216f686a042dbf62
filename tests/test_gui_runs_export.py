"""Runs page: export a finished run as an ONNX package (parity figure shown) and write its
HTML report, both in workers, from the window."""
from __future__ import annotations

from pathlib import Path

from gui_support import close_window, open_window, sample_copy


def _trained_run(tmp_path) -> tuple[Path, str]:
    from tlstudio.core.config import load_project
    from tlstudio.core.engine import train
    from tlstudio.core.settings import load_settings

    project = sample_copy(tmp_path / "proj", epochs=1, size=32, technique="frozen-features")
    res = train(load_project(project), runs_dir=load_settings().runs_path())
    assert res["status"] == "done", res
    return project, res["run_dir"]


def test_export_onnx_and_report_from_the_runs_page(qtbot, tmp_path):
    project, run_dir = _trained_run(tmp_path)
    w = open_window(qtbot, project, wait_models=False)
    rp = w.show_page("runs")
    rp.open_reports = False
    qtbot.waitUntil(lambda: any(r["dir"] == run_dir for r in rp.rows), timeout=30_000)
    rp.select(run_dir)
    assert rp.buttons["export"].isEnabled() and rp.buttons["report"].isEnabled()

    dlg = rp.export()
    formats = [dlg.format.itemData(i) for i in range(dlg.format.count())]
    assert {"onnx", "torchscript"} <= set(formats)
    dlg.format.setCurrentIndex(formats.index("onnx"))
    out = tmp_path / "package"
    dlg.folder.setText(str(out))
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: dlg.summary is not None or dlg.error.isVisible(), timeout=120_000)
    assert dlg.summary is not None, dlg.error.message.text()
    assert (out / "model.onnx").is_file() and (out / "model_card.md").is_file()
    text = dlg.outcome.label.text()
    assert "Parity passed" in text and "allowed 1e-04" in text and str(out) in text
    assert dlg.summary["max_abs_diff"] <= 1e-4

    # an export into a folder that holds something else is refused in plain words, nothing lost
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    dlg.folder.setText(str(busy))
    dlg.export_btn.click()
    qtbot.waitUntil(lambda: dlg.error.isVisible(), timeout=120_000)
    assert "not empty" in dlg.error.message.text()
    assert (busy / "notes.txt").read_text() == "mine" and not (busy / "model.onnx").exists()
    dlg.close()

    rp.buttons["report"].click()
    qtbot.waitUntil(lambda: rp.report_path is not None, timeout=120_000)
    assert Path(rp.report_path) == Path(run_dir) / "report.html" and Path(rp.report_path).stat().st_size > 1000
    assert "Report written" in rp.note.text() and rp.report_path in rp.note.text()
    close_window(qtbot, w)
