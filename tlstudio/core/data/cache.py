"""Decoded, resized images stored once on disk (memory-mapped), and the torch Dataset over them."""
from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import torch

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


class ImageDataset(torch.utils.data.Dataset):
    """(transform(uint8 C x H x W tensor), int64 label) for ``images[indices[k]]``.

    Picklable for DataLoader workers: a memory-mapped array travels as its file name and is
    opened again in the worker, not copied.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, transform=None):
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.indices, self.transform = np.asarray(indices, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        x = torch.from_numpy(np.array(self.images[i], dtype=np.uint8)).permute(2, 0, 1).contiguous()
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.tensor(self.labels[i], dtype=torch.int64)

    def __getstate__(self):
        state = dict(self.__dict__)
        m = self.images
        if isinstance(m, np.memmap) and m.filename and isinstance(m.base, mmap.mmap):  # a whole .npy file
            state["images"] = ("memmap", m.filename)
        return state

    def __setstate__(self, state):
        if isinstance(state["images"], tuple):
            state["images"] = np.load(state["images"][1], mmap_mode="r")
        self.__dict__.update(state)
