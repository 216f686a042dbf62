"""Two-column tab-separated text files as they come: ``sentence<TAB>label`` (the UCI sets) or
``label<TAB>text`` (the SMS / spam sets), with or without a header line.

:func:`detect_layout` looks at the lines and decides which column holds the labels — the one
that is a small set of short values repeated many times — and whether the first line is a
header (it names the columns, or its label is seen nowhere else while every other label
repeats).  Either can be set instead (reader options ``label_column`` = first / last and
``header`` = yes / no).  :func:`swapped_hint` says so when the columns read look swapped: the
"texts" take a handful of values while the "labels" are nearly all different.

Pure functions on lines of text (no file access, no torch): the text readers call them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

#: a label is short; a column with more distinct values than this is no set of labels
MAX_LABELS = 50
MAX_LABEL_CHARS = 40
_TEXT_NAMES = {"text", "sentence", "sentences", "review", "comment", "content", "message", "sms", "document", "body",
               "note", "tweet", "v2"}
_LABEL_NAMES = {"label", "labels", "class", "target", "category", "sentiment", "y", "v1", "spam", "classname"}
_FIRST = {"first", "1", "left", "label_first"}
_LAST = {"last", "2", "right", "second", "label_last"}


@dataclass
class Layout:
    label_first: bool
    header: bool
    why: str  # how it was decided, for the report

    def split(self, line: str) -> tuple[str, str]:
        """(text, label) of one line; the text may itself hold tabs."""
        if self.label_first:
            label, text = line.split("\t", 1)
        else:
            text, label = line.rsplit("\t", 1)
        return text, label

    @property
    def columns(self) -> str:
        return "label<TAB>text" if self.label_first else "text<TAB>label"


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _label_like(values: list[str]) -> bool:
    """A small set of short values, each (mostly) seen more than once."""
    distinct = set(values)
    return (0 < len(distinct) <= min(MAX_LABELS, max(2, len(values) // 2))
            and all(0 < len(v) <= MAX_LABEL_CHARS for v in distinct))


def looks_two_column(lines: list[str]) -> bool:
    """Nearly every line has a tab with something on both sides of it, and one side of the
    tab is a set of labels (either column)."""
    rows = [ln for ln in lines if ln.strip()]
    good = [ln for ln in rows if "\t" in ln and ln.split("\t", 1)[0].strip() and ln.rsplit("\t", 1)[1].strip()]
    if not rows or len(good) < 0.9 * len(rows):
        return False
    first = [ln.split("\t", 1)[0].strip() for ln in good]
    last = [ln.rsplit("\t", 1)[1].strip() for ln in good]
    short_last = all(len(v) <= MAX_LABEL_CHARS for v in last[1:])  # the first line may be a header
    return short_last or _label_like(first[1:]) or _label_like(last[1:])


def _option(value, allowed: dict[str, set], name: str) -> str:
    v = str(value or "auto").strip().lower()
    for key, words in allowed.items():
        if v == key or v in words:
            return key
    from ..errors import DataError

    raise DataError(f"option {name}: expected {' or '.join(allowed)} (got {value!r})")


def detect_layout(lines: list[str], label_column=None, header=None) -> Layout:
    """Which column holds the labels and whether the first line is a header (see the module
    docstring); ``label_column`` ("auto", "first", "last") and ``header`` ("auto", "yes",
    "no") decide where given."""
    which = _option(label_column, {"auto": set(), "first": _FIRST, "last": _LAST}, "label_column")
    head = _option(header, {"auto": set(), "yes": {"true", "1", "y"}, "no": {"false", "0", "n"}}, "header")
    rows = [ln for ln in lines if ln.strip() and "\t" in ln]
    if not rows:
        return Layout(which == "first", head == "yes", "no tab-separated lines")
    first = [ln.split("\t", 1)[0].strip() for ln in rows]
    last = [ln.rsplit("\t", 1)[1].strip() for ln in rows]
    body = slice(1, None) if len(rows) > 1 else slice(0, None)
    if which == "auto":
        nf, nl = len(set(first[body])), len(set(last[body]))
        f_like, l_like = _label_like(first[body]), _label_like(last[body])
        if f_like and (not l_like or nf < nl):
            label_first, why = True, f"the first column holds {nf} different short values, the labels"
        elif l_like:
            label_first, why = False, f"the last column holds {nl} different short values, the labels"
        else:
            label_first, why = False, "no column looks like a small set of labels: the last one is taken"
    else:
        label_first, why = which == "first", f"the labels are in the {which} column (reader option)"
    labels, texts = (first, last) if label_first else (last, first)
    if head == "auto":
        named = _norm(labels[0]) in _LABEL_NAMES and _norm(texts[0]) in _TEXT_NAMES
        lone = len(rows) >= 5 and labels[1:].count(labels[0]) == 0 and _label_like(labels[1:]) and all(
            labels[1:].count(v) > 1 for v in set(labels[1:]))
        has_header = named or lone
    else:
        has_header = head == "yes"
    if has_header:
        why += f"; the first line is a header ({labels[0]!r}, {texts[0]!r})"
    return Layout(label_first, has_header, why)


def swapped_hint(texts: list[str], labels: list[str], option: str) -> str | None:
    """A sentence when the columns read look swapped: the texts are a few values repeated and
    the labels nearly all different.  ``option`` says what to set instead."""
    t = [x for x in texts if x]
    lab = [x for x in labels if x]
    if len(lab) < 20:
        return None
    nt, nl = len(set(t)), len(set(lab))
    if nl > max(MAX_LABELS, len(lab) // 2) and 0 < nt <= MAX_LABELS and nt * 5 < nl:
        eg = ", ".join(repr(v) for v in sorted(set(t))[:4])
        return (f"the text and label columns look swapped: the texts take only {nt} different values ({eg}) while "
                f"the labels take {nl:,} in {len(lab):,} rows. {option}")
    return None
