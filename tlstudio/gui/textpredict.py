"""Predict for text runs: type a sentence, read the class with every class's probability and
the words that drove it, each coloured by its weight (the technique's ``explain``: which
method it used is said in the panel, as the technique reports it)."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QPlainTextEdit, QProgressBar, QPushButton,
                               QTableWidget, QTableWidgetItem, QTextBrowser, QVBoxLayout, QWidget)

from .widgets import ErrorPanel, hint

POSITIVE_RGB = "46,160,67"
NEGATIVE_RGB = "215,58,73"


def method_name(method: str) -> str:
    """A short name of the attribution method the technique reported."""
    m = (method or "").lower()
    if "integrated" in m:
        return "integrated gradients"
    if "gradient" in m and ("input" in m or "×" in m or " x " in m):
        return "gradient × input"
    return method or "not reported"


def words_html(result: dict) -> str:
    """The text with each word's background coloured by its weight: green pushed towards the
    predicted class, red away; the stronger the colour, the stronger the push.  Hovering a
    word shows its score."""
    text = result.get("text", "")
    words = list(result.get("words") or [])
    placed = sorted((w for w in words if w.get("start") is not None and w.get("end") is not None),
                    key=lambda w: w["start"])

    def span(w, shown: str) -> str:
        weight = float(w.get("weight", 0.0))
        a = min(1.0, abs(weight))
        rgb = POSITIVE_RGB if weight >= 0 else NEGATIVE_RGB
        score = float(w.get("score", weight))
        return (f'<span style="background-color: rgba({rgb},{0.12 + 0.78 * a:.2f})" title="{score:+.4f}">'
                f'{html.escape(shown)}</span>')

    if placed and len(placed) == len(words):
        out, pos = [], 0
        for w in placed:
            if w["start"] < pos:
                continue
            out.append(html.escape(text[pos:w["start"]]))
            out.append(span(w, text[w["start"]:w["end"]]))
            pos = w["end"]
        out.append(html.escape(text[pos:]))
        return "".join(out)
    if words:  # tokens without positions (a slow tokenizer)
        return " ".join(span(w, str(w.get("word", ""))) for w in words)
    return html.escape(text)


class TextPredictPanel(QWidget):
    """The text half of the Predict page.  ``with_predictor(then)`` loads (or reuses) the run's
    predictor and calls ``then()``; ``predictor()`` returns it."""

    def __init__(self, studio, with_predictor, predictor, parent=None):
        super().__init__(parent)
        self.studio = studio
        self._with_predictor = with_predictor
        self._predictor = predictor
        self.last: dict | None = None
        self._asked: str | None = None

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Type or paste a text, then press Predict (Ctrl+Return):"))
        self.input = QPlainTextEdit()
        self.input.setObjectName("predictText")
        self.input.setPlaceholderText("e.g. Spiculated mass with irregular borders in the upper outer quadrant.")
        self.input.setMaximumHeight(110)
        lay.addWidget(self.input)
        row = QHBoxLayout()
        self.button = QPushButton("Predict")
        self.button.setObjectName("predictTextButton")
        self.button.setShortcut("Ctrl+Return")
        self.button.clicked.connect(lambda: self.predict())
        row.addWidget(self.button)
        self.verdict = QLabel("")
        self.verdict.setObjectName("textVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.verdict, 1)
        lay.addLayout(row)
        self.error = ErrorPanel()
        lay.addWidget(self.error)
        self.probabilities = QTableWidget(0, 3)
        self.probabilities.setObjectName("textProbabilities")
        self.probabilities.setHorizontalHeaderLabels(["class", "probability", ""])
        self.probabilities.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.probabilities.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.probabilities.verticalHeader().hide()
        hh = self.probabilities.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.probabilities.setMaximumHeight(150)
        lay.addWidget(self.probabilities)
        self.method = QLabel("")
        self.method.setObjectName("textMethod")
        self.method.setWordWrap(True)
        lay.addWidget(self.method)
        self.words = QTextBrowser()
        self.words.setObjectName("textWords")
        lay.addWidget(self.words, 1)
        lay.addWidget(hint("The words are scored for the predicted class by the technique's own attribution; a "
                           "score is how much that word moved the class's log-probability. Check that the words "
                           "that drove it are the ones an expert would read."))

    def clear(self) -> None:
        self.last = None
        self.verdict.setText("")
        self.method.setText("")
        self.words.clear()
        self.probabilities.setRowCount(0)
        self.error.clear()

    def predict(self, text: str | None = None) -> None:
        """Predict ``text`` (or what the box holds) with the run's model, in the model thread."""
        if text is not None:
            self.input.setPlainText(text)
        text = self.input.toPlainText().strip()
        if not text:
            self.verdict.setText("Type a text first.")
            return
        self.error.clear()
        self.verdict.setText("Predicting…")
        self.button.setEnabled(False)
        self._asked = text

        def go():
            from tlstudio.core.tasks.text import explain_sentence  # torch and transformers: loaded on first use

            self.studio.tasks.submit(explain_sentence, self._predictor(), text, pool="model", name="explain-text",
                                     on_done=lambda res, t=text: self._done(t, res), on_error=self._failed)

        self._with_predictor(go, self._failed)

    def _failed(self, info) -> None:
        self.button.setEnabled(True)
        self.verdict.setText("Cannot predict.")
        self.error.show_info(info, "The text could not be predicted")

    def _done(self, text: str, result: dict) -> None:
        self.button.setEnabled(True)
        if text != self._asked:
            return
        self.last = result
        probs = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
        pred = result["predicted"]
        from tlstudio.core.delivery.predict import set_text

        self.verdict.setText(f"<b>{html.escape(str(pred))}</b> ({100 * result['probabilities'][pred]:.1f}%)"
                             + (f" — prediction set: {html.escape(set_text(result['set']))}" if "set" in result else "")
                             + (" — the text was cut at the model's maximum length" if result.get("truncated") else ""))
        self.probabilities.setRowCount(len(probs))
        for i, (c, v) in enumerate(probs):
            self.probabilities.setItem(i, 0, QTableWidgetItem(str(c)))
            self.probabilities.setItem(i, 1, QTableWidgetItem(f"{100 * v:.1f}%"))
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(int(round(1000 * v)))
            bar.setTextVisible(False)
            self.probabilities.setCellWidget(i, 2, bar)
        if result.get("words"):
            target = result.get("target", pred)
            self.method.setText(
                f"Which words drove <b>{html.escape(str(target))}</b> — method: "
                f"<b>{html.escape(result.get('method') or method_name(''))}</b>. "
                f"<span style='background-color: rgba({POSITIVE_RGB},0.6)'>Green</span> pushed towards it, "
                f"<span style='background-color: rgba({NEGATIVE_RGB},0.6)'>red</span> away; hover a word for its score.")
        else:
            self.method.setText("This technique does not say which words drove its prediction.")
        self.words.setHtml(f"<p style='font-size: 14pt; line-height: 160%'>{words_html(result)}</p>")
