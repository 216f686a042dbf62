"""Helpers of the data tests (no tests here): real MNIST digits, loaded once, written as
image folders or DICOM files."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from conftest import mnist_arrays
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid


@cache
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """5,000 real MNIST digits (28 x 28 uint8, sorted by label) and their labels."""
    X, y = mnist_arrays()
    X.setflags(write=False)
    return X, y


def digit_folder(root: Path, classes=(0, 1), per_class: int = 10, ext: str = "png") -> Path:
    """root/<digit>/<digit>-<index>.<ext> of real digits."""
    X, y = mnist()
    for c in classes:
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(y == c)[:per_class]:
            Image.fromarray(X[i]).save(root / str(c) / f"{c}-{i}.{ext}")
    return root


def mixed_digits(n: int, classes=(0, 1, 2), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits of the given classes in random order."""
    X, y = mnist()
    idx = np.random.default_rng(seed).permutation(np.flatnonzero(np.isin(y, classes)))[:n]
    return X[idx], y[idx]


def as16(digit: np.ndarray) -> np.ndarray:
    """A digit as 16-bit values 1000 .. 5080 (a 12-bit-like range)."""
    return digit.astype(np.uint16) * 16 + 1000


def write_dicom(path: Path, pixels, photometric="MONOCHROME2", window=None, rescale=None, compressed=False) -> Path:
    """A real DICOM file (Secondary Capture, explicit VR little endian) of 16-bit pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "OT", "ANON"
    ds.set_pixel_data(np.asarray(pixels, np.uint16), photometric, 16, generate_instance_uid=False)
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if compressed:  # claims JPEG 2000; no such decoder is installed
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path
