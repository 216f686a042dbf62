"""Splits, the image cache, the torch dataset and the augmentation presets, on real digits."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_helpers import digit_folder, mixed_digits

from tlstudio.core.config import AugmentationConfig
from tlstudio.core.data import (
    ImageDataset, build_image_cache, load_split, make_split, make_transforms, read_data, save_split, split_counts,
)
from tlstudio.core.data.store import PixelView
from tlstudio.core.errors import DataError, RunStopped


@pytest.fixture
def table(tmp_path):
    """Three imbalanced classes of real digits (40, 23, 9) and two broken files."""
    root = tmp_path / "digits"
    for c, n in ((0, 40), (1, 23), (2, 9)):
        digit_folder(root, classes=(c,), per_class=n)
    (root / "1" / "zero.png").write_bytes(b"")
    (root / "2" / "text.jpg").write_text("not a picture")
    return read_data(root)


def test_stratified_split_is_seeded_stable_and_stratified(table):
    split = make_split(table, "stratified", 0.2, 0.1, seed=7)
    assert split == make_split(table, "stratified", 0.2, 0.1, seed=7)
    assert split != make_split(table, "stratified", 0.2, 0.1, seed=8)
    counts = split_counts(table, split)
    totals = {s: sum(c.values()) for s, c in counts.items()}
    assert totals == {"train": 51, "val": 14, "test": 7}  # 72 images: 20 % -> 14, 10 % -> 7
    for s, fraction in (("val", 0.2), ("test", 0.1)):
        for c, n in table.report.counts.items():
            assert abs(counts[s][c] - n * fraction) <= 1, (s, c)
    assert all(n >= 1 for n in counts["train"].values())
    assert make_split(table, "auto", 0.2, 0.1, seed=7) == split  # folders carry no split
    with pytest.raises(DataError, match="carries no split of its own"):
        make_split(table, "given", 0.2, 0.1, 0)


def test_every_class_keeps_a_training_image(tmp_path):
    table = read_data(digit_folder(tmp_path / "d", classes=(0, 1, 2), per_class=2))
    split = make_split(table, "stratified", 0.5, 0.5, 0)
    assert all(n == 1 for n in split_counts(table, split)["train"].values())


def test_split_is_stored_and_reloaded_only_when_it_covers_the_table(table, tmp_path):
    split = make_split(table, "stratified", 0.15, 0.15, 0)
    path = tmp_path / "split.json"
    save_split(path, table, split)
    assert load_split(path, table) == split
    assert load_split(tmp_path / "absent.json", table) is None
    Image.open(table.items[0].ref).save(table.source / "2" / "new.png")  # the data grew
    assert load_split(path, read_data(table.source)) is None
    path.write_text("{not json")
    assert load_split(path, table) is None


def test_given_split_without_val_gets_one_carved_from_train(tmp_path):
    X, y = mixed_digits(80)
    np.savez(tmp_path / "m.npz", train_images=X[:60], train_labels=y[:60], test_images=X[60:], test_labels=y[60:])
    table = read_data(tmp_path / "m.npz")
    split = make_split(table, "given", 0.1, 0.1, 3)
    assert split[60:] == ["test"] * 20  # the given test part is kept as it is
    assert split[:60].count("val") == 8 and split == make_split(table, "auto", 0.1, 0.1, 3)


def test_cache_is_built_once_and_reused(table, tmp_path, monkeypatch):
    calls = []
    images, valid = build_image_cache(table, 32, tmp_path / "cache", progress=lambda d, t: calls.append((d, t)))
    assert isinstance(images, PixelView) and images.shape == (72, 32, 32, 3) and images.dtype == np.uint8
    assert valid.all() and calls[0] == (0, 72) and calls[-1] == (72, 72)
    assert np.abs(images[0].astype(int) - np.asarray(Image.open(table.items[0].ref).resize((32, 32)))[..., None]).mean() < 8

    def broken(item):
        raise AssertionError("decoded again")

    monkeypatch.setattr(table.reader, "decode", broken)
    again, valid2 = build_image_cache(table, 32, tmp_path / "cache")
    assert np.array_equal(again, images) and valid2.all()
    again, valid2 = build_image_cache(read_data(table.source), 32, tmp_path / "cache")  # read again: still cached
    assert np.array_equal(again, images) and valid2.all()
    fresh, valid3 = build_image_cache(table, 16, tmp_path / "cache")  # a new size decodes: every item fails now
    assert not valid3.any() and not np.asarray(fresh).any()


def test_a_stopped_cache_build_continues_where_it_stopped(table, tmp_path, monkeypatch):
    with pytest.raises(RunStopped):
        build_image_cache(table, 32, tmp_path / "c", should_stop=lambda: True)
    decoded = []
    real = table.reader.decode
    monkeypatch.setattr(table.reader, "decode", lambda it: decoded.append(it.ref) or real(it))
    seen = iter(range(10**6))
    with pytest.raises(RunStopped):  # stopped after 20 images
        build_image_cache(table, 32, tmp_path / "c", should_stop=lambda: next(seen) >= 20)
    first = set(decoded)
    assert 20 <= len(first) < 72
    images, valid = build_image_cache(table, 32, tmp_path / "c")
    assert valid.all() and len(decoded) - len(first) <= 72 - 20 + 8  # the rest, not everything again
    ref, _ = build_image_cache(read_data(table.source), 32, tmp_path / "fresh")
    assert np.array_equal(images, ref)


def test_dataset_with_every_preset_gives_normalised_float_tensors(table, tmp_path):
    images, _ = build_image_cache(table, 40, tmp_path / "cache")
    labels, idx = table.labels(), np.arange(0, 72, 9)
    for preset in ("none", "light", "standard", "medical"):
        aug = AugmentationConfig(preset=preset, vertical_flip=True, rotation=15, scale_min=0.5, color_jitter=0.3)
        for train in (True, False):
            ds = ImageDataset(images, labels, idx, make_transforms(aug, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 32, train))
            x, y = ds[1]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
            assert y.item() == labels[9] and x.min() >= -2.0 - 1e-6 and x.max() <= 2.0 + 1e-6
    plain = ImageDataset(images, labels, idx, make_transforms(AugmentationConfig(preset="none"), (0, 0, 0), (1, 1, 1), 40, True))
    assert torch.allclose(plain[2][0], torch.from_numpy(images[18].astype(np.float32) / 255).permute(2, 0, 1))
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers: the memmap travels by name
    assert len(pickle.dumps(ds)) < 20_000 and isinstance(clone.images, PixelView)
    assert torch.equal(clone[0][1], ds[0][1])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 32, 32)
