"""Entry point of the frozen (PyInstaller) studio: one executable for the window and the
command line.

    tlstudio                 the window (tlstudio.gui.app:main)
    tlstudio COMMAND ...     the command line (train, doctor, export, predict, ...)
    tlstudio --run-module M  run a module as `python -m M` (the doctor's Qt check uses it)

``multiprocessing.freeze_support()`` comes first: with the spawn start method (Windows,
macOS) DataLoader workers re-run this executable, and freeze_support turns those runs into
workers instead of new studios.
"""
from __future__ import annotations

import multiprocessing
import os
import runpy
import sys


def _gui_main():
    try:
        from tlstudio.gui.app import main  # the window (built on its own branch)
    except ImportError as e:
        print(f"The window is not part of this build ({e}). Use the command line: tlstudio --help",
              file=sys.stderr)
        return 2
    return main()


def main() -> int:
    multiprocessing.freeze_support()
    argv = sys.argv[1:]
    if argv[:1] == ["--run-module"] and len(argv) >= 2:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    os.environ.setdefault("TLSTUDIO_FROZEN", "1")
    if not argv or argv[0].endswith((".toml",)):
        return _gui_main() or 0
    from tlstudio.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
