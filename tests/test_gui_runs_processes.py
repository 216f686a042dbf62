"""Train page, Processes = 2: the sample (frozen features, 32 px, 1 epoch) trains in two CPU
processes (tlstudio train --nproc 2, gloo) started from the window, which follows the run on the
same charts to "done"; one run on the Runs page.  Stop of such a job from the window is a clean,
resumable stop, and Resume continues it in two processes."""
from __future__ import annotations

import pytest
import torch
from gui_support import close_window, open_window, sample_copy

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="torch.distributed with gloo is not available")]


def _train_in_two_processes(qtbot, tmp_path, epochs: int, technique: str):
    """The sample project in a window, Processes set to 2, Train clicked: (window, train page)."""
    project = sample_copy(tmp_path / "proj", epochs=epochs, size=32, technique=technique)
    w = open_window(qtbot, project, wait_models=False)
    train = w.show_page("train")
    qtbot.waitUntil(lambda: train.train_btn.isEnabled(), timeout=60_000)
    train.procs.setValue(2)
    train.train_btn.click()
    return w, train


def test_two_process_run_from_the_train_page(qtbot, tmp_path):
    w, train = _train_in_two_processes(qtbot, tmp_path, epochs=1, technique="frozen-features")
    assert train.state == "following" and train.job is not None
    assert not train.pause_btn.isEnabled() and train.stop_btn.isEnabled() and not train.procs.isEnabled()
    run_dir = train.run_dir
    qtbot.waitUntil(lambda: train.state == "idle", timeout=240_000)
    assert train.last_status == "done", train.log.toPlainText()[-3000:]
    pts = train.charts.points()
    assert pts.get("loss/train (batch)", 0) >= 1 and pts.get("loss/validation") == 1
    assert "Test accuracy" in train.result.label.text()
    starts = [e for e in train.events if e.get("kind") == "start"]
    assert len(starts) == 1 and starts[0].get("processes") == 2
    assert train.command_line().endswith(" --nproc 2")  # Copy as command repeats it in two processes

    rp = w.show_page("runs")
    qtbot.waitUntil(lambda: len(rp.rows) >= 1 and rp.rows[0]["status"] == "done", timeout=30_000)
    assert [r["dir"] for r in rp.rows] == [run_dir]
    close_window(qtbot, w)


def test_more_processes_than_gpus_is_refused_in_plain_words(qtbot, tmp_path):
    project = sample_copy(tmp_path / "proj", epochs=1, size=32, device="cuda")
    w = open_window(qtbot, project, wait_models=False)
    train = w.show_page("train")
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    qtbot.waitUntil(lambda: train.train_btn.isEnabled() or train.reason.isVisible(), timeout=60_000)
    train.procs.setValue(2)
    assert not train.start_processes(w.studio.run_project(), 2)
    assert train.state == "idle" and train.error.isVisible()
    assert "GPU" in train.error.message.text()
    close_window(qtbot, w)


def test_stop_a_two_process_run_from_the_window_then_resume_it(qtbot, tmp_path):
    """Stop asks the torchrun job to stop cleanly (resumable); Resume continues it in two
    processes to the end, one coherent run."""
    w, train = _train_in_two_processes(qtbot, tmp_path, epochs=2, technique="fine-tuning")
    run_dir = train.run_dir
    # after the first epoch (its checkpoint is what a resume starts from)
    qtbot.waitUntil(lambda: train.charts.points().get("loss/validation", 0) >= 1, timeout=240_000)
    train.stop_btn.click()
    qtbot.waitUntil(lambda: train.state == "idle", timeout=240_000)
    assert train.last_status == "stopped", train.log.toPlainText()[-3000:]
    assert train.resume_btn.isEnabled() and train.resumable_run() == run_dir

    train.resume_btn.click()
    qtbot.waitUntil(lambda: train.state == "idle", timeout=300_000)
    assert train.last_status == "done", train.log.toPlainText()[-3000:]
    from tlstudio.core.runs import Run

    assert [e["epoch"] for e in Run(run_dir).epochs()] == [1, 2]  # each epoch once
    close_window(qtbot, w)
