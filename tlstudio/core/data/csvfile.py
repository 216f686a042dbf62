"""Reading the CSV tables the readers take: the header, its columns found by name (or given
as options), and rows with unbalanced quotes reported with their line numbers."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..errors import DataError
from .sanity import short as _short
PATH_NAMES = ("path", "file", "filename", "filepath", "image", "imagepath", "imagefile", "img", "imgpath")
LABEL_NAMES = ("label", "class", "target", "classname", "category", "diagnosis")
SPLIT_COLUMN_NAMES = ("split", "set", "fold", "subset")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


def normalise_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


MAX_BROKEN_ROWS = 100


def read_csv(path: Path, broken: list | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) with the delimiter sniffed; DataError when unreadable.

    A row whose quote is never closed would swallow the rest of the file into one cell: it is
    cut off at its own line instead, and reported as (line, reason) in ``broken`` when given
    (else as a DataError naming the line)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if b"\0" in raw[:4096]:
        raise DataError(f"{path}: not a text file (expected a CSV table)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # spreadsheets on Windows save cp1252
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    lines = io.StringIO(text, newline="").readlines()  # the lines as the csv module sees them
    records: list[tuple[int, list[str]]] = []
    start = 0  # index of the physical line the reader starts at
    bad: list[tuple[int, str]] = []
    while True:
        reader = csv.reader(io.StringIO("".join(lines[start:]), newline=""), dialect)
        end = 0
        restart = None
        try:
            for row in reader:
                first = start + end + 1  # 1-based line where this record begins
                end = reader.line_num
                if end > first - start:  # the record ran over a line break: an unbalanced quote
                    restart = first
                    break
                records.append((first, row))
        except csv.Error as e:
            raise DataError(f"{path}:{start + end + 1}: cannot read as CSV: {_short(e)}") from None
        if restart is None:
            break
        bad.append((restart, "a quote (\") opens in this row and runs over its line break (never closed?): "
                             "the row was left out"))
        if broken is None:
            raise DataError(f"{path}:{restart}: a quote (\") opens in this row and is never closed, so the rest of the "
                            "file would read as one cell; close or remove the quote")
        if len(bad) > MAX_BROKEN_ROWS:
            raise DataError(f"{path}: more than {MAX_BROKEN_ROWS} rows have unbalanced quotes (first on line "
                            f"{bad[0][0]}): is this a CSV table?")
        start = restart  # go on from the line after the broken one
        records = [r for r in records if r[0] < restart]
    if broken is not None:
        broken.extend(bad)
    records = [(n, r) for n, r in records if n not in {b for b, _ in bad}]
    if not records or not any(c.strip() for c in records[0][1]):
        raise DataError(f"{path}: empty CSV file (expected a header row such as path,label)")
    header = [h.strip() for h in records[0][1]]
    if not any(header):
        raise DataError(f"{path}: empty CSV file (expected a header row such as path,label)")
    rows = [(n, row) for n, row in records[1:] if any(c.strip() for c in row)]
    return header, rows


def find_column(path: Path, header: list[str], given: str | None, names: tuple, what: str, option: str) -> int | None:
    found = ", ".join(header)
    if given:
        for i, h in enumerate(header):
            if h == given or normalise_name(h) == normalise_name(given):
                return i
        raise DataError(f"{path}: no column '{given}' (option {option}); columns found: {found}")
    by_name = {normalise_name(h): i for i, h in reversed(list(enumerate(header)))}
    for n in names:
        if n in by_name:
            return by_name[n]
    if what in ("split", "group"):  # optional columns
        return None
    raise DataError(f"{path}: no {what} column (looked for {', '.join(names[:4])}; columns found: {found}). "
                    f"Name it in the header row or set the option {option}.")
