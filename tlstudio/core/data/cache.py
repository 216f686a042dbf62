"""Decoded, resized images stored once on disk (memory-mapped), and the torch Dataset over them."""
from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .image import resize_image
from .table import ImageTable, Progress, ShouldStop, parallel_map


def _tempname(final: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(tmp)


def build_image_cache(table: ImageTable, size: int, cache_root: Path, progress: Progress = None,
                      should_stop: ShouldStop = None) -> tuple[np.ndarray, np.ndarray]:
    """All images of ``table`` decoded and resized to ``size`` x ``size``, as a read-only
    memory-mapped uint8 array (N, size, size, 3), plus a bool mask of the items that decoded
    (failures are zeros).  Stored under ``cache_root/images``; a later call with the same
    table and size (same fingerprint) reads the stored array and decodes nothing.
    """
    folder = Path(cache_root) / "images"
    final = folder / f"{table.fingerprint()}-{size}.npy"
    mask_file = final.with_suffix(".valid.npy")
    shape = (len(table), size, size, 3)
    if final.exists() and mask_file.exists():
        try:
            images, valid = np.load(final, mmap_mode="r"), np.load(mask_file)
            if images.shape == shape and images.dtype == np.uint8 and valid.shape == shape[:1]:
                return images, valid.astype(bool)
        except (OSError, ValueError):
            pass  # damaged: build it again
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _tempname(final)
    except OSError as e:
        raise DataError(f"cannot write the image cache in {folder}: {e.strerror or e}") from None

    def load(i: int) -> np.ndarray | None:
        try:
            return resize_image(table.load_image(i), size)
        except Exception:  # reported by the mask; the item was usable when the data were read
            return None

    mask_tmp = None
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        valid = np.zeros(len(table), dtype=bool)
        for i, img in enumerate(parallel_map(load, range(len(table)), progress, should_stop)):
            if img is not None:
                out[i], valid[i] = img, True
        out.flush()
        del out
        mask_tmp = _tempname(mask_file)
        with open(mask_tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
            np.save(f, valid)
        os.replace(mask_tmp, mask_file)
        os.replace(tmp, final)  # the images last: their presence means the cache is complete
    except BaseException as e:
        for t in (tmp, mask_tmp):
            if t is not None:
                t.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DataError(f"cannot write the image cache in {folder}: {e.strerror or e} "
                            f"(it needs about {np.prod(shape) / 1e9:.1f} GB)") from None
        raise
    return np.load(final, mmap_mode="r"), valid


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
