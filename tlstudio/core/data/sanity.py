"""Small checks every reader shares: class names that would corrupt the files written later,
quotes that never close, and text cut short enough to show."""
from __future__ import annotations

import csv
import io


def short(text, n: int = 80) -> str:
    """``text`` on one line, at most ``n`` characters."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= n else text[:n - 1] + "…"


def label_problem(label) -> str:
    """What makes a class name unusable ('' when nothing): a line break or another control
    character would corrupt labels.txt, the reports and the CSV files written later."""
    text = str(label)
    if "\n" in text or "\r" in text:
        return f"the class name {short(text, 40)!r} holds a line break"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"the class name {short(text, 40)!r} holds a control character"
    return ""


def unclosed_quote_line(text: str, **dialect) -> int | None:
    """The line where a quote opens that is never closed (the csv module would read the rest
    of the file into that one cell), or None."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, **dialect)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as e:
        if "unexpected end of data" in str(e) or "EOF" in str(e):
            return start
    return None
