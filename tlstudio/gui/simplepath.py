"""The simple path of the Technique and Model pages: what a domain expert can answer, in plain
words, with everything else folded away under "Advanced" (already set to recommended values).

- :class:`Fold`: a titled section that opens and closes (folded by default).
- :class:`AdviceBar`: "Recommended for your data: …" with a button to take it.
- :class:`DurationBox`: quick / standard / thorough, each with its epochs and the time it is
  expected to take on this computer.
- :class:`MirrorBox`: does a left-right mirror image show the same thing?  Asked once per
  project (``augmentation.mirror_safe``: None until answered).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton, QRadioButton,
                               QToolButton, QVBoxLayout, QWidget)

from .widgets import INFO_FRAME, fmt_seconds, hint

DURATION_TITLES = {"quick": "Quick", "standard": "Standard", "thorough": "Thorough"}
DURATION_NOTES = {"quick": "a first look at what the data allow",
                  "standard": "the recommended length",
                  "thorough": "more epochs, for a last few points"}


class Fold(QWidget):
    """A section whose body shows only when opened (a ▸ / ▾ button with its title)."""

    toggled = Signal(bool)

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.button = QToolButton()
        self.button.setObjectName("foldButton")
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setStyleSheet("QToolButton { border: none; font-weight: 600; }")
        self.button.toggled.connect(self.set_expanded)
        v.addWidget(self.button)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(16, 0, 0, 0)
        self.body.hide()
        v.addWidget(self.body)

    def set_expanded(self, on: bool) -> None:
        if self.button.isChecked() != on:
            self.button.setChecked(on)  # calls back here
            return
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)
        self.toggled.emit(on)

    def expanded(self) -> bool:
        return self.button.isChecked()


class AdviceBar(QFrame):
    """A recommendation in one sentence, and a button that takes it (hidden when already taken)."""

    take = Signal()

    def __init__(self, button_text: str = "Use it", parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet(INFO_FRAME)
        h = QHBoxLayout(self)
        h.setContentsMargins(8, 6, 8, 6)
        self.label = QLabel()
        self.label.setObjectName("adviceText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        h.addWidget(self.label, 1)
        self.button = QPushButton(button_text)
        self.button.setObjectName("adviceButton")
        self.button.clicked.connect(self.take.emit)
        h.addWidget(self.button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_advice(self, text: str, tooltip: str = "", taken: bool = False) -> None:
        self.label.setText(text)
        self.label.setToolTip(tooltip)
        self.button.setVisible(not taken)
        self.show()


class DurationBox(QGroupBox):
    """How long to train: three choices with their epochs and expected time; ``chosen(epochs)``."""

    chosen = Signal(int)

    def __init__(self, parent=None):
        super().__init__("How long to train", parent)
        self.setObjectName("durationBox")
        v = QVBoxLayout(self)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.radios: dict[str, QRadioButton] = {}
        self.epochs: dict[str, int] = {}
        for key, title in DURATION_TITLES.items():
            r = QRadioButton(title)
            r.setObjectName(f"duration_{key}")
            r.clicked.connect(lambda _c=False, k=key: self.chosen.emit(self.epochs.get(k, 0)) if self.epochs.get(k)
                              else None)
            self.group.addButton(r)
            self.radios[key] = r
            v.addWidget(r)
        self.custom = hint("")
        self.custom.setObjectName("durationCustom")
        v.addWidget(self.custom)
        self.note = hint("")
        self.note.setObjectName("durationNote")
        v.addWidget(self.note)

    def set_plan(self, plan, current_epochs: int, note: str = "") -> None:
        """Show a :class:`tlstudio.core.analysis.guide.TrainingPlan` (or None: not known yet)."""
        self.epochs = {d.key: d.epochs for d in plan.durations} if plan is not None else {}
        match = plan.matching(current_epochs) if plan is not None else None
        self.group.setExclusive(False)
        for key, r in self.radios.items():
            d = next((d for d in plan.durations if d.key == key), None) if plan is not None else None
            if d is None:
                r.setText(DURATION_TITLES[key])
                r.setEnabled(False)
            else:
                when = f"about {fmt_seconds(d.seconds)}" if d.seconds is not None else "time not known yet"
                r.setText(f"{DURATION_TITLES[key]}: {d.epochs} epoch{'s' if d.epochs != 1 else ''}, {when}")
                r.setToolTip(f"{DURATION_NOTES[key]}. " + (
                    f"Expected from the training speed measured on this computer ({plan.images_per_s:.0f} images/s "
                    f"for this model and image size) and the number of images; the first epochs of a technique "
                    f"that unfreezes the network in stages go faster." if plan.images_per_s else
                    "The speed of this model on this computer is being measured."))
                r.setEnabled(True)
            r.setChecked(key == match)
        self.group.setExclusive(True)
        self.custom.setText("" if match or plan is None else
                            f"Now: {current_epochs} epoch{'s' if current_epochs != 1 else ''} (set under Advanced).")
        self.custom.setVisible(bool(self.custom.text()))
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def choice(self) -> str | None:
        return next((k for k, r in self.radios.items() if r.isChecked()), None)


class MirrorBox(QGroupBox):
    """Does a left-right mirror image of one of the images show the same thing? ``answered(bool)``."""

    answered = Signal(bool)

    def __init__(self, parent=None):
        super().__init__("Mirror images", parent)
        self.setObjectName("mirrorBox")
        v = QVBoxLayout(self)
        self.question = QLabel("Does a left-right <b>mirror image</b> of one of your images show the same thing?")
        self.question.setWordWrap(True)
        v.addWidget(self.question)
        self.yes = QRadioButton("Yes: mirrored, it shows the same finding (a skin lesion, a cell, a lump on "
                                "ultrasound). Training may also learn from mirror images.")
        self.no = QRadioButton("No: left and right matter (a chest film, where the heart lies on the left). Mirror "
                               "images are never used.")
        for r, value in ((self.yes, True), (self.no, False)):
            r.setObjectName(f"mirror_{'yes' if value else 'no'}")
            r.clicked.connect(lambda _c=False, v=value: self.answered.emit(v))
            v.addWidget(r)
        self.state = hint("")
        self.state.setObjectName("mirrorState")
        v.addWidget(self.state)

    def set_answer(self, value: bool | None) -> None:
        self.yes.setAutoExclusive(False)
        self.no.setAutoExclusive(False)
        self.yes.setChecked(value is True)
        self.no.setChecked(value is False)
        self.yes.setAutoExclusive(True)
        self.no.setAutoExclusive(True)
        self.state.setText("Not answered yet: please answer once for this project." if value is None else "")
        self.state.setStyleSheet("color: #9a5b00;" if value is None else "")
        self.state.setVisible(value is None)
