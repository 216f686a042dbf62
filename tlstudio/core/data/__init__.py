"""Image-classification data: readers, validation report, splits, cache, torch dataset, augmentation.

    table = read_data("~/xrays")             # reads and validates every image
    print(table.report.summary())            # what was found, skipped and why
    check_trainable(table)
    split = make_split(table, "auto", 0.15, 0.15, seed=0)
    images, valid = build_image_cache(table, 128, cache_dir())

``ImageDataset``, ``build_image_cache`` and ``make_transforms`` need torch and are imported
on first use, so that reading and checking data stays quick.
"""
from __future__ import annotations

from .image import ImageDecodeError, decode_dicom, decode_image, decode_inputs, is_dicom, resize_image
from .readers import CsvReader, DicomReader, FolderReader, NpzReader, builtin_readers, read_data
from .report import Item, Skipped, ValidationReport
from .split import load_split, make_split, save_split, split_counts
from .table import DatasetReader, ImageTable, Scan, check_trainable

_LAZY = {"ImageDataset": "dataset", "build_image_cache": "cache", "make_transforms": "transforms", "preset_values": "transforms",
         "is_grayscale": "transforms", "augmentation_preview": "transforms"}

__all__ = [
    "Item", "Skipped", "ValidationReport", "ImageTable", "DatasetReader", "Scan", "FolderReader", "CsvReader",
    "NpzReader", "DicomReader", "builtin_readers", "read_data", "check_trainable", "decode_image", "decode_inputs",
    "decode_dicom", "is_dicom", "resize_image", "ImageDecodeError", "make_split", "save_split", "load_split", "split_counts",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
