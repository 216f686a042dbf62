"""Object-detection data: COCO JSON, Pascal VOC XML folders and CSV box tables.

Every reader lists each image with its boxes (``x1, y1, x2, y2`` in pixels, corners
exclusive at the right/bottom) and class names.  Boxes that cannot be used are listed in
the report with their reason and left out: outside the image, zero or negative area,
not numbers, unknown labels, crowd regions.  Registered through the
``tlstudio_dataset_readers`` hook (entry point ``detection-readers``), like any plugin's
reader, with ``task = "detection"``.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import DataError
from ..hookspecs import hookimpl
from .annotations import AnnotatedReader, image_roots, names_option, number, resolve_image
from .csvfile import PATH_NAMES, SPLIT_NAMES, find_column, normalise_name, read_csv
from .report import Item, Skipped
from .table import Scan, iter_files

EDGE_TOLERANCE = 1.0  # a box may overshoot the image by this many pixels (then it is clipped)


def _fmt_box(b) -> str:
    return "[" + ", ".join(f"{v:g}" for v in b) + "]"


class BoxReader(AnnotatedReader):
    """Common checks of detection readers (subclasses implement ``can_read`` and ``scan``)."""

    task = "detection"

    def check(self, item: Item, width: int, height: int) -> list[Skipped]:
        """Keep the boxes that lie inside the image and have an area; clip overshoots of up
        to :data:`EDGE_TOLERANCE` pixels."""
        keep_b, keep_l, out = [], [], []
        tol = EDGE_TOLERANCE
        for (x1, y1, x2, y2), lab, where in zip(item.meta["boxes"], item.meta["labels"], item.meta["box_where"]):
            size = f"{width}x{height}"
            if x2 <= x1 or y2 <= y1:
                problem = ("zero-area box" if x2 == x1 or y2 == y1
                           else "negative size (x2 < x1 or y2 < y1: corners swapped?)")
            elif x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                problem = f"box lies outside the image ({size} pixels)"
            elif x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
                problem = f"box reaches outside the image ({size} pixels)"
            else:
                keep_b.append([max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)])
                keep_l.append(lab)
                continue
            out.append(Skipped(item.ref, f"{where}: box {_fmt_box((x1, y1, x2, y2))} '{lab}': {problem}"))
        item.meta["boxes"], item.meta["labels"] = keep_b, keep_l
        item.meta.pop("box_where", None)
        return out


def _new_item(file: Path, split: str | None, where: str) -> Item:
    return Item(os.path.abspath(file), None, split, {"boxes": [], "labels": [], "box_where": [], "where": where})


def _add_box(item: Item, box, label: str, where: str) -> None:
    item.meta["boxes"].append([float(v) for v in box])
    item.meta["labels"].append(label)
    item.meta["box_where"].append(where)


def _known(label: str, classes: list[str] | None) -> str | None:
    """None when the label is usable, else the reason."""
    if not label:
        return "empty label"
    if classes and label not in classes:
        return f"unknown label '{label}' (known: {', '.join(classes)})"
    return None


# --- CSV ---------------------------------------------------------------------------------------------------
_X1, _Y1 = ("x1", "xmin", "left", "x0"), ("y1", "ymin", "top", "y0")
_X2, _Y2 = ("x2", "xmax", "right"), ("y2", "ymax", "bottom")
_BOX_LABEL = ("label", "class", "classname", "category", "name", "object")
_SPLIT = ("split", "set", "subset", "fold")


def _header_line(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8-sig", errors="replace")
    except OSError:
        return []
    first = head.splitlines()[0] if head else ""
    for d in (",", ";", "\t", "|"):
        if d in first:
            return [normalise_name(h) for h in first.split(d)]
    return [normalise_name(first)]


class BoxCsvReader(BoxReader):
    id = "boxes-csv"
    title = "CSV of boxes"
    description = ("A CSV with one row per box: image, x1, y1, x2, y2, label (pixels, top-left origin); an image "
                   "appears on as many rows as it has boxes, and a row with empty box cells lists an image without "
                   "objects.  An optional split column (train/val/test) gives the split.")
    options_help = {
        "classes": "list of class names to keep (boxes with other labels are skipped)",
        "root": "folder the image paths are relative to (default: the CSV's folder, then its images/ folder)",
        "path_column": "column of image paths (default: image, path, file or filename)",
        "label_column": "column of labels (default: label, class or category)",
    }

    def can_read(self, path: Path) -> bool:
        path = Path(path)
        if not (path.is_file() and path.suffix.lower() in (".csv", ".tsv")):
            return False
        cols = set(_header_line(path))
        return all(any(n in cols for n in names) for names in (_X1, _Y1, _X2, _Y2))

    def scan(self, path: Path, options: dict) -> Scan:
        header, rows = read_csv(path)
        pcol = find_column(path, header, options.get("path_column"), PATH_NAMES, "image path", "path_column")
        lcol = find_column(path, header, options.get("label_column"), _BOX_LABEL, "label", "label_column")
        cols = [find_column(path, header, None, names, f"{names[0]} (box corner)", names[0]) for names in (_X1, _Y1, _X2, _Y2)]
        scol = find_column(path, header, None, _SPLIT, "split", "split_column")
        classes = names_option(options.get("classes"))
        roots = image_roots(path, options)
        items: dict[str, Item] = {}
        missing: dict[str, list[int]] = {}
        skipped: list[Skipped] = []
        warnings: list[str] = []

        def cell(row, i):
            return row[i].strip() if i is not None and i < len(row) else ""

        for line, row in rows:
            where = f"{path.name}:{line}"
            name = cell(row, pcol)
            if not name:
                skipped.append(Skipped(where, f"{where}: no image name in column '{header[pcol]}'"))
                continue
            file = resolve_image(name, roots)
            if file is None:
                missing.setdefault(name, []).append(line)
                continue
            split_raw = cell(row, scol)
            split = SPLIT_NAMES.get(split_raw.lower()) if split_raw else None
            key = os.path.abspath(file)
            if key not in items:
                items[key] = _new_item(file, split, where)
            elif split and items[key].split and split != items[key].split:
                warnings.append(f"{where}: split '{split_raw}' differs from the image's first row: the first is kept")
            item = items[key]
            raw = [cell(row, c) for c in cols]
            label = cell(row, lcol)
            if not any(raw) and not label:
                continue  # an image without objects
            try:
                box = [number(v, n) for v, n in zip(raw, ("x1", "y1", "x2", "y2"))]
            except ValueError as e:
                skipped.append(Skipped(item.ref, f"{where}: {e}"))
                continue
            if (problem := _known(label, classes)) is not None:
                skipped.append(Skipped(item.ref, f"{where}: box {_fmt_box(box)}: {problem}"))
                continue
            _add_box(item, box, label, where)
        for name, lines in missing.items():
            shown = ", ".join(map(str, lines[:5])) + (" ..." if len(lines) > 5 else "")
            skipped.append(Skipped(name, f"{path.name}: image file not found: {name} (line{'s' if len(lines) > 1 else ''} {shown})"))
        if not rows:
            warnings.append(f"{path}: the CSV has a header but no rows")
        return Scan(list(items.values()), skipped, warnings, class_names=classes)


# --- COCO JSON ---------------------------------------------------------------------------------------------
def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (expected JSON)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None


def _sniff_json(path: Path, size: int = 1 << 20) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def coco_images(path: Path, data: dict, options: dict, skipped: list[Skipped]) -> dict[object, tuple[Path, str | None]]:
    """COCO ``images`` -> {image id: (file, split)}; unusable entries go to ``skipped``."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO file (expected an object with an 'images' list)")
    roots = image_roots(path, options)
    out: dict = {}
    for k, im in enumerate(data["images"]):
        where = f"{path.name}: images[{k}]"
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            skipped.append(Skipped(where, f"{where}: an image entry needs 'id' and 'file_name'"))
            continue
        if im["id"] in out:
            skipped.append(Skipped(where, f"{where}: image id {im['id']} given twice (the first is kept)"))
            continue
        file = resolve_image(im["file_name"], roots)
        if file is None:
            skipped.append(Skipped(im["file_name"], f"{where}: image file not found: {im['file_name']}"))
            continue
        split = SPLIT_NAMES.get(str(im.get("split", "")).lower()) if im.get("split") else None
        out[im["id"]] = (file, split)
    return out


class CocoDetectionReader(BoxReader):
    id = "coco"
    title = "COCO detection JSON"
    description = ("A COCO instances file (images, annotations with bbox = [x, y, width, height] and category_id, "
                   "categories); image file names are relative to the JSON's folder (or its images/ folder, or the "
                   "root option).  Crowd regions (iscrowd = 1) are skipped.")
    options_help = {"root": "folder the image file names are relative to",
                    "classes": "list of category names to keep (boxes of other categories are skipped)"}

    def can_read(self, path: Path) -> bool:
        path = Path(path)
        if not (path.is_file() and path.suffix.lower() == ".json"):
            return False
        head = _sniff_json(path)
        return '"bbox"' in head or ('"images"' in head and '"caption"' not in head and '"sentences"' not in head)

    def scan(self, path: Path, options: dict) -> Scan:
        data = _load_json(path)
        skipped: list[Skipped] = []
        images = coco_images(path, data, options, skipped)
        cats = data.get("categories") if isinstance(data.get("categories"), list) else []
        names: dict = {}
        for c in cats:
            if isinstance(c, dict) and "id" in c:
                names[c["id"]] = str(c.get("name", c["id"]))
        dup = {n for n in names.values() if list(names.values()).count(n) > 1}
        names = {i: (f"{n} ({i})" if n in dup else n) for i, n in names.items()}
        ordered = [names[i] for i in sorted(names, key=lambda v: (str(type(v)), v))]
        keep = names_option(options.get("classes"))
        if keep:
            absent = [c for c in keep if c not in ordered]
            if absent:
                raise DataError(f"{path}: option classes names {', '.join(absent)}, not among the categories "
                                f"({', '.join(ordered)})")
        items = {i: _new_item(f, s, f"{path.name}: image id {i}") for i, (f, s) in images.items()}
        listed = {im.get("id") for im in data["images"] if isinstance(im, dict)}
        anns = data.get("annotations")
        if not isinstance(anns, list):
            raise DataError(f"{path}: no 'annotations' list (a COCO detection file lists its boxes there)")
        for k, a in enumerate(anns):
            where = f"{path.name}: annotations[{k}]" + (f" (id {a['id']})" if isinstance(a, dict) and "id" in a else "")
            if not isinstance(a, dict):
                skipped.append(Skipped(where, f"{where}: not an object"))
                continue
            item = items.get(a.get("image_id"))
            if item is None:
                if a.get("image_id") not in listed:
                    skipped.append(Skipped(where, f"{where}: image_id {a.get('image_id')!r} is not in 'images'"))
                continue  # its image was skipped already
            bbox = a.get("bbox")
            try:
                if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                    raise ValueError(f"bbox must be [x, y, width, height] (got {bbox!r})")
                x, y, w, h = (number(v, n) for v, n in zip(bbox, ("x", "y", "width", "height")))
            except ValueError as e:
                skipped.append(Skipped(item.ref, f"{where}: {e}"))
                continue
            box = [x, y, x + w, y + h]
            cat = a.get("category_id")
            if cat not in names:
                skipped.append(Skipped(item.ref, f"{where}: box {_fmt_box(box)}: unknown label (category_id {cat!r} "
                                                 "is not among the categories)"))
                continue
            if a.get("iscrowd"):
                skipped.append(Skipped(item.ref, f"{where}: box {_fmt_box(box)} '{names[cat]}': crowd region "
                                                 "(iscrowd = 1), not one object"))
                continue
            if (problem := _known(names[cat], keep)) is not None:
                skipped.append(Skipped(item.ref, f"{where}: box {_fmt_box(box)}: {problem}"))
                continue
            _add_box(item, box, names[cat], where)
        return Scan(list(items.values()), skipped, [], class_names=keep or ordered)


# --- Pascal VOC --------------------------------------------------------------------------------------------
def _voc_splits(root: Path) -> dict[str, str]:
    """image id -> split from ImageSets/Main/{train,val,test}.txt, when present."""
    out: dict[str, str] = {}
    folder = root / "ImageSets" / "Main"
    for split in ("train", "val", "test"):
        f = folder / f"{split}.txt"
        if f.is_file():
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip():
                    out.setdefault(line.split()[0], split)
    return out


class VocReader(BoxReader):
    id = "voc"
    title = "Pascal VOC folder"
    description = ("A Pascal VOC folder: Annotations/*.xml (one per image: filename, objects with name and bndbox "
                   "xmin/ymin/xmax/ymax, 1-based pixels) and the images in JPEGImages/ (or beside the XML); "
                   "ImageSets/Main/train.txt, val.txt, test.txt give the split when present.")
    options_help = {"classes": "list of class names to keep (objects with other names are skipped)",
                    "skip_difficult": "leave out objects marked difficult (default: false)"}

    @staticmethod
    def _annotations(path: Path) -> Path:
        return path / "Annotations" if (path / "Annotations").is_dir() else path

    def can_read(self, path: Path) -> bool:
        path = Path(path)
        if not path.is_dir():
            return False
        ann = path / "Annotations"
        return ann.is_dir() and any(f.suffix.lower() == ".xml" for f in ann.iterdir())

    def scan(self, path: Path, options: dict) -> Scan:
        ann_dir = self._annotations(path)
        classes = names_option(options.get("classes"))
        skip_difficult = str(options.get("skip_difficult", "")).lower() in ("1", "true", "yes")
        splits = _voc_splits(path)
        roots = [path / "JPEGImages", path / "images", ann_dir, path]
        items: list[Item] = []
        skipped: list[Skipped] = []
        xmls = [f for f in iter_files(ann_dir) if f.suffix.lower() == ".xml"]
        if not xmls:
            raise DataError(f"{path}: no .xml annotation files (expected {path / 'Annotations'}/*.xml)")
        for x in xmls:
            rel = x.relative_to(path)
            try:
                root = ET.parse(x).getroot()
            except ET.ParseError as e:
                skipped.append(Skipped(str(x), f"{rel}: not valid XML: {e}"))
                continue
            name = (root.findtext("filename") or "").strip()
            file = resolve_image(name, roots) if name else None
            if file is None:
                stem_hits = [f for r in roots if r.is_dir() for f in sorted(r.glob(x.stem + ".*"))
                             if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")]
                file = stem_hits[0] if stem_hits else None
            if file is None:
                skipped.append(Skipped(str(x), f"{rel}: image file not found: {name or x.stem + '.*'}"))
                continue
            item = _new_item(file, splits.get(x.stem), str(rel))
            for k, obj in enumerate(root.iter("object"), 1):
                where = f"{rel} object {k}"
                label = (obj.findtext("name") or "").strip()
                if skip_difficult and (obj.findtext("difficult") or "0").strip() == "1":
                    skipped.append(Skipped(item.ref, f"{where} '{label}': marked difficult (skip_difficult)"))
                    continue
                bb = obj.find("bndbox")
                try:
                    if bb is None:
                        raise ValueError("no bndbox")
                    xmin, ymin, xmax, ymax = (number(bb.findtext(t), t) for t in ("xmin", "ymin", "xmax", "ymax"))
                except ValueError as e:
                    skipped.append(Skipped(item.ref, f"{where} '{label}': {e}"))
                    continue
                box = [xmin - 1, ymin - 1, xmax, ymax]  # VOC pixels are 1-based and inclusive
                if (problem := _known(label, classes)) is not None:
                    skipped.append(Skipped(item.ref, f"{where}: box {_fmt_box(box)}: {problem}"))
                    continue
                _add_box(item, box, label, where)
            items.append(item)
        return Scan(items, skipped, [], class_names=classes)


def detection_readers() -> list[BoxReader]:
    return [CocoDetectionReader(), VocReader(), BoxCsvReader()]


@hookimpl
def tlstudio_dataset_readers():
    return detection_readers()
