"""Batches of cached images delivered on the device and augmented there: a GPU that never waits.

The loader the engine uses on a GPU for image datasets (:class:`~tlstudio.core.data.dataset.ImageDataset`
over the memory-mapped image cache), instead of worker processes that augment image by image:

- **host**: a thread reads each batch's uint8 rows from the cache in one go (in file order)
  into pinned (page-locked) buffers — no worker processes to start, no Python per image;
- **device**: the copy (``non_blocking``) and the augmentation of the *next* batch are queued
  on a side CUDA stream while the current batch trains; the training stream waits on an event;
- **augmentation**: :mod:`tlstudio.core.data.batch_augment`, the project's own transform with
  random parameters per image, applied to the whole batch on the device;
- **small data live on the device**: when a split's images take less than a quarter of the
  free GPU memory (at most 4 GiB), they are copied there once and a batch is an index.

The same code runs on CPU tensors (no pinning, no streams): the tests run it there, and
``training.augment_on = "device"`` uses it on the CPU too.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from .batch_augment import BatchAugment, Unsupported, compile_transform

RESIDENT_SHARE = 0.25  # of the free GPU memory a split's images may take to live there
RESIDENT_MAX = 4 << 30


def read_rows(images, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` (N x H x W x 3 uint8) read in file order: one pass over a memory map."""
    rows = np.asarray(rows, dtype=np.int64)
    if hasattr(images, "base") and hasattr(images, "rows"):  # a PixelView sorts itself
        return images[rows]
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *images.shape[1:]), dtype=np.uint8)
    out[order] = images[rows[order]]
    return out


class DeviceLoader:
    """Iterable of (images, labels) batches on ``device``: images float (B, 3, S, S),
    normalised and augmented by ``augment``; labels int64.  ``batches`` yields lists of
    positions in ``dataset`` (a torch BatchSampler); ``seed`` seeds the augmentation."""

    def __init__(self, dataset, batches, device: torch.device, augment: BatchAugment, *, seed: int,
                 channels_last: bool = False, prefetch: int = 3, resident: tuple | None = None):
        self.dataset, self.batches, self.device = dataset, batches, torch.device(device)
        self.augment, self.seed, self.channels_last = augment, int(seed), channels_last
        self.prefetch = max(1, int(prefetch))
        self.resident = resident  # (images uint8 N x H x W x 3, labels) on the device, by dataset position
        self.cuda = self.device.type == "cuda"

    def __len__(self) -> int:
        return len(self.batches)

    # --- host side ---------------------------------------------------------------------
    def _host_batches(self, stop: threading.Event, out: queue.Queue, returned: queue.Queue | None) -> None:
        """Thread: read each batch; on CUDA into a pinned buffer, reused once its copy finished."""
        ds = self.dataset
        free: list = []  # pinned buffers whose copy has finished
        made = [0]  # pinned buffers in existence
        try:
            for positions in self.batches:
                if stop.is_set():
                    return
                rows = ds.indices[np.asarray(positions, dtype=np.int64)]
                x = torch.from_numpy(read_rows(ds.images, rows))
                y = torch.from_numpy(np.asarray(ds.labels[rows], dtype=np.int64))
                if returned is not None:
                    x, y = self._pin(x, y, free, returned, made, stop)
                    if x is None:
                        return
                if not _put(out, (x, y), stop):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the training thread
            _put(out, e, stop)
            return
        _put(out, None, stop)

    def _pin(self, x, y, free: list, returned: queue.Queue, made: list, stop: threading.Event):
        """``x`` copied into a pinned buffer of its shape: a returned one (its copy to the device
        has finished: its event has passed) or, while fewer than prefetch + 3 exist, a new one."""
        while True:
            while True:
                try:
                    buf, event = returned.get_nowait()
                except queue.Empty:
                    break
                event.synchronize()
                free.append(buf)
            buf = next((b for b in free if b.shape == x.shape), None)
            if buf is not None:
                free.remove(buf)
                break
            if made[0] < self.prefetch + 3:
                buf = torch.empty(x.shape, dtype=torch.uint8, pin_memory=True)
                made[0] += 1
                break
            if stop.wait(0.005):
                return None, None
            if free:  # the last batch's other shape: make room
                free.pop()
                made[0] -= 1
        buf.copy_(x)
        return buf, y.pin_memory()

    # --- device side -------------------------------------------------------------------
    def _launch(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, stream):
        """Copy and augment one batch (on ``stream`` on CUDA); returns (images, labels, event)."""
        ctx = torch.cuda.stream(stream) if stream is not None else _nullcontext()
        with ctx:
            xd = x.to(self.device, non_blocking=True)
            yd = y.to(self.device, non_blocking=True)
            out = self.augment(xd.permute(0, 3, 1, 2), g)
            if self.channels_last:
                out = out.contiguous(memory_format=torch.channels_last)
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        return out, yd, event, x

    def __iter__(self) -> Iterator:
        g = torch.Generator().manual_seed(self.seed)
        if self.resident is not None:
            yield from self._resident_batches(g)
            return
        stream = torch.cuda.Stream(self.device) if self.cuda else None
        returned: queue.Queue | None = queue.Queue() if self.cuda else None
        stop = threading.Event()
        host: queue.Queue = queue.Queue(maxsize=self.prefetch)
        thread = threading.Thread(target=self._host_batches, args=(stop, host, returned), name="tlstudio-batches",
                                  daemon=True)
        thread.start()
        try:
            pending = None
            while True:
                item = host.get()
                if isinstance(item, BaseException):
                    raise item
                nxt = self._launch(*item, g, stream) if item is not None else None
                if pending is not None:
                    yield self._hand_over(pending, returned)
                pending = nxt
                if pending is None:
                    break
        finally:
            stop.set()
            while thread.is_alive():  # let the thread see the stop (it may wait on a full queue)
                try:
                    host.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=0.05)

    def _hand_over(self, launched, returned):
        out, y, event, pinned = launched
        if event is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_event(event)
            out.record_stream(main)
            y.record_stream(main)
            returned.put((pinned, event))  # the buffer may be filled again after this event
        return out, y

    def _resident_batches(self, g) -> Iterator:
        images, labels = self.resident
        for positions in self.batches:
            k = torch.as_tensor(np.asarray(positions, dtype=np.int64), device=self.device)
            out = self.augment(images.index_select(0, k).permute(0, 3, 1, 2), g)
            if self.channels_last:
                out = out.contiguous(memory_format=torch.channels_last)
            yield out, labels.index_select(0, k)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- the engine's choice -------------------------------------------------------------------------
def wanted(ctx) -> bool:
    """Whether the run's image loaders deliver augmented batches on the device: ``auto`` on
    CUDA, ``device`` always, ``loader`` never."""
    mode = getattr(ctx.training, "augment_on", "auto")
    return mode == "device" or (mode == "auto" and ctx.device.type == "cuda")


def device_loader(ctx, dataset, sampler, shuffle: bool, batch_size: int, drop_last: bool,
                  generator: torch.Generator) -> DeviceLoader | None:
    """A :class:`DeviceLoader` for ``dataset`` when the run wants one and the dataset is a
    cached-image dataset whose transform compiles; else None (the ordinary DataLoader)."""
    from .dataset import ImageDataset

    if not wanted(ctx) or not isinstance(dataset, ImageDataset) or dataset.transform is None \
            or getattr(ctx.data, "collate", None) is not None:
        return None
    try:
        augment = compile_transform(dataset.transform)
    except Unsupported as e:
        key = ("unsupported", str(e))
        if key not in ctx._loaders:  # said once
            ctx._loaders[key] = None
            ctx.log(f"Augmentation stays in the loader: '{e}' cannot run on whole batches.")
        return None
    if sampler is None:
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle \
            else torch.utils.data.SequentialSampler(dataset)
    batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)
    seed = int(torch.randint(0, 2**62, (1,)).item())  # from the run's seeded generator: repeatable, per epoch
    return DeviceLoader(dataset, batches, ctx.device, augment, seed=seed, channels_last=ctx.channels_last,
                        resident=_resident(ctx, dataset))


def _resident(ctx, dataset) -> tuple | None:
    """The dataset's images and labels on the GPU (copied once per run) when they fit."""
    if ctx.device.type != "cuda":
        return None
    n = len(dataset.indices)
    nbytes = n * int(np.prod(dataset.images.shape[1:]))
    key = ("resident", id(dataset.images), dataset.indices.tobytes())
    if key in ctx._loaders:
        return ctx._loaders[key]
    free, _ = torch.cuda.mem_get_info(ctx.device)
    value = None
    if nbytes <= min(RESIDENT_SHARE * free, RESIDENT_MAX):
        images = torch.from_numpy(read_rows(dataset.images, dataset.indices)).to(ctx.device)
        labels = torch.from_numpy(np.asarray(dataset.labels[dataset.indices], dtype=np.int64)).to(ctx.device)
        value = (images, labels)
    ctx._loaders[key] = value
    return value
