"""What the Data page shows for tasks other than image classification: the columns a text
reader can use, a few texts of each class, and annotated images with their boxes or
captions drawn.  Plain functions (no widgets) that run in worker threads."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tlstudio.core.tasks.traits import ANNOTATION_KINDS

TEXTS_PER_CLASS = 5
ANNOTATED_IMAGES = 12
BOX_COLORS = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (213, 94, 0), (86, 180, 233),
              (240, 228, 66), (0, 0, 0)]


def table_kind(table) -> str:
    """What the Data page draws: "text", "image" (a class each), or what annotated images
    carry ("box", "caption": a key of ANNOTATION_KINDS)."""
    if table is None:
        return "image"
    if hasattr(table, "texts") and not hasattr(table, "load_image"):
        return "text"
    annotation = getattr(getattr(table, "report", None), "annotation", None)
    if hasattr(table, "annotation") and annotation in ANNOTATION_KINDS:
        return annotation
    return "image"


def reader_for(source: str, fmt: str, readers) -> object | None:
    """The reader that reads ``source``: the one named by ``fmt``, else the first that
    recognises it (as :func:`tlstudio.core.data.read_data` chooses)."""
    readers = list(readers or [])
    if fmt not in ("auto", "", None):
        return next((r for r in readers if r.id == fmt), None)
    path = Path(source)

    def recognises(r) -> bool:
        try:
            return bool(r.can_read(path))
        except Exception:  # noqa: BLE001 - a plugin's broken sniff must not stop the others
            return False

    return next((r for r in sorted(readers, key=lambda r: bool(getattr(r, "catch_all", False))) if recognises(r)), None)


def option_choices(source: str, fmt: str, readers) -> tuple[str, dict[str, list[str]]]:
    """(reader id, {option: values seen in the file}) for the reader of ``source``; a reader
    without ``option_choices`` or a file it cannot open gives no choices."""
    reader = reader_for(source, fmt, readers)
    if reader is None or not hasattr(reader, "option_choices"):
        return (getattr(reader, "id", ""), {})
    try:
        choices = reader.option_choices(Path(source))
    except Exception:  # noqa: BLE001 - the read itself reports what is wrong with the file
        return (reader.id, {})
    return (reader.id, {str(k): [str(v) for v in vals] for k, vals in (choices or {}).items()})


def text_preview(table, per_class: int = TEXTS_PER_CLASS, seed: int = 0) -> dict[str, list[str]]:
    """A few texts of each class (the table's own seeded draw)."""
    if hasattr(table, "preview"):
        return table.preview(per_class, seed)
    out: dict[str, list[str]] = {c: [] for c in table.class_names}
    for it in table.items:
        lst = out.get(it.label)
        if lst is not None and len(lst) < per_class:
            lst.append(it.meta.get("text", ""))
    return out


def draw_boxes(img: np.ndarray, boxes, labels, class_names: list[str], texts: list[str] | None = None) -> np.ndarray:
    """The image (H, W, 3 uint8) with each box outlined in its class's colour and labelled
    (with ``texts`` when given, e.g. "cat 0.93", else the label)."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(img[..., :3] if img.ndim == 3 else np.stack([img] * 3, -1)))
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(im.size) / 100))
    texts = list(texts) if texts is not None else [str(lab) for lab in labels]
    for box, lab, text in zip(boxes, labels, texts):
        k = class_names.index(lab) if lab in class_names else len(BOX_COLORS) - 1
        color = BOX_COLORS[k % len(BOX_COLORS)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=color, width=width)
        draw.text((x1 + 1, max(0.0, y1 - 11)), text, fill=color)
    return np.asarray(im)


def annotated_examples(table, n: int = ANNOTATED_IMAGES, size: int = 160) -> list[dict]:
    """Up to ``n`` usable images with their annotations drawn (boxes) or listed (captions):
    [{"ref", "image" (thumbnail), "boxes", "labels", "captions", "error"}]."""
    from .widgets import thumbnail

    out = []
    names = list(table.class_names)
    # images with annotations first, then background-only ones
    order = sorted(range(len(table.items)), key=lambda i: not (table.items[i].meta.get("boxes")
                                                             or table.items[i].meta.get("captions")))
    for i in order[:n]:
        it = table.items[i]
        ann = table.annotation(i)
        row = {"ref": it.ref, "boxes": ann.get("boxes", []), "labels": ann.get("labels", []),
               "captions": ann.get("captions", []), "image": None, "error": ""}
        try:
            img = table.load_image(i)
            if row["boxes"]:
                img = draw_boxes(img, row["boxes"], row["labels"], names)
            row["image"] = thumbnail(img, size)
        except Exception as e:  # noqa: BLE001 - a file gone since the read: named, the rest drawn
            row["error"] = str(e)
        out.append(row)
    return out
