"""Frozen feature extraction: the studio's feature cache vs the naive loop.

The naive loop is what a first script does: the frozen backbone runs on every image in
every epoch.  The studio runs it once per image and preprocessing, then trains the head
on the stored features.  Both train the same linear head for the same number of epochs
on the same data; the studio's time includes computing the features (a cold cache).

    .venv/bin/python bench/frozen_cache.py [--epochs 20] [--image-size 112] [--busy]

--busy runs a CPU load generator beside the measurement (one process spinning on one core,
another program on a shared workstation) and times the naive loop twice: with PyTorch's
default threads, as a first script runs, and with the threads the studio chose for the
free cores, so that the speed-up is not flattered by a naive loop that collapses under load.
The studio's cold run is broken down into its phases (from its own events).
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time

import torch
from common import bench_data, fresh_home, row


def naive(project, epochs: int, threads: int | None = None) -> tuple[float, float]:
    """The obvious loop: backbone forward under no_grad every epoch, then the head."""
    from tlstudio.core.engine import RunContext, select_device
    from tlstudio.core.engine.loop import prepare
    from tlstudio.core.analysis.metrics import classification_metrics
    from tlstudio.core.plugins import get_plugin_manager

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
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
    torch.set_num_threads(before)
    m = classification_metrics(torch.cat(probs), torch.cat(ys), ctx.class_names)
    return seconds, m["accuracy"]


def studio(project) -> tuple[float, float, float, dict]:
    from tlstudio.core.engine import train

    ev: list[dict] = []
    t0 = time.perf_counter()
    res = train(project, on_event=ev.append)
    assert res["status"] == "done", res
    return time.perf_counter() - t0, res["test_accuracy"], res.get("test_auc") or float("nan"), phases(ev)


def phases(ev: list[dict]) -> dict:
    """Seconds of the cold run's phases, from its events: data (read, decode, cache),
    features (the backbone once per image), head epochs, and the rest (test, report)."""
    t = [e["time"] for e in ev]
    start, end = t[0], t[-1]
    feats = [e["time"] for e in ev if e["kind"] == "progress" and "features" in str(e.get("task", ""))]
    epochs = [e for e in ev if e["kind"] == "epoch"]
    threads = [e["message"] for e in ev if e["kind"] == "log" and "thread" in e.get("message", "")]
    first_feat = feats[0] if feats else start
    last_feat = feats[-1] if feats else first_feat
    head = sum(e["seconds"] for e in epochs)
    return {"data": first_feat - start, "features": last_feat - first_feat, "head epochs": head,
            "rest": max(0.0, end - last_feat - head), "threads": threads[0] if threads else "all cores"}


@contextlib.contextmanager
def busy_core(on: bool):
    """Another program keeping one core busy (a Python process spinning) while measured."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--busy", action="store_true", help="a load generator keeps one core busy meanwhile")
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

    ap_busy = args.busy
    print(f"load before: {loadavg()}{'  (+ one busy core from the load generator)' if ap_busy else ''}")
    with busy_core(ap_busy):
        from tlstudio.core.engine.cpu import free_cores

        studio_threads = min(torch.get_num_threads(), free_cores())
        naive_s, naive_acc = naive(p, args.epochs)  # decoding is not what is compared: cached before timing
        naive_free_s = naive(p, args.epochs, threads=studio_threads)[0] if studio_threads < torch.get_num_threads() \
            else naive_s
        fresh_home("frozen-studio")
        studio_s, studio_acc, studio_auc, parts = studio(p)  # cold: decodes and extracts features itself
        warm_s, _, _, _ = studio(p)  # a second run with the same model and data: features from the cache
    print(f"Frozen MobileNetV2 features, {label}, {args.image_size} px, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads by default; load after: {loadavg()}")
    row("naive loop (backbone every epoch)", f"{naive_s:7.1f} s   test acc {naive_acc:.3f}")
    if naive_free_s != naive_s:
        row(f"naive loop, {studio_threads} thread(s) (the free cores)", f"{naive_free_s:7.1f} s")
    row("studio, cold cache (incl. decoding + features)", f"{studio_s:7.1f} s   test acc {studio_acc:.3f}  AUC {studio_auc:.3f}")
    for k in ("data", "features", "head epochs", "rest"):
        row(f"  of which {k}", f"{parts[k]:7.1f} s")
    row("  threads", parts["threads"])
    row("studio, warm cache (same model and data)", f"{warm_s:7.1f} s")
    best_naive = min(naive_s, naive_free_s)
    row("speed-up, cold cache", f"{naive_s / studio_s:7.1f} x" + (f"   ({best_naive / studio_s:.1f} x against the "
                                                                   "faster naive loop)" if best_naive != naive_s else ""))
    row("speed-up, warm cache", f"{naive_s / warm_s:7.1f} x")


if __name__ == "__main__":
    main()
