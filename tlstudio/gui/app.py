"""Start the studio: ``python -m tlstudio.gui [project.toml] [--safe-mode]`` (or ``tlstudio-gui``).

The window appears before the heavy work starts: torch, the plugins and the model catalog
load in a background thread once it is visible.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Sequence

T0 = time.perf_counter()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tlstudio-gui", description="Transfer Learning Studio: the window.")
    p.add_argument("project", nargs="?", help="a project.toml to open")
    p.add_argument("--sample", help="open a sample project as an unsaved copy: breast-ultrasound or digits")
    p.add_argument("--safe-mode", action="store_true", help="start with every third-party plugin switched off")
    return p.parse_args(argv)


def make_app(argv: Sequence[str] | None = None):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    from .qtguard import install

    install()  # PySide6 6.12.0 on Python 3.11 leaks references to None: see qtguard
    app.setApplicationName("Transfer Learning Studio")
    app.setOrganizationName("tlstudio")
    if app.style().objectName().lower() not in ("fusion",):
        app.setStyle("Fusion")
    return app


def install_excepthook(window) -> None:
    """An exception that escapes a slot becomes a readable dialog, never a crash."""
    from .tasks import ErrorInfo
    from .widgets import error_dialog

    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(details)
        try:
            error_dialog(window, "Unexpected error", ErrorInfo.from_exception(exc, details))
        except Exception:  # noqa: BLE001
            pass

    sys.excepthook = hook


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    app = make_app()
    from PySide6.QtCore import QTimer

    from .mainwindow import MainWindow

    window = MainWindow(safe_mode=args.safe_mode)
    install_excepthook(window)
    probe = os.environ.get("TLSTUDIO_STARTUP_PROBE")
    if probe:
        def shown():
            print(f"TLSTUDIO_VISIBLE {time.perf_counter() - T0:.3f}", flush=True)
            if probe == "quit":
                QTimer.singleShot(0, app.quit)

        window.firstShown.connect(shown)
    window.show()
    QTimer.singleShot(0, lambda: window.start(args.project, args.sample))
    return app.exec()
