"""Small widgets shared by the pages: readable errors with a Details expander, images from
numpy arrays, thumbnail strips, a drop area, banners."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QImage, QPixmap
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMessageBox,
                               QPlainTextEdit, QSizePolicy, QToolButton, QVBoxLayout, QWidget)

from .tasks import ErrorInfo

ERROR_FRAME = "QFrame#errorPanel { background: #fdecea; border: 1px solid #e6b0aa; border-radius: 4px; }"
INFO_FRAME = "QFrame#banner { background: #eaf2fb; border: 1px solid #aed0f0; border-radius: 4px; }"
WARN_FRAME = "QFrame#banner { background: #fef5e7; border: 1px solid #f5cba7; border-radius: 4px; }"


# --- images ----------------------------------------------------------------------------------
def qimage_from_array(arr: np.ndarray) -> QImage:
    """H x W x 3 (or H x W) uint8 -> a QImage that owns its pixels."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    a = np.ascontiguousarray(a[..., :3], dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def pixmap_from_array(arr: np.ndarray, size: int | None = None, smooth: bool = True) -> QPixmap:
    pm = QPixmap.fromImage(qimage_from_array(arr))
    if size:
        mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        pm = pm.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)
    return pm


def thumbnail(arr: np.ndarray, size: int = 96) -> np.ndarray:
    """A small copy (longest side ``size``) for thumbnails, computed off the GUI thread."""
    from PIL import Image

    a = np.asarray(arr)
    h, w = a.shape[:2]
    s = size / max(h, w)
    if s >= 1:
        return a
    return np.asarray(Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR))


class ImageView(QLabel):
    """An image that scales to its box, keeping its aspect ratio; pixelated when enlarged
    much (small medical images stay honest).  Empty, it is a light panel that says what will
    appear there (not a black box)."""

    EMPTY_STYLE = "background: #f6f7f8; color: #777777; border: 1px dashed #c8cdd2;"
    IMAGE_STYLE = "background: #202020; color: #dddddd;"

    def __init__(self, parent=None, min_size: int = 160, placeholder: str = "The selected image appears here."):
        super().__init__(parent)
        self._arr: np.ndarray | None = None
        self.placeholder = placeholder
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumSize(min_size, min_size)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._render()

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self._render()

    def set_array(self, arr: np.ndarray | None) -> None:
        self._arr = None if arr is None else np.asarray(arr)
        self._render()

    def resizeEvent(self, e):  # noqa: N802
        super().resizeEvent(e)
        self._render()

    def _render(self) -> None:
        if self._arr is None:
            self.setPixmap(QPixmap())
            self.setStyleSheet(self.EMPTY_STYLE)
            self.setText(self.placeholder)
            return
        self.setStyleSheet(self.IMAGE_STYLE)
        side = max(16, min(self.width(), self.height()) - 4)
        pm = QPixmap.fromImage(qimage_from_array(self._arr))
        smooth = side <= 2 * max(self._arr.shape[:2])
        self.setPixmap(pm.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation if smooth
                                 else Qt.TransformationMode.FastTransformation))


class ThumbStrip(QListWidget):
    """A row (or a wrapping grid) of captioned thumbnails."""

    def __init__(self, size: int = 72, wrap: bool = False, captions: bool = True, parent=None):
        super().__init__(parent)
        self.thumb = size
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(size, size))
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setWrapping(wrap)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setSpacing(4)
        self.setUniformItemSizes(True)
        if not wrap:
            self.setFixedHeight(size + (46 if captions else 30))
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def add(self, arr: np.ndarray | None, caption: str = "", tooltip: str = "", data=None) -> QListWidgetItem:
        it = QListWidgetItem(caption)
        if arr is not None:
            it.setIcon(pixmap_from_array(arr, self.thumb, smooth=False))
        it.setToolTip(tooltip or caption)
        it.setData(Qt.ItemDataRole.UserRole, data)
        it.setSizeHint(QSize(self.thumb + 16, self.thumb + (34 if caption else 12)))
        it.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.addItem(it)
        return it


# --- errors ----------------------------------------------------------------------------------
class ErrorPanel(QFrame):
    """A failure in plain words, advice under it, and the traceback only behind Details."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("errorPanel")
        self.setStyleSheet(ERROR_FRAME)
        v = QVBoxLayout(self)
        self.title = QLabel()
        f = self.title.font()
        f.setBold(True)
        self.title.setFont(f)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.advice = QLabel()
        self.advice.setWordWrap(True)
        self.advice.setStyleSheet("color: #7d3c00;")
        self.toggle = QToolButton()
        self.toggle.setText("Details")
        self.toggle.setCheckable(True)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; }")
        self.toggle.toggled.connect(self._toggle)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(QFont("monospace"))
        self.details.setMinimumHeight(140)
        self.details.hide()
        for w in (self.title, self.message, self.advice, self.toggle, self.details):
            v.addWidget(w)
        self.hide()

    def _toggle(self, on: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.details.setVisible(on)

    def show_error(self, message: str, details: str = "", advice: str = "", title: str = "Something went wrong") -> None:
        self.title.setText(title)
        self.message.setText(message)
        self.advice.setText(advice)
        self.advice.setVisible(bool(advice))
        self.details.setPlainText(details)
        self.toggle.setVisible(bool(details))
        self.toggle.setChecked(False)
        self.show()

    def show_info(self, info: ErrorInfo, title: str = "Something went wrong") -> None:
        self.show_error(info.message, info.details, info.advice, title)

    def clear(self) -> None:
        self.hide()


def error_dialog(parent: QWidget | None, title: str, info: ErrorInfo | str, details: str = "") -> QMessageBox:
    """A non-blocking message box: the message, advice, and the traceback behind its
    "Show Details..." button."""
    if isinstance(info, str):
        info = ErrorInfo(info, details)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(info.message)
    if info.advice:
        box.setInformativeText(info.advice)
    if info.details:
        box.setDetailedText(info.details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setObjectName("errorDialog")
    box.open()
    return box


class Banner(QFrame):
    """A one-paragraph note at the top of a page (info or warning)."""

    def __init__(self, text: str = "", warn: bool = False, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet(WARN_FRAME if warn else INFO_FRAME)
        h = QHBoxLayout(self)
        h.setContentsMargins(8, 6, 8, 6)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        h.addWidget(self.label)

    def set_text(self, text: str, warn: bool | None = None) -> None:
        self.label.setText(text)
        if warn is not None:
            self.setStyleSheet(WARN_FRAME if warn else INFO_FRAME)
        self.setVisible(bool(text))


def heading(text: str, size: int = 0) -> QLabel:
    lab = QLabel(text)
    f = lab.font()
    f.setBold(True)
    if size:
        f.setPointSize(f.pointSize() + size)
    lab.setFont(f)
    return lab


def hint(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setWordWrap(True)
    lab.setStyleSheet("color: #555555;")
    return lab


# --- drop area -------------------------------------------------------------------------------
class DropArea(QFrame):
    """Drop image files or folders here: emits ``dropped(list[str])``."""

    dropped = Signal(list)

    def __init__(self, text: str = "Drop images or a folder here", parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setObjectName("dropArea")
        self.setStyleSheet("QFrame#dropArea { border: 2px dashed #8fa9c4; border-radius: 6px; background: #f4f8fc; }")
        v = QVBoxLayout(self)
        self.label = QLabel(text)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setStyleSheet("color: #3d5a80; border: none;")
        v.addWidget(self.label)
        self.setMinimumHeight(60)

    def dragEnterEvent(self, e):  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e):  # noqa: N802
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.dropped.emit(paths)
            e.acceptProposedAction()


def short_path(p: str | Path, keep: int = 2) -> str:
    parts = Path(p).parts
    return str(Path(*parts[-keep:])) if len(parts) > keep else str(p)


def fmt_num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def plural(n: int, one: str, many: str | None = None) -> str:
    """"1 image", "2 images", "1,234 classes": the count and the word that goes with it."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def fmt_seconds(s: float | None) -> str:
    if s is None or s != s or s < 0:
        return "–"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def clear_layout(layout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        w = item.widget()
        if w is not None:
            w.hide()
            w.setParent(None)
            w.deleteLater()
        elif item.layout() is not None:
            clear_layout(item.layout())


def join_nonempty(parts: Iterable[str], sep: str = " · ") -> str:
    return sep.join(p for p in parts if p)
