"""Malformed NPZ files: bad images are skipped by name (train/3: NaN ...), bad labels by
index, and a file that cannot be used at all is refused in one plain sentence (never with
numpy's advice to load it unsafely)."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from faultlib import assert_plain, cli, report
from test_data_helpers import mnist


def digits(n: int = 12, dtype=np.uint8):
    X, y = mnist()
    idx = np.r_[np.flatnonzero(y == 0)[: n // 2], np.flatnonzero(y == 1)[: n // 2]]
    return X[idx].astype(dtype), y[idx].astype(np.int64)


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def _with_magic(header: bytes) -> bytes:
    return header if header.startswith(np.lib.format.MAGIC_PREFIX) else np.lib.format.magic(1, 0) + header


# --- files that are used, minus the bad items -----------------------------------------------------
def nan_images(p):
    X, y = digits(dtype=np.float32)
    X /= 255
    X[2] = np.nan
    X[7, 3, 3] = np.inf
    return save(p, images=X, labels=y), {"images/2": "NaN or infinite", "images/7": "NaN or infinite"}, 10


def all_inf(p):
    X, y = digits(dtype=np.float64)
    X[0] = -np.inf
    return save(p, images=X, labels=y), {"images/0": "NaN or infinite"}, 11


def bad_labels(p):
    X, y = digits(n=200)
    y[3], y[150] = -3, 7
    return save(p, images=X, labels=y), {"images/3": "label -3 is negative", "images/150": "label 7 is out of range"}, 198


def names_short(p):
    X, y = digits()
    y[5] = 2
    return save(p, images=X, labels=y), {"images/5": "no name in class_names"}, 11


def string_label_newline(p):
    X, _ = digits()
    labels = np.array(["benign"] * 6 + ["malig\nnant"] + ["malignant"] * 5)
    return save(p, images=X, labels=labels), {"images/6": "line break"}, 11


def medmnist_unseen(p):
    X, y = digits()
    yt = y[:4].copy()
    yt[0] = -1
    return (save(p, train_images=X, train_labels=y, test_images=X[:4], test_labels=yt.reshape(-1, 1)),
            {"test/0": "label -1 is negative"}, 15)


USED = [nan_images, all_inf, bad_labels, names_short, string_label_newline, medmnist_unseen]


@pytest.mark.parametrize("make", USED, ids=[f.__name__ for f in USED])
def test_bad_items_are_skipped_by_index_and_the_rest_is_used(tmp_path, make):
    path, expected, usable = make(tmp_path / "data.npz")
    before = path.read_bytes()
    args = ["validate-data", path, "--json"]
    if make is names_short:
        args += ["--option", "class_names=zero,one"]
    o = cli(*args)
    assert_plain(o)
    rep = report(o)
    assert sum(rep["counts"].values()) + rep["unlabelled"] == usable, rep
    got = {s["ref"]: s["reason"] for s in rep["skipped"]}
    for ref, words in expected.items():
        assert ref in got and words in got[ref], (ref, got)
    assert path.read_bytes() == before


# --- files that cannot be used: refused, exit code 1 -----------------------------------------------
def object_images(p):
    return save(p, images=np.array([{"a": 1}, None], dtype=object), labels=np.array([0, 1]))


def object_labels(p):
    X, _ = digits(4)
    return save(p, images=X, labels=np.array(["a", 1, None, 2.5], dtype=object))


def truncated(p):
    X, y = digits()
    save(p, images=X, labels=y)
    p.write_bytes(p.read_bytes()[:300])
    return p


def empty(p):
    p.write_bytes(b"")
    return p


def text_file(p):
    p.write_text("images,labels\n1,2\n")
    return p


def length_mismatch(p):
    X, y = digits()
    return save(p, images=X, labels=y[:5])


def flat_images(p):
    _, y = digits()
    return save(p, images=np.zeros((12, 28), np.uint8), labels=y)


def five_channels(p):
    _, y = digits()
    return save(p, images=np.zeros((12, 8, 8, 5), np.uint8), labels=y)


def complex_images(p):
    _, y = digits()
    return save(p, images=np.zeros((12, 8, 8), np.complex64), labels=y)


def fractional_labels(p):
    X, y = digits()
    return save(p, images=X, labels=y + 0.5)


def nan_labels(p):
    X, y = digits()
    yf = y.astype(float)
    yf[0] = np.nan
    return save(p, images=X, labels=yf)


def multilabel(p):
    X, _ = digits()
    return save(p, images=X, labels=np.zeros((12, 3), np.int64))


def no_image_key(p):
    return save(p, weights=np.zeros(3), bias=np.zeros(1))


def claims_huge(p):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("images.npy", _with_magic(_header((400_000, 1024, 1024, 3), "|u1")))
        z.writestr("labels.npy", _with_magic(_header((400_000,), "<i8")))
    return p


def _header(shape, descr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_of_other_things(p):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    return p


REFUSED = [
    (object_images, "holds Python objects"), (object_labels, "holds Python objects"),
    (truncated, "damaged or truncated NPZ file"), (empty, "empty file (0 bytes)"), (text_file, "not an NPZ file"),
    (length_mismatch, "5 labels in 'labels' for 12 images"), (flat_images, "expected (N, H, W)"),
    (five_channels, "expected (N, H, W)"), (complex_images, "expected (N, H, W)"),
    (fractional_labels, "not class numbers"), (nan_labels, "not class numbers"), (multilabel, "multi-label"),
    (no_image_key, "no image array found"), (claims_huge, "too large to decode safely"),
    (zip_of_other_things, "no image array found"),
]


@pytest.mark.parametrize("make, words", REFUSED, ids=[f.__name__ for f, _ in REFUSED])
def test_an_unusable_npz_is_refused_in_plain_words(tmp_path, make, words):
    path = make(tmp_path / "data.npz")
    o = cli("validate-data", path)
    assert_plain(o)
    assert o.code == 1, o.text
    assert o.err.startswith("error: ") and str(path) in o.err and words in o.err, o.err
