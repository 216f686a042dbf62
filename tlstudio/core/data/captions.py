"""Image-captioning data: COCO captions JSON (and the Karpathy-split JSON of Flickr8k/30k
and COCO) and CSV tables of image, caption.  An image may have several captions (one row
or annotation each).  Registered through the ``tlstudio_dataset_readers`` hook (entry
point ``caption-readers``) with ``task = "captioning"``."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import DataError
from ..hookspecs import hookimpl
from .annotations import AnnotatedReader, image_roots, resolve_image
from .boxes import _X1, _header_line, _load_json, _sniff_json, coco_images
from .csvfile import PATH_NAMES, SPLIT_NAMES, find_column, read_csv
from .report import Item, Skipped
from .table import Scan

_CAPTION = ("caption", "captions", "text", "sentence", "description", "comment")
_SPLIT = ("split", "set", "subset", "fold")
_WORD = re.compile(r"\w", re.UNICODE)


class CaptionReader(AnnotatedReader):
    task = "captioning"
    annotation = "caption"

    def check(self, item: Item, width: int, height: int) -> list[Skipped]:
        keep, out = [], []
        for text, where in zip(item.meta["captions"], item.meta["caption_where"]):
            text = " ".join(str(text).split())
            if not text:
                out.append(Skipped(item.ref, f"{where}: empty caption"))
            elif not _WORD.search(text):
                out.append(Skipped(item.ref, f"{where}: caption {text!r} has no words"))
            else:
                keep.append(text)
        item.meta["captions"] = keep
        item.meta.pop("caption_where", None)
        return out


def _new_item(file: Path, split: str | None, where: str) -> Item:
    return Item(os.path.abspath(file), None, split, {"captions": [], "caption_where": [], "where": where})


class CaptionCsvReader(CaptionReader):
    id = "captions-csv"
    title = "CSV of captions"
    description = ("A CSV with one row per caption: image, caption; an image with several captions appears on "
                   "several rows.  An optional split column (train/val/test) gives the split.")
    options_help = {
        "root": "folder the image paths are relative to (default: the CSV's folder, then its images/ folder)",
        "path_column": "column of image paths (default: image, path, file or filename)",
        "caption_column": "column of captions (default: caption, text or sentence)",
    }

    def can_read(self, path: Path) -> bool:
        path = Path(path)
        if not (path.is_file() and path.suffix.lower() in (".csv", ".tsv")):
            return False
        cols = set(_header_line(path))
        return any(c in cols for c in _CAPTION) and not any(c in cols for c in _X1)

    def scan(self, path: Path, options: dict) -> Scan:
        header, rows = read_csv(path)
        pcol = find_column(path, header, options.get("path_column"), PATH_NAMES, "image path", "path_column")
        ccol = find_column(path, header, options.get("caption_column"), _CAPTION, "caption", "caption_column")
        scol = find_column(path, header, None, _SPLIT, "split", "split_column")
        roots = image_roots(path, options)
        items: dict[str, Item] = {}
        missing: dict[str, list[int]] = {}
        skipped: list[Skipped] = []

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
            key = os.path.abspath(file)
            split_raw = cell(row, scol)
            if key not in items:
                items[key] = _new_item(file, SPLIT_NAMES.get(split_raw.lower()) if split_raw else None, where)
            items[key].meta["captions"].append(cell(row, ccol))
            items[key].meta["caption_where"].append(where)
        for name, lines in missing.items():
            shown = ", ".join(map(str, lines[:5])) + (" ..." if len(lines) > 5 else "")
            skipped.append(Skipped(name, f"{path.name}: image file not found: {name} (line{'s' if len(lines) > 1 else ''} {shown})"))
        return Scan(list(items.values()), skipped, [] if rows else [f"{path}: the CSV has a header but no rows"])


class CocoCaptionsReader(CaptionReader):
    id = "coco-captions"
    title = "COCO captions JSON"
    description = ("A COCO captions file (images with id and file_name, annotations with image_id and caption), or "
                   "a Karpathy-split file (images with filename, optional filepath and split, and sentences with "
                   "raw text) as used for Flickr8k/30k and COCO.  File names are relative to the JSON's folder (or "
                   "its images/ folder, or the root option).")
    options_help = {"root": "folder the image file names are relative to"}

    def can_read(self, path: Path) -> bool:
        path = Path(path)
        if not (path.is_file() and path.suffix.lower() == ".json"):
            return False
        head = _sniff_json(path)
        return ('"caption"' in head or '"sentences"' in head) and '"bbox"' not in head

    def scan(self, path: Path, options: dict) -> Scan:
        data = _load_json(path)
        if isinstance(data, dict) and isinstance(data.get("images"), list) and any(
                isinstance(im, dict) and "sentences" in im for im in data["images"][:50]):
            return self._karpathy(path, data, options)
        skipped: list[Skipped] = []
        images = coco_images(path, data, options, skipped)
        items = {i: _new_item(f, s, f"{path.name}: image id {i}") for i, (f, s) in images.items()}
        listed = {im.get("id") for im in data["images"] if isinstance(im, dict)}
        anns = data.get("annotations")
        if not isinstance(anns, list):
            raise DataError(f"{path}: no 'annotations' list (a COCO captions file lists its captions there)")
        for k, a in enumerate(anns):
            where = f"{path.name}: annotations[{k}]"
            if not isinstance(a, dict) or "caption" not in a:
                skipped.append(Skipped(where, f"{where}: an annotation needs 'image_id' and 'caption'"))
                continue
            item = items.get(a.get("image_id"))
            if item is None:
                if a.get("image_id") not in listed:
                    skipped.append(Skipped(where, f"{where}: image_id {a.get('image_id')!r} is not in 'images'"))
                continue
            item.meta["captions"].append(a["caption"] if isinstance(a["caption"], str) else "")
            item.meta["caption_where"].append(where)
        return Scan(list(items.values()), skipped, [])

    def _karpathy(self, path: Path, data: dict, options: dict) -> Scan:
        roots = image_roots(path, options)
        items, skipped = [], []
        for k, im in enumerate(data["images"]):
            where = f"{path.name}: images[{k}]"
            name = im.get("filename") if isinstance(im, dict) else None
            if not isinstance(name, str):
                skipped.append(Skipped(where, f"{where}: an image entry needs 'filename'"))
                continue
            rel = f"{im['filepath']}/{name}" if im.get("filepath") else name
            file = resolve_image(rel, roots) or resolve_image(name, roots)
            if file is None:
                skipped.append(Skipped(rel, f"{where}: image file not found: {rel}"))
                continue
            split = str(im.get("split", "")).lower()
            item = _new_item(file, "train" if split == "restval" else SPLIT_NAMES.get(split), where)
            for j, s in enumerate(im.get("sentences") or []):
                raw = s.get("raw") if isinstance(s, dict) else s
                if raw is None and isinstance(s, dict) and isinstance(s.get("tokens"), list):
                    raw = " ".join(map(str, s["tokens"]))
                item.meta["captions"].append(raw if isinstance(raw, str) else "")
                item.meta["caption_where"].append(f"{where} sentence {j + 1}")
            items.append(item)
        return Scan(items, skipped, [])


def caption_readers() -> list[CaptionReader]:
    return [CocoCaptionsReader(), CaptionCsvReader()]


@hookimpl
def tlstudio_dataset_readers():
    return caption_readers()
