"""The reader base class, the table it returns, and the validation every read goes through."""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import DataError, RunStopped
from ..io import stable_hash
from .image import ImageDecodeError
from .report import Item, Skipped, ValidationReport
from .store import CacheRequest, DecodeStore, check_rgb, pixel_hash

Progress = Callable[[int, int], None] | None
ShouldStop = Callable[[], bool] | None

FEW_IMAGES = 10  # a class with fewer usable images gets a warning
IMBALANCE = 10.0  # largest/smallest class ratio that earns a warning


def natural_key(name: str) -> list:
    """Sort "class2" before "class10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def workers() -> int:
    """Decode threads: one per core that other programs leave free (see :mod:`tlstudio.core.engine.cpu`)."""
    from ..engine.cpu import decode_workers

    return decode_workers()


def parallel_map(fn: Callable, seq: Sequence, progress: Progress = None, should_stop: ShouldStop = None,
                 every: int = 50) -> Iterator:
    """``fn`` over ``seq`` in a thread pool, results in order.  ``progress(done, total)`` and
    ``should_stop()`` (raises :class:`RunStopped`) are called every ``every`` items.  A window
    of ``4 x threads`` items is in flight: the pool never idles at a chunk boundary, and memory
    does not grow with ``len(seq)``."""
    total = len(seq)
    if progress:
        progress(0, total)
    n = workers()
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="tlstudio-data") as pool:
        it = iter(seq)
        done = 0
        while True:
            while len(pending) < 4 * n:
                nxt = next(it, _END)
                if nxt is _END:
                    break
                pending.append(pool.submit(fn, nxt))
            if not pending:
                break
            yield pending.popleft().result()
            done += 1
            if done % every == 0 or done == total:
                if progress:
                    progress(done, total)
                if should_stop and should_stop() and done < total:
                    for f in pending:
                        f.cancel()
                    raise RunStopped()


_END = object()


@dataclass
class Scan:
    """What a reader finds before decoding: candidate items, and what it already rejected."""

    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    class_names: list[str] | None = None  # class order the source defines (else natural sort)


class DatasetReader:
    """Base class of data readers; third-party readers subclass it.

    A subclass sets ``id``, ``title``, ``description`` and implements :meth:`can_read`,
    :meth:`scan` (list the items, cheaply) and :meth:`load_image` (decode one item).
    :meth:`read` then decodes every item to validate it and fills the report.  A reader
    that wants full control may override :meth:`read` instead.
    """

    id: str = ""
    title: str = ""
    task: str = "image-classification"
    description: str = ""
    options_help: dict[str, str] = {}  # option -> what it does (shown to the user)
    catch_all: bool = False  # tried last by format "auto" (the plain folder reader)

    def can_read(self, path: Path) -> bool:
        """A cheap sniff (no full decode): is ``path`` something this reader understands?"""
        return False

    def scan(self, path: Path, options: dict) -> Scan:
        raise NotImplementedError(f"the {self.id or type(self).__name__} reader implements neither scan() nor read()")

    def load_image(self, item: Item) -> np.ndarray:
        """Decode one item: H x W x 3 uint8 RGB; raise :class:`DataError` naming ``item.ref``."""
        raise NotImplementedError

    def decode(self, item: Item) -> tuple[np.ndarray, str]:
        """Decode one item and name its original pixel format (for the report's sizes)."""
        return self.load_image(item), item.meta.get("mode", "RGB")

    def stamp(self, item: Item):
        """What changes when the item's content changes (default: file size and mtime)."""
        try:
            st = os.stat(item.ref)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def read(self, path: Path, options: dict | None = None, progress: Progress = None,
             should_stop: ShouldStop = None, cache: CacheRequest | None = None) -> "ImageTable":
        """Scan ``path`` and decode every item; unusable ones go to ``report.skipped``.  With
        ``cache`` the decode store remembers each file's result (and, with ``cache.size``, its
        resized pixels), so that a file is decoded once (see :mod:`tlstudio.core.data.store`)."""
        path, options = Path(path), dict(options or {})
        scan = self.scan(path, options)
        unknown = sorted(set(options) - set(self.options_help)) if self.options_help else []
        if unknown:
            scan.warnings.insert(0, f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                                    f"for the {self.id} reader (known: {', '.join(self.options_help)}): ignored")
        return validate(self, path, scan, options, progress, should_stop, cache)


class ImageTable:
    """The items a reader found usable, their classes, and the validation report."""

    def __init__(self, reader: DatasetReader, source: Path, items: list[Item], class_names: list[str],
                 report: ValidationReport, options: dict | None = None):
        self.reader, self.reader_id = reader, reader.id
        self.source, self.items, self.class_names = Path(source), items, class_names
        self.report, self.options = report, dict(options or {})
        self._index = {c: i for i, c in enumerate(class_names)}
        self._fingerprint: str | None = None
        # where the decode store holds these items (set by validation with a cache request)
        self.store: DecodeStore | None = None
        self.store_keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<ImageTable {self.reader_id} {self.source}: {len(self)} items, classes {self.class_names}>"

    @property
    def has_given_split(self) -> bool:
        """True when every item carries a split from the source."""
        return bool(self.items) and all(it.split for it in self.items)

    def load_image(self, i: int) -> np.ndarray:
        item = self.items[i]
        try:
            return check_rgb(self.reader.load_image(item), item.ref)
        except DataError:
            raise
        except Exception as e:  # a third-party reader's surprise
            raise DataError(f"{item.ref}: cannot load image: {type(e).__name__}: {e}") from e

    def labels(self) -> np.ndarray:
        """Class index per item (into ``class_names``), -1 where unlabelled."""
        return np.array([self._index.get(it.label, -1) for it in self.items], dtype=np.int64)

    def fingerprint(self) -> str:
        """Cheap and stable; changes when an item, a label, a file or the options change
        (computed once per table: a table is what was read at one moment)."""
        if self._fingerprint is None:
            self._fingerprint = stable_hash(self.reader_id, self.options,
                                            [(it.ref, it.label, self.reader.stamp(it)) for it in self.items])
        return self._fingerprint


# --- validation ------------------------------------------------------------------------------
def _probe(reader: DatasetReader, item: Item) -> tuple | str:
    """Decode one item: (width, height, mode, pixel hash), or the reason it is unusable."""
    try:
        arr, mode = reader.decode(item)
        check_rgb(arr, item.ref)
    except ImageDecodeError as e:
        return e.reason
    except DataError as e:
        return str(e)
    except MemoryError:
        return "not enough memory to decode this image"
    except Exception as e:  # never let one file stop the whole read
        return f"cannot read: {type(e).__name__}: {e}"
    return arr.shape[1], arr.shape[0], mode, pixel_hash(arr)


def _sizes(probes: list[tuple]) -> dict:
    if not probes:
        return {}
    w = np.array([p[0] for p in probes])
    h = np.array([p[1] for p in probes])
    modes = Counter(p[2] for p in probes)
    return {"min_width": int(w.min()), "max_width": int(w.max()), "min_height": int(h.min()),
            "max_height": int(h.max()), "mean_width": round(float(w.mean()), 1),
            "mean_height": round(float(h.mean()), 1), "modes": dict(sorted(modes.items()))}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def class_warnings(counts: dict[str, int]) -> list[str]:
    out = []
    if len(counts) == 1:
        out.append(f"only one class ('{next(iter(counts))}'): at least two are needed to train")
    out += [f"class '{c}' has only {_plural(n, 'image')}" for c, n in counts.items() if n < FEW_IMAGES]
    if len(counts) > 1:
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        if counts[big] >= IMBALANCE * counts[small]:
            out.append(f"classes are imbalanced: '{big}' has {counts[big]:,} images, '{small}' {counts[small]:,} "
                       "(consider class balance in the training settings)")
    return out


def _store_probes(reader: DatasetReader, source: Path, scan: Scan, cache: CacheRequest, progress: Progress,
                  should_stop: ShouldStop) -> tuple[list, DecodeStore | None, list[str] | None]:
    """Probes through the decode store (decoding only what it does not hold; with a size, the
    pixels are written in the same pass); without a writable store, plain decoding."""
    try:
        store = DecodeStore.open(cache.root, reader, source)
        keys = store.keys(reader, scan.items)
        probes, _ = store.fill(reader, scan.items, cache.size, progress=progress, should_stop=should_stop, keys=keys)
        return probes, store, keys
    except DataError as e:  # an unwritable cache folder: validate without it (the run says why later)
        scan.warnings.append(f"{e}: every image is decoded again when it is cached")
    return list(parallel_map(lambda it: _probe(reader, it), scan.items, progress, should_stop)), None, None


def validate(reader: DatasetReader, source: Path, scan: Scan, options: dict, progress: Progress = None,
             should_stop: ShouldStop = None, cache: CacheRequest | None = None) -> ImageTable:
    """Decode every scanned item (thread pool; through the decode store with ``cache``), drop
    the unusable ones, write the report."""
    refs = Counter(it.ref for it in scan.items)
    if any(n > 1 for n in refs.values()):
        raise DataError(f"{source}: the {reader.id} reader listed some items twice "
                        f"(e.g. {next(r for r, n in refs.items() if n > 1)})")
    store = keys = None
    if cache is not None:
        probes, store, keys = _store_probes(reader, source, scan, cache, progress, should_stop)
    else:
        probes = list(parallel_map(lambda it: _probe(reader, it), scan.items, progress, should_stop))
    items, ok, skipped, kept = [], [], list(scan.skipped), []
    for k, (item, probe) in enumerate(zip(scan.items, probes)):
        if isinstance(probe, str):
            where = item.meta.get("where")
            skipped.append(Skipped(item.ref, f"{where}: {probe}" if where else probe))
        else:
            items.append(item)
            ok.append(probe)
            kept.append(k)

    found = Counter(it.label for it in items if it.label is not None)
    wanted = scan.class_names or sorted({it.label for it in scan.items if it.label is not None}, key=natural_key)
    warnings = list(scan.warnings)
    for c in wanted:
        if not found.get(c):
            n = sum(it.label == c for it in scan.items)
            warnings.append(f"class '{c}': all {_plural(n, 'image')} were skipped: class left out" if n
                            else f"class '{c}' has no images: left out")
    class_names = [c for c in wanted if found.get(c)]
    class_names += sorted(set(found) - set(class_names), key=natural_key)
    counts = {c: found[c] for c in class_names}
    warnings += class_warnings(counts)

    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(ok):
        groups[p[3]].append(i)
    dup_groups = [g for g in groups.values() if len(g) > 1]
    conflicts = [g for g in dup_groups if len({items[i].label for i in g}) > 1]
    if conflicts:
        eg = ", ".join(f"{items[i].ref} ({items[i].label})" for i in conflicts[0][:3])
        warnings.append(f"{_plural(len(conflicts), 'group')} of identical images carry different labels, e.g. {eg}")

    report = ValidationReport(
        source=str(source), reader=reader.id, counts=counts, skipped=skipped,
        duplicates=[[items[i].ref for i in g] for g in dup_groups], sizes=_sizes(ok), warnings=warnings,
        unlabelled=sum(it.label is None for it in items))
    table = ImageTable(reader, source, items, class_names, report, options)
    if store is not None:
        table.store, table.store_keys = store, [keys[k] for k in kept]
    return table


def check_trainable(table: ImageTable) -> None:
    """Raise :class:`DataError` when the table cannot train a classifier."""
    where = table.source
    if not table.items:
        reasons = table.report.skipped
        extra = f" ({_plural(len(reasons), 'file')} skipped, e.g. {reasons[0].ref}: {reasons[0].reason})" if reasons else ""
        raise DataError(f"no usable images found in {where}{extra}")
    counts = table.report.counts or dict(Counter(it.label for it in table.items if it.label is not None))
    if not counts:
        raise DataError(f"the images in {where} carry no labels: a classifier needs labelled images")
    if len(counts) < 2:
        raise DataError(f"only one class ('{next(iter(counts))}') found in {where}: at least two are needed")
    few = [f"'{c}' ({n})" for c, n in counts.items() if n < 2]
    if few:
        raise DataError(f"class{'es' if len(few) > 1 else ''} {', '.join(few)} in {where} "
                        f"{'have' if len(few) > 1 else 'has'} fewer than two images: each class needs at least two")


def iter_files(root: Path) -> Iterable[Path]:
    """Files under ``root`` (recursive, sorted, following links without loops), hidden ones left out."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted((d for d in dirnames if not is_hidden(d)), key=natural_key)
        for f in sorted(filenames, key=natural_key):
            if not is_hidden(f):
                yield Path(dirpath) / f


def is_hidden(name: str) -> bool:
    """Hidden files and folders, and the litter of other systems."""
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"}


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the image files inside them (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                          and not f.name.startswith("."))
        else:
            out.append(p)
    return out
