"""The window follows a run that another process writes: `tlstudio train` in a terminal."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from gui_support import close_window, open_window, sample_copy

pytestmark = pytest.mark.slow


def test_follow_a_cli_run(qtbot, tmp_path, studio_home):
    # fine-tuning at 64 px: long enough (tens of seconds) for the Runs page to see it running
    project = sample_copy(tmp_path / "proj", epochs=3, size=64, technique="fine-tuning")
    w = open_window(qtbot, project, wait_models=False)
    runs_dir = w.studio.runs_dir()
    env = dict(os.environ, TLSTUDIO_HOME=str(studio_home), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "cli.log", "w")  # a file, not a pipe: a full pipe would stall the CLI
    proc = subprocess.Popen([sys.executable, "-m", "tlstudio.cli", "train", str(project), "--runs-dir", str(runs_dir)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        rp = w.show_page("runs")
        # the Runs page lists the CLI's run as running (it refreshes itself every few seconds)
        qtbot.waitUntil(lambda: any(r["status"] == "running" for r in rp.rows), timeout=180_000)
        row = next(r for r in rp.rows if r["status"] == "running")
        rp.select(row["dir"])
        assert rp.buttons["follow"].isEnabled()
        rp.follow()
        train = w.page("train")
        assert train.state == "following" and w.tabs.currentWidget() is w._holders["train"]
        assert train.stop_btn.isEnabled()  # it can ask the other process to stop
        qtbot.waitUntil(lambda: train.charts.points().get("loss/train (batch)", 0) >= 1, timeout=180_000)
        qtbot.waitUntil(lambda: train.state == "idle", timeout=240_000)
        assert train.last_status == "done", (tmp_path / "cli.log").read_text()[-3000:]
        pts = train.charts.points()
        assert pts["loss/validation"] == 3 and pts["metric/val_accuracy"] == 3
        assert "Test accuracy" in train.result.label.text()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    close_window(qtbot, w)
    assert "Test results" in (tmp_path / "cli.log").read_text()
