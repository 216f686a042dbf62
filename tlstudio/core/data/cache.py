"""Decoded, resized images stored once on disk (memory-mapped); no torch here (the Dataset over
them is :class:`tlstudio.core.data.dataset.ImageDataset`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .store import DecodeStore, PixelView
from .table import ImageTable, Progress, ShouldStop


def build_image_cache(table: ImageTable, size: int, cache_root: Path, progress: Progress = None,
                      should_stop: ShouldStop = None) -> tuple[PixelView, np.ndarray]:
    """All images of ``table`` decoded and resized to ``size`` x ``size``: a read-only,
    memory-mapped uint8 array-like (N, size, size, 3) in the table's order, plus a bool mask
    of the items that decoded (failures read as zeros).

    The pixels live in the decode store under ``cache_root/decoded`` (see
    :mod:`tlstudio.core.data.store`): a table read with a cache request at this size has them
    already (decoded once, while it was validated); otherwise only the files the store does
    not hold at this size are decoded, in parallel, and a stopped or killed build continues
    where it stopped.
    """
    root = Path(cache_root)
    store, keys = table.store, table.store_keys
    if store is None or store.folder.parent != root / "decoded":
        store, keys = DecodeStore.open(root, table.reader, table.source), None
    try:
        _, rows = store.fill(table.reader, table.items, size, progress=progress, should_stop=should_stop, keys=keys)
    except OSError as e:
        raise DataError(f"cannot write the image cache in {store.folder}: {e.strerror or e} "
                        f"(it needs about {len(table) * size * size * 3 / 1e9:.1f} GB)") from None
    return store.view(size, rows), store.has_pixels(size, rows)
