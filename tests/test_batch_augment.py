"""Augmentation of whole batches (the GPU path), checked on CPU tensors: the same transform
as the loader's, random per image, repeatable per seed, and an evaluation path identical to
the loader's; the device loader delivers every batch of an epoch in the loader's order."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tlstudio.core.config import AugmentationConfig
from tlstudio.core.data import ImageDataset, build_image_cache, read_data
from tlstudio.core.data.batch_augment import Unsupported, _crop_params, compile_transform
from tlstudio.core.data.device_loader import DeviceLoader
from tlstudio.core.data.transforms import make_transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PRESETS = ("light", "standard", "medical")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Real digits from the image cache (36 x 36, uint8 N x H x W x 3) and their labels."""
    from test_data_helpers import digit_folder

    root = tmp_path_factory.mktemp("ba")
    table = read_data(digit_folder(root / "d", classes=(0, 1, 2), per_class=16))
    images, valid = build_image_cache(table, 36, root / "cache")
    assert valid.all()
    return images, table.labels()


def batch(images, n=8, same=False):
    idx = np.zeros(n, int) if same else np.arange(n)
    return torch.from_numpy(np.asarray(images[idx])).permute(0, 3, 1, 2).contiguous()


def aug(preset, **kw):
    return AugmentationConfig(preset=preset, color_jitter=0.3, rotation=15.0, scale_min=0.5, **kw)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_gives_normalised_batches_random_per_image_and_repeatable_per_seed(digits, preset):
    images, _ = digits
    ba = compile_transform(make_transforms(aug(preset, horizontal_flip=True), MEAN, STD, 32, train=True))
    x = batch(images, 16, same=True)  # one image sixteen times
    out = ba(x, torch.Generator().manual_seed(1))
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32
    lo, hi = ((0 - np.array(MEAN)) / STD).min(), ((1 - np.array(MEAN)) / STD).max()
    assert out.min() >= lo - 1e-4 and out.max() <= hi + 1e-4
    flat = out.flatten(1)
    distinct = {tuple(r) for r in torch.round(flat * 1e3).int().tolist()}
    assert len(distinct) == 16  # every copy got its own parameters
    assert torch.equal(out, ba(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, ba(x, torch.Generator().manual_seed(2)))


def test_evaluation_path_is_exactly_the_loaders(digits):
    images, _ = digits
    for preset in ("none", *PRESETS):
        tf = make_transforms(aug(preset), MEAN, STD, 36, train=False)
        ba = compile_transform(tf)
        assert not ba.random
        x = batch(images, 6)
        assert torch.equal(ba(x), torch.stack([tf(im) for im in x]))
    tf = make_transforms(aug("none"), MEAN, STD, 28, train=False)  # a resize too: torchvision's own, on the batch
    assert torch.allclose(compile_transform(tf)(batch(images, 4)), torch.stack([tf(im) for im in batch(images, 4)]),
                          atol=1e-6)
    plain = compile_transform(make_transforms(aug("none"), MEAN, STD, 36, train=True))  # preset none: no randomness
    assert not plain.random


def test_geometry_matches_torchvision_op_by_op(digits):
    x = batch(digits[0], 4)
    cases = [
        (v2.RandomHorizontalFlip(p=1.0), TF.horizontal_flip),
        (v2.RandomVerticalFlip(p=1.0), TF.vertical_flip),
        (v2.RandomRotation((90, 90)), lambda t: TF.rotate(t, 90)),
        (v2.RandomRotation((20, 20)), lambda t: TF.rotate(t, 20, interpolation=v2.InterpolationMode.BILINEAR)),
        (v2.RandomAffine(degrees=(12, 12), scale=(1.1, 1.1)),
         lambda t: TF.affine(t, 12, [0, 0], 1.1, [0.0, 0.0], interpolation=v2.InterpolationMode.BILINEAR)),
    ]
    for op, ref in cases:
        out = compile_transform(v2.Compose([op, v2.ToDtype(torch.float32, scale=True)]))(x, torch.Generator())
        expected = TF.to_dtype(ref(x), torch.float32, scale=True)
        assert (out - expected).abs().mean() < 2e-3, type(op).__name__  # one bilinear resampling vs uint8 rounding
    none = compile_transform(v2.Compose([v2.RandomHorizontalFlip(p=0.0), v2.ToDtype(torch.float32, scale=True)]))
    assert torch.equal(none(x, torch.Generator()), TF.to_dtype(x, torch.float32, scale=True))


def test_flips_follow_the_loaders_transform(digits):
    """The batch path adds no op the loader's transform lacks: flips only where it flips."""
    for flip in (False, True):
        ba = compile_transform(make_transforms(aug("light", horizontal_flip=flip, mirror_safe=True), MEAN, STD, 32,
                                               train=True))
        assert any(op.kind == "hflip" for op in ba.geometric) == flip
        assert not any(op.kind == "vflip" for op in ba.geometric)


def test_crop_parameters_follow_torchvisions_distribution():
    g = torch.Generator().manual_seed(0)
    i, j, h, w = _crop_params(g, 2000, 64, 48, (0.08, 1.0), (3 / 4, 4 / 3))
    assert (h >= 1).all() and (w >= 1).all() and (h <= 64).all() and (w <= 48).all()
    assert (i >= 0).all() and (j >= 0).all() and (i + h <= 64).all() and (j + w <= 48).all()
    ours = (h * w / (64 * 48)).numpy()
    torch.manual_seed(0)
    crop = v2.RandomResizedCrop(32)
    theirs = []
    for _ in range(2000):
        p = crop.make_params([torch.zeros(3, 64, 48)])
        theirs.append(p["height"] * p["width"] / (64 * 48))
    assert abs(ours.mean() - np.mean(theirs)) < 0.02 and abs(np.median(ours) - np.median(theirs)) < 0.03


def test_an_unknown_op_is_refused():
    with pytest.raises(Unsupported):
        compile_transform(v2.Compose([v2.GaussianBlur(3), v2.ToDtype(torch.float32, scale=True)]))


def test_device_loader_gives_every_batch_of_the_epoch_in_the_loaders_order(digits):
    images, labels = digits
    idx = np.arange(5, 45)
    tf = make_transforms(aug("none"), MEAN, STD, 36, train=False)
    ds = ImageDataset(images, labels, idx, tf)
    sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(3))
    loader = DeviceLoader(ds, torch.utils.data.BatchSampler(sampler, 16, False), torch.device("cpu"),
                          compile_transform(tf), seed=0)
    got = list(loader)
    ref = list(torch.utils.data.DataLoader(ds, batch_size=16, sampler=torch.utils.data.RandomSampler(
        ds, generator=torch.Generator().manual_seed(3))))
    assert len(got) == len(loader) == 3 and [len(y) for _, y in got] == [16, 16, 8]
    for (x, y), (rx, ry) in zip(got, ref):
        assert torch.equal(y, ry) and torch.equal(x, rx)


def test_a_loop_that_stops_early_leaves_no_thread_behind(digits):
    images, labels = digits
    tf = make_transforms(aug("standard"), MEAN, STD, 32, train=True)
    ds = ImageDataset(images, labels, np.arange(48), tf)
    loader = DeviceLoader(ds, torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(ds), 4, False),
                          torch.device("cpu"), compile_transform(tf), seed=0, prefetch=2)
    before = threading.active_count()
    for k, (x, y) in enumerate(loader):
        assert x.shape == (4, 3, 32, 32)
        if k == 1:
            break
    assert threading.active_count() == before


@pytest.mark.slow
def test_the_engine_feeds_whole_batches_where_asked_and_the_run_learns(tmp_path):
    """augment_on: "auto" keeps the CPU's loader; "device" (the GPU's default) also works on the
    CPU, through the whole engine: a run that learns."""
    from conftest import make_digit_folder, quick_project

    from tlstudio.core.engine import RunContext, select_device, train
    from tlstudio.core.engine.loop import prepare
    from tlstudio.core.plugins import get_plugin_manager

    data = make_digit_folder(tmp_path / "digits", classes=(0, 1, 7), per_class=30)
    project = quick_project(data, epochs=2, batch_size=16, lr=2e-3)
    project.augmentation.preset = "light"
    pm = get_plugin_manager()
    for mode, kind in (("auto", torch.utils.data.DataLoader), ("device", DeviceLoader)):
        project.training.augment_on = mode
        tech = pm.technique("fine-tuning").fresh()
        ctx = RunContext(project, tech, tech.make_config({}), select_device("cpu"), run=None, plugins=pm)
        prepare(ctx)  # the task reads the data, as a run does
        assert isinstance(ctx.loader("train", train=True), kind) and isinstance(ctx.loader("val"), kind)
    res = train(project, runs_dir=tmp_path / "runs")
    assert res["status"] == "done" and res["test_accuracy"] > 0.7
