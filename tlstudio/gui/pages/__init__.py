"""The studio's pages, read left to right: Data, Model, Technique, Train, Evaluate, Predict, Runs."""
from __future__ import annotations

from PySide6.QtWidgets import QScrollArea, QWidget

PAGES = [
    ("data", "Data", "tlstudio.gui.pages.data", "DataPage"),
    ("model", "Model", "tlstudio.gui.pages.model", "ModelPage"),
    ("technique", "Technique", "tlstudio.gui.pages.technique", "TechniquePage"),
    ("train", "Train", "tlstudio.gui.pages.train", "TrainPage"),
    ("evaluate", "Evaluate", "tlstudio.gui.pages.evaluate", "EvaluatePage"),
    ("predict", "Predict", "tlstudio.gui.pages.predict", "PredictPage"),
    ("runs", "Runs", "tlstudio.gui.pages.runs", "RunsPage"),
]


class Page(QWidget):
    """Base of a page: it knows the studio (state) and the main window (navigation)."""

    key = ""

    def __init__(self, studio, window, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.window_ = window

    def activated(self) -> None:
        """Called each time the page is shown."""


def scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(widget)
    return area
