"""The Train page's log: one line per event worth reading, that keeps following the newest line
(after Pause, Stop and Resume too) unless the user has scrolled up to read."""
from __future__ import annotations

import time

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QPlainTextEdit


class RunLog(QPlainTextEdit):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("trainLog")
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setFont(QFont("monospace", 9))

    def at_end(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def follow(self) -> None:
        """Show the newest line."""
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def add(self, text: str, when: float | None = None) -> None:
        """A time-stamped line; the view follows it when it showed the end before."""
        follow = self.at_end()
        self.appendPlainText(f"{time.strftime('%H:%M:%S', time.localtime(when))}  {text}")
        if follow:
            self.follow()


def done_summary(e: dict) -> str:
    """The finished run's result line: time, test figures, best epoch."""
    from .widgets import fmt_seconds

    parts = [f"Finished in {fmt_seconds(e.get('train_seconds'))}."]
    t = e.get("test") or {}
    for key, label in (("accuracy", "Test accuracy"), ("balanced_accuracy", "balanced accuracy"), ("auc", "AUC"),
                       ("map_50", "Test mAP@0.5"), ("map", "mAP@[.5:.95]"), ("bleu_4", "Test BLEU-4")):
        if t.get(key) is not None:  # classification; detection and captioning runs
            parts.append(f"{label} {t[key]:.3f}")
    if e.get("best_epoch"):
        parts.append(f"best epoch {e['best_epoch']} by {e.get('monitor', '')}")
    return " · ".join(parts)


def event_line(e: dict) -> str | None:
    """The log line of an event (None for batch and progress events)."""
    k = e.get("kind")
    if k == "log":
        lvl = e.get("level", "info")
        return ("⚠ " if lvl == "warning" else "✖ " if lvl == "error" else "") + str(e.get("message", ""))
    if k == "start":
        return (f"Run {e.get('run_id')} — {e.get('technique')} on {e.get('model')} ({e.get('device')})"
                + (" [resumed]" if e.get("resumed") else ""))
    if k == "epoch":
        vals = "  ".join(f"{n[4:]} {e[n]:.4f}" for n in ("val_loss", "val_accuracy", "val_auc") if e.get(n) is not None)
        series = "  ".join(f"{n} {v:.4g}" for n, v in (e.get("series") or {}).items())
        return (f"epoch {e.get('epoch')}/{e.get('epochs')}  train_loss {e.get('train_loss', float('nan')):.4f}  "
                f"{vals}  {series}  {e.get('seconds', 0):.1f}s{'  *best' if e.get('best') else ''}")
    if k == "stage":
        return f"— {e.get('message') or e.get('name') or 'stage'}"
    if k == "done":
        return "Done." + (f" Test accuracy {e['test_accuracy']:.4f}" if e.get("test_accuracy") is not None else "")
    if k == "stopped":
        return e.get("message", "Stopped.")
    if k == "failed":
        return f"Failed: {e.get('message')}" + (f"\n    {e['advice']}" if e.get("advice") else "")
    return None
