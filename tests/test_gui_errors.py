"""Failures are read, not suffered: a failed run shows a plain message with the traceback
only behind Details; CUDA out-of-memory comes with advice; the window keeps working."""
from __future__ import annotations

import torch
from gui_support import close_window, open_window, sample_copy
from PySide6.QtCore import Qt

from conftest import make_digit_folder
from tlstudio.api import Technique, hookimpl


class OutOfMemory(Technique):
    """A real technique whose training step runs out of (graphics) memory."""

    id = "oom-test"
    title = "Runs out of memory"
    explanation = "Raises CUDA's out-of-memory error in its first training step."

    def build(self, ctx):
        return ctx.build_classifier()

    def training_step(self, ctx, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)")


class OomPlugin:
    @hookimpl
    def tlstudio_techniques(self):
        return [OutOfMemory()]


def _train(qtbot, w):
    train = w.show_page("train")
    assert train.train_btn.isEnabled(), train.reason.text()
    qtbot.mouseClick(train.train_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.state == "idle", timeout=180_000)
    return train


def test_failed_run_reads_as_a_message_with_details(qtbot, tmp_path):
    one_class = make_digit_folder(tmp_path / "one", classes=(4,), per_class=6)
    w = open_window(qtbot, sample_copy(tmp_path / "proj"), wait_models=False)
    w.page("data").set_source(str(one_class))
    train = _train(qtbot, w)
    assert train.last_status == "failed"
    err = train.error
    assert err.isVisibleTo(train)
    assert "only one class" in err.message.text() and "Traceback" not in err.message.text()
    assert not err.details.isVisibleTo(train)  # the traceback waits behind Details
    qtbot.mouseClick(err.toggle, Qt.MouseButton.LeftButton)
    assert err.details.isVisibleTo(train) and "Traceback" in err.details.toPlainText()
    assert w.isVisible()  # the window lives on
    # once the Data page has read the data, Train says why it cannot run them, before any run fails
    data = w.page("data")
    qtbot.waitUntil(lambda: data.table is not None, timeout=60_000)
    assert not train.train_btn.isEnabled() and "only one class ('4')" in train.reason.text()
    data.set_source(str(make_digit_folder(tmp_path / "two", classes=(4, 7), per_class=6)))
    qtbot.waitUntil(lambda: data.table is not None, timeout=60_000)
    assert train.train_btn.isEnabled()  # fixing the data makes Train possible again
    close_window(qtbot, w)


def test_out_of_memory_gets_advice(qtbot, tmp_path):
    w = open_window(qtbot, sample_copy(tmp_path / "proj", epochs=1, size=32), wait_models=False)
    w.studio.plugins.register(OomPlugin(), "oom-test-plugin")
    w.studio.pluginsChanged.emit()
    w.show_page("technique").select("oom-test")
    train = _train(qtbot, w)
    assert train.last_status == "failed"
    # the engine halves the images at a time down to one, then gives up and says so
    assert "out of gpu memory even with 1 image" in train.error.message.text().lower()
    advice = train.error.advice.text()
    assert "smaller batch size" in advice and "smaller image size" in advice
    assert train.error.advice.isVisibleTo(train)
    assert "images at a time: continuing with" in train.log.toPlainText()  # it tried smaller pieces first
    close_window(qtbot, w)
