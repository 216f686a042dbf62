"""The built-in readers (folder of class folders, CSV, NPZ, DICOM) and :func:`read_data`.

Registered as a plugin through the entry point ``builtin-readers`` (see pyproject.toml),
exactly as a third-party package would register its own readers.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import threading
import traceback
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError, RunStopped
from ..failures import is_third_party, plugin_failed
from ..hookspecs import hookimpl
from ..tasks.traits import task_traits
from .csvfile import LABEL_NAMES, PATH_NAMES, SPLIT_COLUMN_NAMES, SPLIT_NAMES, find_column, read_csv
from .groups import GROUP_COLUMNS as GROUP_NAMES
from .image import (DICOM_EXTENSIONS, IMAGE_EXTENSIONS, ImageDecodeError, _gray_to_rgb, _scale_to_uint8, is_dicom,
                    read_file, read_pil)
from .npzcheck import check_array_size as _check_array_size
from .npzcheck import npz_problem as _npz_problem
from .npzcheck import numbers_out_of_range as _numbers_out_of_range
from .report import Item, Skipped
from .sanity import label_problem
from .sanity import short as _short
from .store import CacheRequest
from .table import DatasetReader, ImageTable, Progress, Scan, ShouldStop, is_hidden, iter_files, natural_key

_WINDOW_HELP = {
    "window_center": "DICOM window centre for every DICOM image (with window_width); default: each file's own window",
    "window_width": "DICOM window width (with window_center)",
}


def _window(options: dict) -> list[float] | None:
    c, w = options.get("window_center"), options.get("window_width")
    if c is None and w is None:
        return None
    try:
        c, w = float(c), float(w)
    except (TypeError, ValueError):
        c = w = None
    if c is None or not w > 0:
        raise DataError(f"DICOM window: window_center and window_width must both be numbers, the width above 0 "
                        f"(got centre {options.get('window_center')!r}, width {options.get('window_width')!r})")
    return [c, w]


def _names(value) -> list[str] | None:
    """A list of class names from an option: a list, or one comma-separated string."""
    if not value:
        return None
    names = value.split(",") if isinstance(value, str) else value
    return [str(n).strip() for n in names if str(n).strip()] or None


def _checked_names(value, option: str) -> list[str] | None:
    names = _names(value)
    for n in names or []:
        problem = label_problem(n)
        if problem:
            raise DataError(f"option {option}: {problem}; give class names on one line, without control characters")
    return names


def _file_item(path: Path, label: str | None, window, split: str | None = None, where: str | None = None,
               sniff: bool = True) -> Item | None:
    """An item for an image or DICOM file; None for other files (when ``sniff``)."""
    ext = path.suffix.lower()
    dicom = ext in DICOM_EXTENSIONS or (ext not in IMAGE_EXTENSIONS and is_dicom(path))
    if not dicom and ext not in IMAGE_EXTENSIONS and sniff:
        return None
    meta = {"dicom": True, "window": window} if dicom else {}
    if where:
        meta["where"] = where
    return Item(os.path.abspath(path), label, split, meta)


def add_dicom_fields(items: list[Item]) -> None:
    """DICOM items get their patient (PatientID) as group, and a few header fields (sex, age,
    scanner, site ...) for reports by subgroup; a group from a CSV column is kept."""
    dicom = [it for it in items if it.meta.get("dicom")]
    if not dicom:
        return
    from .groups import dicom_fields
    from .table import parallel_map

    for it, fields in zip(dicom, parallel_map(lambda it: dicom_fields(it.ref), dicom)):
        if fields:
            if fields.get("PatientID") and not it.meta.get("group"):
                it.meta["group"] = fields["PatientID"]
            it.meta["fields"] = {**fields, **(it.meta.get("fields") or {})}


class _FileReader(DatasetReader):
    """Items are files; DICOM ones are decoded with the DICOM window of the options."""

    def decode(self, item: Item) -> tuple[np.ndarray, str]:
        return read_file(item.ref, dicom=item.meta.get("dicom", False), window=item.meta.get("window"))

    def load_image(self, item: Item) -> np.ndarray:
        return self.decode(item)[0]

    def decode_pil(self, item: Item):
        """A Pillow file as ('L' or 'RGB' image, mode) for the image cache; None for DICOM and
        for a subclass that decodes in its own way."""
        if item.meta.get("dicom", False) or getattr(self.decode, "__func__", None) is not _FileReader.decode:
            return None
        return read_pil(item.ref)


# --- folder of class folders -----------------------------------------------------------------
class FolderReader(_FileReader):
    id = "folder"
    title = "Folder of class folders"
    description = ("A folder with one sub-folder per class (root/cat/*.png, root/dog/*.jpg); images may lie "
                   "deeper inside a class folder.  DICOM files are recognised too.  A folder of images "
                   "without class folders gives unlabelled images (target-domain data).")
    options_help = dict(_WINDOW_HELP)
    catch_all = True

    def can_read(self, path: Path) -> bool:
        return Path(path).is_dir()

    def scan(self, path: Path, options: dict) -> Scan:
        if not path.is_dir():
            raise DataError(f"{path}: not a folder (the {self.id} reader expects a folder of class folders)")
        window = _window(options)
        items, warnings, skipped = [], [], []
        entries = sorted((p for p in path.iterdir() if not is_hidden(p.name)), key=lambda p: natural_key(p.name))
        for d in (p for p in entries if p.is_dir()):
            problem = label_problem(d.name)
            if problem:
                skipped.append(Skipped(str(d), f"class folder: {problem}; its images were left out (rename the folder)"))
                continue
            found = [it for f in iter_files(d) if (it := _file_item(f, d.name, window))]
            if not found:
                warnings.append(f"class folder '{d.name}' has no images: skipped")
            items += found
        loose = [it for f in entries if f.is_file() and (it := _file_item(f, None, window))]
        if loose and items:
            warnings.append(f"{len(loose):,} images lie directly in {path}, outside the class folders: ignored")
        elif loose:
            items = loose
            warnings.append(f"no class folders in {path}: its {len(loose):,} images are unlabelled" if len(loose) != 1
                            else f"no class folders in {path}: its one image is unlabelled")
        if not items:
            warnings.append(f"no images found in {path} (expected one folder per class, each holding images)")
        add_dicom_fields(items)
        return Scan(items, skipped, warnings=warnings)


class DicomReader(FolderReader):
    id = "dicom"
    title = "DICOM files in class folders"
    description = ("A folder with one sub-folder per class holding DICOM files (.dcm or any name).  Pixel "
                   "values are rescaled (modality LUT) and windowed: by the window you give, else each "
                   "file's own, else its full range.")
    catch_all = False

    def can_read(self, path: Path, sniff_files: int = 50) -> bool:
        """A folder whose files are mostly DICOM (one stray .dcm among images is the plain
        folder reader's, which reads DICOM files too)."""
        if not Path(path).is_dir():
            return False
        dicom = other = 0
        for n, f in enumerate(iter_files(Path(path))):
            if is_dicom(f):
                dicom += 1
            elif f.suffix.lower() in IMAGE_EXTENSIONS:
                other += 1
            if n >= sniff_files:
                break
        return dicom > other


class CsvReader(_FileReader):
    id = "csv"
    title = "CSV table"
    description = ("A CSV file with a column of image paths (relative to the CSV's folder, or absolute) and a "
                   "column of labels; an optional split column (train/val/test) gives the split.")
    options_help = {
        "path_column": "column of image paths (default: path, file, filename or image)",
        "label_column": "column of labels (default: label, class or target)",
        "split_column": "column of splits train/val/test (default: split, set or fold, when present)",
        "classes": "list of class names to keep (rows with other labels are skipped)",
        "root": "folder the image paths are relative to (default: the CSV's folder)",
        "group_column": "column of patients (or other groups kept in one split; default: patient, patient_id, "
                        "subject or group, when present)",
        **_WINDOW_HELP,
    }

    def can_read(self, path: Path) -> bool:
        return Path(path).is_file() and Path(path).suffix.lower() in (".csv", ".tsv")

    def scan(self, path: Path, options: dict) -> Scan:
        broken: list[tuple[int, str]] = []
        header, rows = read_csv(path, broken)
        pcol = find_column(path, header, options.get("path_column"), PATH_NAMES, "image path", "path_column")
        lcol = find_column(path, header, options.get("label_column"), LABEL_NAMES, "label", "label_column")
        scol = find_column(path, header, options.get("split_column"), SPLIT_COLUMN_NAMES, "split", "split_column")
        gcol = find_column(path, header, options.get("group_column"), GROUP_NAMES, "group", "group_column")
        fcols = [i for i in range(len(header)) if i not in (pcol, lcol, scol, gcol) and header[i]]
        root = path.parent / Path(options.get("root") or ".").expanduser()
        classes = _checked_names(options.get("classes"), "classes")
        window = _window(options)
        items, first_line = [], {}
        skipped = [Skipped(f"{path.name}:{n}", f"{path.name}:{n}: {why}") for n, why in broken]

        def cell(row: list[str], i: int | None) -> str:
            return row[i].strip() if i is not None and i < len(row) else ""

        for line, row in rows:
            where = f"{path.name}:{line}"
            raw, label, split_raw = cell(row, pcol), cell(row, lcol), cell(row, scol)
            if not raw:
                skipped.append(Skipped(where, f"{where}: no file name in column '{header[pcol]}'"))
                continue
            if "\n" in raw or "\r" in raw:
                skipped.append(Skipped(where, f"{where}: the file name holds a line break"))
                continue
            file = root / (raw.replace("\\", "/") if os.sep == "/" else raw)
            ref = os.path.abspath(file)
            split = SPLIT_NAMES.get(split_raw.lower())
            if ref in first_line:
                problem = f"listed again (first on line {first_line[ref]})"
            elif not os.path.isfile(ref):
                problem = f"file not found: {_short(raw, 120)}"
            elif not label:
                problem = "empty label"
            elif label_problem(label):
                problem = label_problem(label)
            elif classes and label not in classes:
                problem = f"unknown label '{_short(label, 60)}' (known: {_short(', '.join(classes), 200)})"
            elif split_raw and not split:
                problem = f"unknown split '{_short(split_raw, 40)}' (expected train, val or test)"
            else:
                first_line[ref] = line
                item = _file_item(file, label, window, split, where, sniff=False)
                if gcol is not None and cell(row, gcol):
                    item.meta["group"] = cell(row, gcol)
                if fcols:
                    item.meta["fields"] = {header[i]: cell(row, i) for i in fcols}
                items.append(item)
                continue
            skipped.append(Skipped(ref, f"{where}: {problem}"))

        train_labels = {it.label for it in items if it.split == "train"}
        if train_labels:
            unseen = [it for it in items if it.split in ("val", "test") and it.label not in train_labels]
            skipped += [Skipped(it.ref, f"{it.meta['where']}: unknown label: label '{it.label}' never occurs "
                                        "in the training split") for it in unseen]
            gone = {id(it) for it in unseen}
            items = [it for it in items if id(it) not in gone]
        warnings = [] if rows else [f"{path}: the CSV has a header but no rows"]
        given = sum(bool(it.split) for it in items)
        if 0 < given < len(items):
            warnings.append(f"the split column '{header[scol]}' is empty for {len(items) - given:,} rows: "
                            "a split of its own is made (stratified) unless every row has one")
        add_dicom_fields(items)
        return Scan(items, skipped, warnings, class_names=classes)


# --- NPZ -------------------------------------------------------------------------------------
_NPZ_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_NPZ_PLAIN = (("images", "labels"), ("x", "y"), ("X", "y"), ("X", "Y"))


def _npz_pairs(keys: set[str]) -> list[tuple[str | None, str, str | None]]:
    """(split, images key, labels key) found: MedMNIST train_images/..., Keras x_train/..., or plain."""
    pairs = [(split, ik, lk if lk in keys else None)
             for alias, split in _NPZ_SPLITS.items()
             for ik, lk in ((f"{alias}_images", f"{alias}_labels"), (f"x_{alias}", f"y_{alias}"))
             if ik in keys]
    return pairs or [(None, ik, lk if lk in keys else None) for ik, lk in _NPZ_PLAIN if ik in keys][:1]


class NpzReader(DatasetReader):
    id = "npz"
    title = "NumPy NPZ arrays"
    description = ("An .npz file with images and labels: MedMNIST style (train_images, train_labels, val_*, "
                   "test_*: the split is kept), Keras style (x_train, y_train, ...) or plain images/labels. "
                   "Images (N, H, W) grey or (N, H, W, 3) colour.")
    options_help = {"class_names": "list of class names, index -> name (default: the label numbers)"}

    def __init__(self):
        self._lock = threading.Lock()
        self._cached: tuple | None = None  # (file, size, mtime_ns, {key: array}, {key: (lo, hi) or None})

    def can_read(self, path: Path) -> bool:
        return Path(path).is_file() and Path(path).suffix.lower() == ".npz"

    def _load(self, file: str, image_keys: list[str], label_keys: list[str] = ()) -> tuple[dict, dict]:
        """The arrays (images channel-last) and each image array's value range; the last file is cached."""
        st = os.stat(file)
        keys = [*image_keys, *label_keys]
        with self._lock:
            c = self._cached
            if c and c[:3] == (file, st.st_size, st.st_mtime_ns) and all(k in c[3] for k in keys):
                return c[3], c[4]
            try:
                with np.load(file, allow_pickle=False) as z:
                    for k in keys:
                        _check_array_size(z, k, file)
                    arrays = {k: z[k] for k in keys}
            except DataError:
                raise
            except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as e:
                raise DataError(f"{file}: {_npz_problem(e)}") from None
            except MemoryError:
                raise DataError(f"{file}: not enough memory to read its arrays") from None
            ranges = {}
            for k in image_keys:
                arrays[k] = _channels_last(arrays[k], file, k)
                ranges[k] = _value_range(arrays[k])
            self._cached = (file, st.st_size, st.st_mtime_ns, arrays, ranges)
            return arrays, ranges

    def scan(self, path: Path, options: dict) -> Scan:
        file = os.path.abspath(path)
        try:
            with open(file, "rb") as f:
                head = f.read(4)
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
        if not head:
            raise DataError(f"{path}: empty file (0 bytes)")
        if head not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise DataError(f"{path}: not an NPZ file (an NPZ is a zip archive of NumPy arrays, as numpy.savez writes)")
        try:
            with np.load(file, allow_pickle=False) as z:
                keys = set(z.files)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise DataError(f"{path}: {_npz_problem(e)}") from None
        pairs = _npz_pairs(keys)
        if not pairs:
            raise DataError(f"{path}: no image array found (expected train_images/train_labels, x_train/y_train or "
                            f"images/labels); keys found: {', '.join(sorted(keys)) or 'none'}")
        arrays, _ = self._load(file, [ik for _, ik, _ in pairs], [lk for _, _, lk in pairs if lk])
        names = _checked_names(options.get("class_names"), "class_names")
        items, skipped, split_given = [], [], all(s for s, _, _ in pairs)
        all_labels = {lk: _npz_labels(arrays[lk], len(arrays[ik]), path, lk) for _, ik, lk in pairs if lk}
        numbers = [v for labels in all_labels.values() for v in labels if isinstance(v, int)]
        out_of_range = _numbers_out_of_range(numbers, names)
        for split, ik, lk in pairs:
            labels = all_labels[lk] if lk else [None] * len(arrays[ik])
            prefix = split if split_given else ik
            for i, lab in enumerate(labels):
                item = Item(f"{prefix}/{i}", None, split, {"file": file, "key": ik, "index": i})
                problem = out_of_range.get(lab, "") if isinstance(lab, int) else (label_problem(lab) if lab else "")
                if problem:
                    skipped.append(Skipped(item.ref, f"{lk}[{i}]: {problem}"))
                    continue
                if lab is not None and names and isinstance(lab, int):
                    lab = names[lab]
                item.label = None if lab is None else str(lab)
                items.append(item)
        warnings = [f"{path}: '{ik}' has no labels array ('{lk or 'labels'}' missing): its images are unlabelled"
                    for _, ik, lk in pairs if not lk]
        return Scan(items, skipped, warnings, class_names=names)

    def _pixels(self, item: Item) -> tuple[np.ndarray, tuple | None]:
        arrays, ranges = self._load(item.meta["file"], [item.meta["key"]])
        return arrays[item.meta["key"]][item.meta["index"]], ranges[item.meta["key"]]

    def decode(self, item: Item) -> tuple[np.ndarray, str]:
        a, rng = self._pixels(item)
        if a.dtype.kind == "f":
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise ImageDecodeError(item.ref, f"{bad:,} of its {a.size:,} pixel values are NaN or infinite: "
                                                 "not an image")
        mode = "L" if a.ndim == 2 or a.shape[2] == 1 else "RGB"
        if rng is not None:
            mode += f" ({a.dtype})"
            a = _scale_to_uint8(a, *rng)
        a = a.reshape(a.shape[:2]) if a.ndim == 2 or a.shape[2] == 1 else a[..., :3]
        return (_gray_to_rgb(a) if a.ndim == 2 else np.ascontiguousarray(a)), mode

    def load_image(self, item: Item) -> np.ndarray:
        return self.decode(item)[0]

    def stamp(self, item: Item):
        return hashlib.blake2b(np.ascontiguousarray(self._pixels(item)[0]).tobytes(), digest_size=8).hexdigest()


def _channels_last(a: np.ndarray, file: str, key: str) -> np.ndarray:
    if a.ndim == 4 and a.shape[-1] not in (1, 3, 4) and a.shape[1] in (1, 3):
        a = np.moveaxis(a, 1, -1)  # (N, C, H, W) as PyTorch writes it
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] in (1, 3, 4))) or a.dtype.kind not in "uifb":
        raise DataError(f"{file}: images '{key}' are a {a.dtype} array of shape {a.shape}: "
                        "expected (N, H, W) grey or (N, H, W, 3) colour numbers")
    return a


def _value_range(a: np.ndarray) -> tuple[float, float] | None:
    """How to map the array to 0..255: None for uint8; 0..1 for bool and floats in [0, 1];
    else the whole array's min..max of its finite values (relative brightness between images
    is kept; an image holding NaN or infinity is refused when decoded)."""
    if a.dtype == np.uint8:
        return None
    if a.dtype == bool:
        return 0.0, 1.0
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    return (0.0, 1.0) if a.dtype.kind == "f" and lo >= 0 and hi <= 1 else (lo, hi)


def _npz_labels(lab: np.ndarray, n: int, path: Path, key: str) -> list:
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise DataError(f"{path}: labels '{key}' have shape {lab.shape}: image classification takes one label per "
                        "image; multi-label data is not supported")
    if len(lab) != n:
        raise DataError(f"{path}: {len(lab)} labels in '{key}' for {n} images")
    if lab.dtype.kind in "US":
        return [str(v).strip() or None for v in lab]
    if lab.dtype.kind in "iub" or (lab.dtype.kind == "f" and np.all(np.mod(lab, 1) == 0)):
        return [int(v) for v in lab]
    raise DataError(f"{path}: labels '{key}' are not class numbers or names ({lab.dtype})")


# --- choosing a reader -----------------------------------------------------------------------
def builtin_readers() -> list[DatasetReader]:
    return [FolderReader(), CsvReader(), NpzReader(), DicomReader()]


def has_builtin_readers(task: str) -> bool:
    """Whether core's own readers read data of ``task`` (before any plugin has loaded)."""
    return any(r.task == task for r in builtin_readers())


@hookimpl
def tlstudio_dataset_readers():
    return builtin_readers()


def read_data(source: str | Path, fmt: str = "auto", options: dict | None = None, readers: list | None = None,
              progress: Progress = None, should_stop: ShouldStop = None,
              task: str | None = None, cache: CacheRequest | None = None) -> ImageTable:
    """Read and validate a data source with the reader ``fmt`` (an id) or the first that
    recognises it ("auto": the plain folder reader last).  With ``task``, only readers of
    that task are considered; without ``readers``, the built-in image readers (and the text
    readers for a text task) are.  ``cache`` (a reader that accepts it): decode each file
    once through the decode store, and fill the image cache at ``cache.size`` meanwhile."""
    source = Path(source).expanduser().absolute()
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if readers is None:
        readers = builtin_readers()
        if task is not None and task_traits(task).texts:
            from .text import text_readers

            readers += text_readers()
    readers = [r for r in readers if task is None or getattr(r, "task", "image-classification") == task]
    ids = ", ".join(sorted(r.id for r in readers))
    if fmt in ("auto", "", None):
        candidates = [r for r in sorted(readers, key=lambda r: bool(getattr(r, "catch_all", False)))
                      if _recognises(r, source)]
        if not candidates:
            expected = (task_traits(task).sources if task is not None else "") or "; ".join(r.title for r in readers)
            raise DataError(f"{source}: no reader recognises this data (readers: {ids}); expected {expected}")
    else:
        candidates = [r for r in readers if r.id == fmt][:1]
        if not candidates:
            raise DataError(f"unknown data format '{fmt}' (known: auto, {ids})")
    first_error: DataError | None = None
    for reader in candidates:
        try:
            return _read_with(reader, source, options, progress, should_stop, cache)
        except (RunStopped, MemoryError):
            raise
        except DataError as e:
            # a third-party reader that took the data and could not read it: the next one is tried
            if not (is_third_party(reader) and len(candidates) > 1):
                raise
            first_error = first_error or e
        except Exception as e:
            from ..failures import plain_message

            err = DataError(f"{source}: the {reader.id} reader failed: {plain_message(e)}")
            if not is_third_party(reader):
                raise err from e
            plugin_failed(reader, f"data reader '{reader.id}' raised {type(e).__name__} reading {source}: "
                                  f"{plain_message(e)}; the next reader was tried", traceback.format_exc())
            first_error = first_error or err
    raise first_error  # every reader that recognised the data failed


def _recognises(reader, source: Path) -> bool:
    try:
        return bool(reader.can_read(source))
    except Exception as e:  # a plugin's broken sniff must not stop the others
        plugin_failed(reader, f"data reader '{getattr(reader, 'id', '?')}': can_read raised {type(e).__name__}",
                      traceback.format_exc())
        return False


def _read_with(reader, source: Path, options, progress, should_stop, cache) -> ImageTable:
    # a third-party read() may not take progress and should_stop
    params = inspect.signature(reader.read).parameters
    extra = {"progress": progress, "should_stop": should_stop} if "should_stop" in params else {}
    if cache is not None and "cache" in params:
        extra["cache"] = cache
    return reader.read(source, options, **extra)
