"""The data: a CSV of image paths, each with the list of its labels.

    path,labels
    films/0001.png,effusion;pacemaker
    films/0002.png,
    films/0003.png,cardiomegaly

Labels are separated by ``;`` or ``|``; an empty cell means "none of the labels" (a real
negative for every label, not a missing one).  The table's class names are the labels; each
item keeps its list in ``item.meta["labels"]`` and, as its ``label``, the sorted combination
("effusion+pacemaker", "none"), so that splits are stratified by combination and identical
images with different labels are flagged like any other conflict.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from tlstudio.api import DataError, DatasetReader, Item, Scan, Skipped, decode_image

NONE = "none"
PATH_COLUMNS = ("path", "file", "filename", "image")
LABELS_COLUMNS = ("labels", "findings", "label")


def split_labels(cell: str) -> list[str]:
    return sorted({p.strip() for p in re.split(r"[;|]", cell or "") if p.strip()})


class MultiLabelCsvReader(DatasetReader):
    id = "multilabel-csv"
    title = "CSV of images with their labels"
    task = "multi-label-classification"
    description = ("A CSV with a column of image paths (relative to the CSV's folder) and a column listing each "
                   "image's labels, separated by ';' (an empty cell: none of them).")
    options_help = {"path_column": "column of image paths (default: path, file, filename or image)",
                    "labels_column": "column of labels (default: labels, findings or label)"}

    def can_read(self, path: Path) -> bool:
        return Path(path).is_file() and Path(path).suffix.lower() == ".csv"

    def scan(self, path: Path, options: dict) -> Scan:
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: cannot read as CSV: {e}") from None
        if not rows:
            raise DataError(f"{path}: empty CSV file (expected a header row path,labels)")
        header = [h.strip().lower() for h in rows[0]]
        pcol = self._column(path, header, options.get("path_column"), PATH_COLUMNS, "image path")
        lcol = self._column(path, header, options.get("labels_column"), LABELS_COLUMNS, "labels")
        items, skipped, names = [], [], set()
        for line, row in enumerate(rows[1:], start=2):
            where = f"{path.name}:{line}"
            raw = row[pcol].strip() if pcol < len(row) else ""
            if not raw:
                skipped.append(Skipped(where, f"{where}: no file name"))
                continue
            ref = os.path.abspath(path.parent / raw)
            if not os.path.isfile(ref):
                skipped.append(Skipped(ref, f"{where}: file not found: {raw}"))
                continue
            labels = split_labels(row[lcol] if lcol < len(row) else "")
            names.update(labels)
            items.append(Item(ref, "+".join(labels) or NONE, None, {"labels": labels, "where": where}))
        scan = Scan(items, skipped, class_names=None)
        scan.warnings.append(f"{len(names)} labels: {', '.join(sorted(names)) or 'none'}")
        return scan

    @staticmethod
    def _column(path, header, given, names, what) -> int:
        for n in ([given.lower()] if given else names):
            if n in header:
                return header.index(n)
        raise DataError(f"{path}: no {what} column (looked for {', '.join(names)}; columns found: {', '.join(header)})")

    def load_image(self, item: Item):
        return decode_image(item.ref)
