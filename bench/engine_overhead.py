"""Engine fine-tuning throughput vs a plain PyTorch loop written the obvious way.

Same model (MobileNetV2, ImageNet weights, every layer training), same batch size, same
threads, same preprocessed images, no augmentation on either side.  Throughput is
training images per second, measured over the training batches of each epoch (the first
epoch, a warm-up, is left out on both sides).

The engine keeps images and weights in channels-last memory order on the CPU as on CUDA,
so the plain loop runs twice: as written the obvious way (the target's comparison) and
with that one line of memory order added (what is left is the engine's own overhead).

    .venv/bin/python bench/engine_overhead.py [--epochs 4] [--image-size 96]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import bench_data, fresh_home, row


def plain_loop(project, epochs: int, channels_last: bool = False) -> list[float]:
    from tlstudio.core.engine import RunContext, select_device
    from tlstudio.core.engine.loop import prepare
    from tlstudio.core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    tech = pm.technique("fine-tuning").fresh()
    ctx = RunContext(project, tech, tech.make_config({}), select_device("cpu"), run=None, plugins=pm)
    prepare(ctx)
    torch.manual_seed(0)
    model = ctx.build_classifier(dropout=0.2)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=project.training.lr, weight_decay=project.training.weight_decay)
    rates = []
    for epoch in range(epochs):
        model.train()
        n, t0 = 0, time.perf_counter()
        for x, y in ctx.loader("train", train=True, epoch=epoch):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(y)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def engine(project) -> list[float]:
    from tlstudio.core.engine import train

    ev: list[dict] = []
    res = train(project, on_event=ev.append)
    assert res["status"] == "done", res
    return [e["train_images_per_s"] for e in ev if e["kind"] == "epoch"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    fresh_home("overhead")
    from tlstudio.core.config import Project

    data, label = bench_data()
    p = Project()
    p.data.source = str(data)
    p.model.image_size = args.image_size
    p.technique.id = "fine-tuning"
    # the same work as the plain loop: no L2-SP penalty, no mixup (the fine-tuning defaults add both)
    p.technique.settings = {"lr_decay": 1.0, "dropout": 0.2, "l2sp": 0.0, "mixup": 0.0, "average_last": 0}
    p.training.epochs = args.epochs
    p.training.batch_size = args.batch_size
    p.training.schedule = "none"
    p.training.device = "cpu"
    p.augmentation.preset = "none"

    # interleave the two so that machine noise hits both alike
    runs: dict[str, list[float]] = {"plain": [], "plain_cl": [], "engine": []}
    for _ in range(2):
        runs["plain"] += plain_loop(p, args.epochs)[1:]
        runs["plain_cl"] += plain_loop(p, args.epochs, channels_last=True)[1:]
        runs["engine"] += engine(p)[1:]
    plain, plain_cl, eng = (statistics.median(runs[k]) for k in ("plain", "plain_cl", "engine"))
    print(f"Fine-tuning MobileNetV2, {label}, {args.image_size} px, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    row("plain PyTorch loop (the obvious way)", f"{plain:7.1f} images/s")
    row("plain loop + channels-last memory order", f"{plain_cl:7.1f} images/s")
    row("studio engine (channels-last)", f"{eng:7.1f} images/s")
    row("ratio engine / plain (target >= 0.97)", f"{eng / plain:7.3f}")
    row("ratio engine / plain + channels-last", f"{eng / plain_cl:7.3f}")


if __name__ == "__main__":
    main()
