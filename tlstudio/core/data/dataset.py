"""The torch Dataset over the image cache's memory-mapped pixels."""
from __future__ import annotations

import mmap

import numpy as np
import torch


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
