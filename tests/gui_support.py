"""Helpers of the window tests (pytest-qt, offscreen): the sample project copied into the
test's folder, a window opened on it with its plugins loaded, and polite waiting."""
from __future__ import annotations

import time
from pathlib import Path

from conftest import SAMPLE_PROJECT


def sample_copy(folder: Path, epochs: int = 2, size: int = 32, technique: str | None = None, **training) -> Path:
    """The bundled sample project (600 real digits, MobileNetV2 ImageNet weights), saved in
    ``folder`` with absolute data paths, CPU, small images and few epochs."""
    from tlstudio.core.config import load_project

    p = load_project(SAMPLE_PROJECT)
    if technique and technique != p.technique.id:
        p.technique.id, p.technique.settings = technique, {}
    p.data.source = str(p.resolve(p.data.source))
    p.data.split.file = ""  # the split is stored beside the copy, not in the repository
    p.model.image_size = size
    p.training.epochs = epochs
    p.training.device = "cpu"
    p.training.threads = 2
    for k, v in training.items():
        setattr(p.training, k, v)
    folder.mkdir(parents=True, exist_ok=True)
    return p.save(folder / "project.toml")


def open_window(qtbot, project: Path | str | None = None, safe_mode: bool = False, wait_models: bool = True,
                timeout: int = 120_000):
    """A main window (shown, offscreen) with the project open and the plugins loaded."""
    from tlstudio.gui.mainwindow import MainWindow

    w = MainWindow(safe_mode=safe_mode)
    w.confirm = False
    qtbot.addWidget(w)
    w.show()
    w.start(str(project) if project else None)
    qtbot.waitUntil(lambda: w.studio.plugins is not None and (w.studio.model_status is not None or not wait_models),
                    timeout=timeout)
    return w


def close_window(qtbot, w, timeout: int = 60_000) -> None:
    """Let background work finish, stop any run, then close."""
    train = w.pages.get("train")
    if train is not None:
        train.wait(timeout)
        qtbot.waitUntil(lambda: train.state != "training", timeout=timeout)
    qtbot.waitUntil(lambda: not w.studio.tasks.busy(), timeout=timeout)
    w.close()


def wait_for(qtbot, cond, timeout: float = 120.0, what: str = "") -> None:
    qtbot.waitUntil(cond, timeout=int(timeout * 1000))


def type_into(qtbot, widget, text: str) -> None:
    """Select what a field holds and type ``text`` as a user would."""
    widget.setFocus()
    edit = widget.lineEdit() if hasattr(widget, "lineEdit") and widget.lineEdit() is not None else widget
    edit.selectAll()
    qtbot.keyClicks(edit, text)


def epochs_of(events: list[dict]) -> list[int]:
    return [int(e["epoch"]) for e in events if e.get("kind") == "epoch"]


def elapsed(t0: float) -> str:
    return f"{time.time() - t0:.1f}s"
