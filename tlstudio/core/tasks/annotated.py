"""What detection and captioning runs share: reading annotated images with the readers of
the project's task, a stored seeded split of the images, and the decoded-image cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError

SPLITS = ("train", "val", "test")


def task_readers(ctx, task: str) -> list:
    """The readers (built-in and from plugins) that read data of ``task``."""
    if ctx.plugins:
        readers = ctx.plugins.readers()
    else:  # a bare context (tests, scripts): the built-in readers of annotated data
        from ..data.boxes import detection_readers
        from ..data.captions import caption_readers

        readers = detection_readers() + caption_readers()
    return [r for r in readers if getattr(r, "task", "image-classification") == task]


def read_annotated(ctx, task: str):
    """Read and check the project's data with a reader of ``task``; log what was skipped."""
    from ..data import read_data
    from ..data.annotations import check_annotated

    proj = ctx.project
    if not proj.data.source:
        raise DataError(f"The project has no data yet: choose {_WHAT[task]} on the Data page "
                        "(or give --data on the command line).")
    readers = task_readers(ctx, task)
    if not readers:
        raise DataError(f"No data reader for {task} is available (are the built-in readers disabled?).")
    source = proj.resolve(proj.data.source)
    ctx.log(f"Reading {source} ...")
    table = read_data(source, proj.data.format, proj.data.options, readers, task=task,
                      progress=lambda d, t: ctx.progress("Checking images", d, t),
                      should_stop=lambda: ctx.control.stopped)
    if getattr(table, "task", None) != task:
        raise DataError(f"{source}: the {table.reader_id} reader does not give {task} data")
    rep = table.report
    for w in rep.warnings:
        ctx.log(w, "warning")
    if rep.skipped:
        first = "; ".join(s.reason for s in rep.skipped[:3])
        ctx.log(f"{len(rep.skipped)} item(s) skipped ({first}{' ...' if len(rep.skipped) > 3 else ''}); "
                "`tlstudio validate-data` lists them all.", "warning")
    check_annotated(table)
    return table


_WHAT = {"detection": "a COCO JSON, a Pascal VOC folder or a CSV of boxes",
         "captioning": "a COCO captions JSON or a CSV of captions"}


def split_annotated(ctx, table) -> tuple[list[str], Path | None]:
    """'train'/'val'/'test' per image (see :func:`tlstudio.core.tasks.classification.stored_split`)."""
    from .classification import stored_split

    return stored_split(ctx, table)


def decoded_images(ctx, table, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every image decoded once, resized to ``size`` x ``size`` and cached on disk."""
    from ..data import build_image_cache

    return build_image_cache(table, size, ctx.cache_dir, progress=lambda d, t: ctx.progress("Decoding images", d, t),
                             should_stop=lambda: ctx.control.stopped)


def backbone_preprocessing(ctx, architecture: str | None = None) -> tuple[int, tuple, tuple]:
    """(image size, mean, std) for the project's model."""
    proj = ctx.project
    arch = ctx.library.architectures.get(architecture or proj.model.architecture)
    if arch is None:
        raise ModelError(f"Unknown model '{architecture or proj.model.architecture}'. "
                         "See `tlstudio models` for the catalog.")
    pre = arch.preprocessing
    size = pre.image_size if pre.fixed_size else proj.model.image_size
    if pre.fixed_size and proj.model.image_size != size:
        ctx.log(f"{arch.title} works at {size} px only: images are resized to {size} px.", "warning")
    return size, tuple(pre.mean), tuple(pre.std)


class AnnotatedData:
    """The prepared images of a detection or captioning run (split, decoded, cached)."""

    task = "detection"

    def __init__(self, table, assignments: list[str], images: np.ndarray, valid: np.ndarray, size: int,
                 mean, std, augmentation, split_file: Path | None):
        self.table = table
        self.images, self.size = images, size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augmentation = augmentation
        self.split_file = split_file
        self.fingerprint = table.fingerprint()
        a = np.asarray(assignments)
        self.indices = {s: np.flatnonzero(valid & (a == s)) for s in SPLITS}
        self.class_names: list[str] = list(table.class_names)

    def has_split(self, split: str) -> bool:
        return len(self.indices.get(split, ())) > 0

    def refs(self, split: str) -> list[str]:
        return [self.table.items[i].ref for i in self.indices[split]]

    def original_size(self, i: int) -> tuple[int, int]:
        m = self.table.items[i].meta
        return int(m["width"]), int(m["height"])

    def split_sizes(self) -> dict[str, int]:
        return {s: int(len(self.indices[s])) for s in SPLITS}

    def describe(self) -> dict:
        return {"task": self.task, "reader": self.table.reader_id, "source": str(self.table.source),
                "fingerprint": self.fingerprint, "class_names": self.class_names, "image_size": self.size,
                "mean": self.mean, "std": self.std, "split_counts": self.split_sizes(),
                "report": self.table.report.to_dict()}
