"""Frozen feature extraction: the studio's feature cache vs the naive loop.

The naive loop is what a first script does: the frozen backbone runs on every image in
every epoch.  The studio runs it once per image and preprocessing, then trains the head
on the stored features.  Both train the same linear head for the same number of epochs
on the same data; the studio's time includes computing the features (a cold cache).

    .venv/bin/python bench/frozen_cache.py [--epochs 20] [--image-size 112]
"""
from __future__ import annotations

import argparse
import time

import torch
from common import bench_data, fresh_home, row


def naive(project, epochs: int) -> tuple[float, float]:
    """The obvious loop: backbone forward under no_grad every epoch, then the head."""
    from tlstudio.core.engine import RunContext, select_device
    from tlstudio.core.engine.loop import prepare
    from tlstudio.core.metrics import classification_metrics
    from tlstudio.core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    tech = pm.technique("frozen-features").fresh()
    ctx = RunContext(project, tech, tech.make_config({}), select_device("cpu"), run=None, plugins=pm)
    prepare(ctx)  # decoded-image cache built here, outside the timing
    torch.manual_seed(0)
    model = ctx.build_classifier()
    backbone, head = model.backbone.eval(), model.head
    opt = torch.optim.AdamW(head.parameters(), lr=project.training.lr, weight_decay=project.training.weight_decay)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        head.train()
        for x, y in ctx.loader("train", train=False, epoch=epoch, shuffle=True):
            with torch.no_grad():
                f = backbone(x)
            loss = torch.nn.functional.cross_entropy(head(f), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():  # validation every epoch, as the engine does
            for x, y in ctx.loader("val"):
                head(backbone(x))
    with torch.no_grad():
        probs, ys = [], []
        for x, y in ctx.loader("test"):
            probs.append(head(backbone(x)).softmax(1))
            ys.append(y)
    seconds = time.perf_counter() - t0
    m = classification_metrics(torch.cat(probs), torch.cat(ys), ctx.class_names)
    return seconds, m["accuracy"]


def studio(project) -> tuple[float, float, float]:
    from tlstudio.core.engine import train

    t0 = time.perf_counter()
    res = train(project)
    assert res["status"] == "done", res
    return time.perf_counter() - t0, res["test_accuracy"], res.get("test_auc") or float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=112)
    args = ap.parse_args()
    fresh_home("frozen")
    from tlstudio.core.config import Project

    data, label = bench_data()
    p = Project()
    p.data.source = str(data)
    p.model.image_size = args.image_size
    p.technique.id = "frozen-features"
    p.training.epochs = args.epochs
    p.training.batch_size = 64
    p.training.lr = 3e-3
    p.training.schedule = "none"
    p.training.device = "cpu"
    p.augmentation.preset = "none"

    # warm the decoded-image cache for both (decoding is not what is compared)
    naive_s, naive_acc = naive(p, args.epochs)
    fresh_home("frozen-studio")
    studio_s, studio_acc, studio_auc = studio(p)  # cold: decodes and extracts features itself
    warm_s, _, _ = studio(p)  # a second run with the same model and data: features from the cache

    print(f"Frozen MobileNetV2 features, {label}, {args.image_size} px, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads")
    row("naive loop (backbone every epoch)", f"{naive_s:7.1f} s   test acc {naive_acc:.3f}")
    row("studio, cold cache (incl. decoding + features)", f"{studio_s:7.1f} s   test acc {studio_acc:.3f}  AUC {studio_auc:.3f}")
    row("studio, warm cache (same model and data)", f"{warm_s:7.1f} s")
    row("speed-up, cold cache", f"{naive_s / studio_s:7.1f} x")
    row("speed-up, warm cache", f"{naive_s / warm_s:7.1f} x")


if __name__ == "__main__":
    main()
