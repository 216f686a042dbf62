"""Checks of NPZ data before and while it is read: numpy's errors in plain words (never its
advice to load unsafely), arrays too large for this computer refused from their headers, and
class numbers that cannot be classes."""
from __future__ import annotations

import zipfile
from collections import Counter

import numpy as np

from ..errors import DataError
from .budget import array_budget, too_large


def npz_problem(e: BaseException) -> str:
    """Why numpy could not read an NPZ, in plain words (never numpy's advice to load it unsafely)."""
    text = str(e)
    if "allow_pickle" in text or "pickle" in text.lower():
        return ("holds Python objects (object arrays), which are never loaded because loading them could run "
                "code: save the images and labels as plain number arrays")
    if isinstance(e, (zipfile.BadZipFile, EOFError)) or "zip" in text.lower() or "truncat" in text.lower():
        return "damaged or truncated NPZ file: its zip archive cannot be read whole"
    return f"cannot read as NPZ: {text.splitlines()[0][:200] if text else type(e).__name__}"


def check_array_size(z, key: str, file: str) -> None:
    """Refuse an array whose header claims more memory than this computer can spare, before reading it."""
    try:
        with z.zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(f)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError):
        return  # numpy's own reading reports it
    need, budget = int(np.prod(shape, dtype=np.float64) * dtype.itemsize), array_budget()
    if need > budget:
        raise DataError(f"{file}: '{key}' is " + too_large(f"an array of shape {tuple(shape)} ({dtype})", need, budget,
                                                           "Split it into smaller files or use a folder of images."))


def numbers_out_of_range(numbers: list[int], names: list[str] | None) -> dict[int, str]:
    """Class numbers that cannot be classes: negative ones, ones without a name in class_names,
    and rare ones beyond a gap in 0..K-1 (a 7 among 0s and 1s is a typo, not a class)."""
    counts = Counter(numbers)
    out: dict[int, str] = {}
    for v in counts:
        if v < 0:
            out[v] = f"label {v} is negative: class numbers start at 0"
        elif names and v >= len(names):
            out[v] = f"label {v} has no name in class_names ({len(names)} names: 0 to {len(names) - 1})"
    if not names:
        k = 0
        while k in counts:
            k += 1
        rare = max(1, len(numbers) // 100)  # under 1% of the images
        for v in counts:
            if v > k and counts[v] <= rare:
                out[v] = (f"label {v} is out of range: the class numbers run 0 to {k - 1}, and {v} appears on only "
                          f"{counts[v]} of {len(numbers):,} images")
    return out
