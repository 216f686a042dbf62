"""The studio window (PySide6 + pyqtgraph).

``python -m tlstudio.gui [project.toml] [--safe-mode]``.  The window edits a project,
starts runs through :mod:`tlstudio.core.engine` in a QThread, renders the events that come
back, and calls core functions (Grad-CAM, predictions, results) in worker threads: it never
drives torch itself.  See docs/gui.md.
"""
