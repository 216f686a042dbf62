"""Each image file decoded once: the decode store behind validation and the image cache.

For one data source, the store keeps per file (identified by its reference, the reader's
stamp — size and modification time for files — and the reader's decode settings such as a
DICOM window) what decoding it gave: width, height, pixel format and a hash of the pixels,
or the reason it cannot be used; and for each image size a run asks for, the image resized
to that size.  Validation and the image cache read it, so:

- the first read of a folder decodes each file once, in parallel over the free cores,
  validating it and writing its resized pixels in the same pass;
- a stopped or killed build continues where it stopped (every finished chunk is recorded);
- a later read of the same files decodes nothing; a folder that grew decodes only its new
  files; changing a CSV's labels or split decodes nothing;
- memory stays flat: pixels go straight to a file (``os.pwrite``), and training reads them
  through a memory map.

Layout, under ``<cache>/decoded/<source key>/``::

    records.jsonl       one JSON line per finished chunk: [[row, key, probe], ...]
    pixels-<S>.u8       row r's S x S x 3 uint8 image at byte r * S * S * 3 (no header)
    pixels-<S>.rows     rows whose pixels are written (uint32), appended after the pixels
    lock                held by the process that writes (filelock)
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..errors import DataError, RunStopped
from ..io import stable_hash
from .image import ImageDecodeError, resize_image

Probe = tuple | str  # (width, height, mode, pixel hash) or the reason the item is unusable
STORE_VERSION = "decoded-v1"
CHUNK_SECONDS = 1.0  # a finished chunk is recorded at least this often (what a killed build keeps)


class CacheRequest(NamedTuple):
    """Where the decode store lives, and the image size to fill while validating (None: validate only)."""

    root: Path
    size: int | None = None


def _equal_channels(arr: np.ndarray) -> bool:
    """An H x W x 3 image whose three channels are equal (grey content); colour answers at row 0."""
    first = arr[:1]
    if not ((first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()):
        return False
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def pixel_hash(arr: np.ndarray, grey: bool | None = None) -> str:
    """The hash duplicates are found by: equal pixels give equal hashes.  ``arr`` is an
    H x W x 3 image, or an H x W grey plane (the same hash as that plane in three equal
    channels); a grey image hashes one plane, so it costs a third.  SHA-256 (hardware
    accelerated on current CPUs), without copying a contiguous array."""
    if arr.ndim == 3 and (grey if grey is not None else _equal_channels(arr)):
        arr = arr[..., 0]
    buf = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    digest = hashlib.sha256(buf.data)
    digest.update(repr((arr.shape[0], arr.shape[1], arr.ndim)).encode())
    return digest.hexdigest()[:32]


def decode_reduced(reader, item, size: int | None, decode: Callable | None = None) -> tuple[tuple, np.ndarray | None]:
    """Decode ``item`` once: its probe (width, height, mode, pixel hash) and, with ``size``,
    the image resized as :func:`resize_image` resizes it (the same pixels).  A reader that can
    give a Pillow image (``decode_pil``) skips the round trip through an array; grey images
    are hashed and resized as one plane."""
    pil = getattr(reader, "decode_pil", None) if decode is None else None
    got = pil(item) if pil is not None else None
    if got is not None:
        im, mode = got
        plane = np.asarray(im)
        probe = (im.width, im.height, mode, pixel_hash(plane))
        small = None
        if size:
            small = plane if im.size == (size, size) else np.asarray(
                im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
            small = small if small.ndim == 3 else np.repeat(small[..., None], 3, axis=2)
        return probe, small
    arr, mode = (decode or reader.decode)(item)
    check_rgb(arr, item.ref)
    grey = _equal_channels(arr)
    probe = (arr.shape[1], arr.shape[0], mode, pixel_hash(arr, grey))
    small = None
    if size:
        if grey and arr.shape[:2] != (size, size):  # a third of the work (a 4k scan: a third of the memory)
            plane = np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., 0])).resize(
                (size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
            small = np.repeat(plane[..., None], 3, axis=2)
        else:
            small = resize_image(arr, size)
    return probe, small


def _reason(e: BaseException) -> str:
    if isinstance(e, ImageDecodeError):
        return e.reason
    if isinstance(e, DataError):
        return str(e)
    if isinstance(e, MemoryError):
        return "not enough memory to decode this image"
    return f"cannot read: {type(e).__name__}: {e}"


def item_key(reader, item) -> str:
    """What identifies a file's decoded pixels: reference, stamp, decode settings (not labels)."""
    meta = {k: v for k, v in item.meta.items() if k != "where"}
    try:
        stamp = reader.stamp(item)
    except Exception:  # noqa: BLE001 - a reader's broken stamp: the item is decoded again each time
        stamp = ["no-stamp", time.time_ns()]
    text = json.dumps([item.ref, stamp, meta], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def check_rgb(arr, ref: str) -> np.ndarray:
    """What a reader's ``load_image`` must return: H x W x 3 uint8."""
    if not (isinstance(arr, np.ndarray) and arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
            and arr.shape[0] > 0 and arr.shape[1] > 0):
        got = f"{arr.dtype} array of shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ImageDecodeError(ref, f"the reader returned a {got}, not an H x W x 3 uint8 image")
    return arr


class PixelView:
    """The cached images of a table, in the table's order, over the store's memory map:
    ``view[i]`` (an H x W x 3 array), ``view[indices]``, ``view[a:b]``, ``len``, ``shape``.
    Picklable for DataLoader workers (the map is opened again there, not copied)."""

    def __init__(self, path: Path, size: int, rows: np.ndarray):
        self.path, self.size = Path(path), int(size)
        self.rows = np.asarray(rows, dtype=np.int64)
        self._open()

    def _open(self) -> None:
        row_bytes = self.size * self.size * 3
        n = os.path.getsize(self.path) // row_bytes
        self.base = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(n, self.size, self.size, 3))

    @property
    def shape(self) -> tuple:
        return (len(self.rows), self.size, self.size, 3)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            return self[first][(slice(None), *rest) if not np.isscalar(first) else rest]
        rows = self.rows[key]
        if np.isscalar(rows) or getattr(rows, "ndim", 1) == 0:
            return self.base[int(rows)]
        rows = np.asarray(rows)
        order = np.argsort(rows, kind="stable")  # read the map in file order
        out = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        out[order] = self.base[rows[order]]
        return out

    def __array__(self, dtype=None, copy=None):
        arr = self[np.arange(len(self))]
        return arr if dtype is None else arr.astype(dtype)

    def __getstate__(self):
        return {"path": str(self.path), "size": self.size, "rows": self.rows}

    def __setstate__(self, state):
        self.path, self.size, self.rows = Path(state["path"]), state["size"], state["rows"]
        self._open()


class DecodeStore:
    """The decoded files of one data source (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.records: dict[str, tuple[int, Probe]] = {}  # key -> (row, probe)
        self._records_offset = 0
        self._pixel_rows: dict[int, set[int]] = {}  # size -> rows written
        self._pixel_offset: dict[int, int] = {}
        self.next_row = 0

    @classmethod
    def open(cls, root: Path, reader, source: Path) -> "DecodeStore":
        key = stable_hash(STORE_VERSION, getattr(reader, "id", type(reader).__name__), os.path.abspath(source))
        folder = Path(root) / "decoded" / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot write the image cache in {folder}: {e.strerror or e}") from None
        return cls(folder)

    # --- files ---------------------------------------------------------------------------
    @property
    def records_file(self) -> Path:
        return self.folder / "records.jsonl"

    def pixels_file(self, size: int) -> Path:
        return self.folder / f"pixels-{int(size)}.u8"

    def rows_file(self, size: int) -> Path:
        return self.folder / f"pixels-{int(size)}.rows"

    def _lock(self):
        from filelock import FileLock

        return FileLock(str(self.folder / "lock"))

    def refresh(self, size: int | None = None) -> None:
        """Read what other processes (or an earlier, stopped build) appended since the last read."""
        try:
            with open(self.records_file, "rb") as f:
                f.seek(self._records_offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1  # a line being written (or cut by a kill) waits
        for line in data[:end].splitlines():
            try:
                chunk = json.loads(line)
            except ValueError:
                continue
            for row, key, probe in chunk:
                self.records[key] = (int(row), probe if isinstance(probe, str) else tuple(probe))
                self.next_row = max(self.next_row, int(row) + 1)
        self._records_offset += end
        if size:
            done = self._pixel_rows.setdefault(size, set())
            try:
                with open(self.rows_file(size), "rb") as f:
                    f.seek(self._pixel_offset.get(size, 0))
                    data = f.read()
            except FileNotFoundError:
                data = b""
            n = len(data) // 4 * 4
            done.update(np.frombuffer(data[:n], dtype="<u4").tolist())
            self._pixel_offset[size] = self._pixel_offset.get(size, 0) + n

    def _trim(self, path: Path, unit: bytes | int) -> None:
        """Cut a tail left by a killed writer (a partial line or a partial row number)."""
        try:
            with open(path, "r+b") as f:
                data_len = f.seek(0, os.SEEK_END)
                if isinstance(unit, int):
                    f.truncate(data_len - data_len % unit)
                elif data_len:
                    f.seek(max(0, data_len - 65536))
                    tail = f.read()
                    cut = tail.rfind(unit) + 1
                    f.truncate(data_len - len(tail) + cut)
        except FileNotFoundError:
            pass

    # --- filling -------------------------------------------------------------------------
    def fill(self, reader, items: Sequence, size: int | None = None, *, decode: Callable | None = None,
             progress=None, should_stop=None, workers: int | None = None,
             keys: list[str] | None = None) -> tuple[list[Probe], np.ndarray]:
        """Probes (see :data:`Probe`) and store rows for ``items``, decoding only what the
        store does not hold yet (and, with ``size``, writing the resized pixels of every
        usable item).  ``decode(item) -> (H x W x 3 uint8, mode)`` (default ``reader.decode``).
        ``progress(done, total)``; ``should_stop()`` raises :class:`RunStopped` after recording
        what is finished, so the next call continues."""
        keys = keys if keys is not None else self.keys(reader, items)
        self.refresh(size)
        todo = self._todo(keys, size)
        if todo:
            lock = self._lock()
            self._acquire(lock, should_stop)
            try:
                self.refresh(size)  # another process may have filled it meanwhile
                todo = self._todo(keys, size)
                if todo:
                    self._decode(reader, items, keys, todo, size, decode, progress, should_stop,
                                 workers)
            finally:
                lock.release()
        elif progress:
            progress(len(items), len(items))
        rows = np.array([self.records[k][0] for k in keys], dtype=np.int64)
        return [self.records[k][1] for k in keys], rows

    @staticmethod
    def keys(reader, items: Sequence) -> list[str]:
        return [item_key(reader, it) for it in items]

    @staticmethod
    def _acquire(lock, should_stop) -> None:
        """Wait for another process that fills the same store (a second run on the same data,
        the other ranks of a torchrun job); Stop still works while waiting."""
        from filelock import Timeout

        while True:
            try:
                lock.acquire(timeout=0.5)
                return
            except Timeout:
                if should_stop and should_stop():
                    raise RunStopped() from None

    def _todo(self, keys: list[str], size: int | None) -> list[int]:
        done = self._pixel_rows.get(size, set()) if size else None
        out = []
        for i, k in enumerate(keys):
            rec = self.records.get(k)
            if rec is None or (size and not isinstance(rec[1], str) and rec[0] not in done):
                out.append(i)
        return out

    def _decode(self, reader, items, keys, todo, size, decode, progress, should_stop, workers) -> None:
        from ..engine.cpu import decode_workers

        self._trim(self.records_file, b"\n")
        fd = None
        if size:
            self._trim(self.rows_file(size), 4)
            fd = os.open(self.pixels_file(size), os.O_RDWR | os.O_CREAT, 0o644)
        row_bytes = size * size * 3 if size else 0
        # rows: the item's existing row, or a new one when it is handed to a thread (see _run)
        rows: dict[str, int] = {}

        def work(i: int):
            k = keys[i]
            rec = self.records.get(k)
            small = None
            try:
                probe, small = decode_reduced(reader, items[i], size, decode)
                probe = rec[1] if rec is not None else probe
            except Exception as e:  # noqa: BLE001 - never let one file stop the whole read
                probe = _reason(e)
            if small is not None:  # a full disk is not the file's fault: it stops the build (resumable)
                os.pwrite(fd, np.ascontiguousarray(small).data, rows[k] * row_bytes)
            return i, probe

        total = len(items)
        if progress:
            progress(total - len(todo), total)
        if should_stop and should_stop():
            raise RunStopped()
        finished: list[tuple[int, Probe]] = []
        try:
            self._run(work, todo, workers or decode_workers(), finished, keys, rows, size, fd, total, progress,
                      should_stop)
        except OSError as e:
            need = f" (the images at {size} px need about {self.next_row * row_bytes / 1e9:.1f} GB)" if size else ""
            raise DataError(f"cannot write the image cache in {self.folder}: {e.strerror or e}{need}") from None
        finally:
            if finished:  # a failure or a stop: keep what is finished
                self._record(finished, keys, rows, size, fd)
            if fd is not None:
                try:  # every allocated row inside the file (rows of unusable files stay sparse zeros)
                    if os.fstat(fd).st_size < self.next_row * row_bytes:
                        os.ftruncate(fd, self.next_row * row_bytes)
                finally:
                    os.close(fd)

    def _run(self, work, todo, n_workers, finished, keys, rows, size, fd, total, progress, should_stop) -> None:
        """``work`` over ``todo`` in a thread pool with a window of 4 x threads items in flight
        (no barrier per chunk, bounded memory); a chunk is recorded about every second."""
        pending: deque = deque()
        it = iter(todo)
        done = total - len(todo)
        last_flush = time.monotonic()
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="tlstudio-decode") as pool:
            while True:
                while len(pending) < 4 * n_workers:
                    i = next(it, None)
                    if i is None:
                        break
                    k = keys[i]
                    if k not in rows:  # a repeated key (the same file twice) shares its row
                        rows[k] = self.records[k][0] if k in self.records else self._new_row()
                    pending.append(pool.submit(work, i))
                if not pending:
                    break
                try:
                    finished.append(pending.popleft().result())
                except BaseException:
                    for f in pending:
                        f.cancel()
                    raise
                done += 1
                if pending and should_stop and should_stop():
                    for f in pending:
                        f.cancel()
                    raise RunStopped()  # the caller records what is finished
                now = time.monotonic()
                if now - last_flush >= CHUNK_SECONDS or not pending:
                    self._record(finished, keys, rows, size, fd)
                    finished.clear()
                    last_flush = now
                    if progress:
                        progress(done, total)

    def _new_row(self) -> int:
        r = self.next_row
        self.next_row += 1
        return r

    def _record(self, finished, keys, rows, size, fd) -> None:
        """Append a chunk: its records, then (after the pixels are in the file) its pixel rows."""
        chunk, written = [], []
        for i, probe in finished:
            k = keys[i]
            row = rows[k]
            if k not in self.records:
                chunk.append([row, k, probe])
                self.records[k] = (row, probe)
            if fd is not None and not isinstance(probe, str):
                written.append(row)
        try:
            if chunk:
                with open(self.records_file, "ab") as f:
                    f.write(json.dumps(chunk, separators=(",", ":")).encode("utf-8") + b"\n")
            if written:
                os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
                with open(self.rows_file(size), "ab") as f:
                    f.write(np.asarray(written, dtype="<u4").tobytes())
                self._pixel_rows.setdefault(size, set()).update(written)
        except OSError as e:
            raise DataError(f"cannot write the image cache in {self.folder}: {e.strerror or e}") from None

    # --- reading -------------------------------------------------------------------------
    def view(self, size: int, rows: np.ndarray) -> PixelView:
        """The pixels of ``rows`` at ``size`` (every row must have been filled)."""
        return PixelView(self.pixels_file(size), size, rows)

    def has_pixels(self, size: int, rows: np.ndarray) -> np.ndarray:
        done = self._pixel_rows.get(size, set())
        return np.fromiter((int(r) in done for r in rows), dtype=bool, count=len(rows))
