"""Training throughput on the CPU: one process vs N processes with torchrun (gloo, DDP).

Same project (fine-tuning MobileNetV2, ImageNet weights, same data, split, image size and
global batch), all started through the command line as a user would: one process with one
thread, N processes sharing the cores out (cores / N threads each), and one process using
all the cores as threads (on a machine shared with other work, intra-op threads that wait
for each other can collapse: the 1-thread figure is the steadier reference).  Throughput
is training images per second over all processes, from the run's epoch events (the first
epoch, a warm-up, is left out); also the wall time of the whole command (start-up of
torchrun and its processes included) and both test accuracies.

    .venv/bin/python bench/distributed.py [--nproc 2] [--epochs 3] [--image-size 64]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, bench_data, fresh_home, row


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_cli(args: list[str], threads: int) -> tuple[dict, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "tlstudio.cli", *args, "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout), wall


def epoch_rates(run_dir: str) -> list[float]:
    from tlstudio.core.runs import Run

    return [e["train_images_per_s"] for e in Run(run_dir).epochs()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    home = fresh_home("distributed")
    from tlstudio.core.config import Project

    cores = os.cpu_count() or 1
    data, label = bench_data()
    p = Project()
    p.name = "bench-distributed"
    p.data.source = str(data)
    p.model.image_size = args.image_size
    p.technique.id = "fine-tuning"
    p.training.epochs = args.epochs
    p.training.batch_size = args.batch_size
    p.training.device = "cpu"
    path = p.save(home / "project" / "project.toml")
    runs = home / "runs"

    load_before = loadavg()
    # warm the image cache once, so no side pays for decoding
    run_cli(["train", str(path), "--runs-dir", str(runs), "--epochs", "1", "--threads", "1"], 1)
    one_1, wall_11 = run_cli(["train", str(path), "--runs-dir", str(runs), "--threads", "1"], 1)
    many, wall_n = run_cli(["train", str(path), "--runs-dir", str(runs), "--nproc", str(args.nproc)],
                           max(1, cores // args.nproc))
    one_c, wall_1c = run_cli(["train", str(path), "--runs-dir", str(runs), "--threads", str(cores)], cores)
    load_after = loadavg()

    def rate(res: dict) -> float:
        r = epoch_rates(res["run_dir"])
        return statistics.median(r[1:] or r)

    r11, rn, r1c = rate(one_1), rate(many), rate(one_c)
    print(f"Fine-tuning MobileNetV2 on the CPU, {label}, {args.image_size} px, global batch {args.batch_size}, "
          f"{args.epochs} epochs, {cores} cores")
    row("load average before / after", f"{load_before} / {load_after}")
    row("1 process, 1 thread: images/s (training)", f"{r11:8.1f}")
    row(f"1 process, {cores} threads: images/s", f"{r1c:8.1f}")
    row(f"{args.nproc} processes (torchrun, gloo), {max(1, cores // args.nproc)} thread(s) each", f"{rn:8.1f}")
    row(f"ratio {args.nproc} processes / 1 process x 1 thread", f"{rn / r11:8.3f}")
    row(f"ratio {args.nproc} processes / 1 process x {cores} threads", f"{rn / r1c:8.3f}")
    row(f"wall time: 1x1 / {args.nproc} proc / 1x{cores}", f"{wall_11:6.1f} s / {wall_n:6.1f} s / {wall_1c:6.1f} s "
        "(start-up included)")
    row(f"test accuracy: 1x1 / {args.nproc} proc / 1x{cores}",
        f"{one_1['test_accuracy']:.3f} / {many['test_accuracy']:.3f} / {one_c['test_accuracy']:.3f}")
    row(f"test AUC: 1x1 / {args.nproc} proc / 1x{cores}",
        f"{one_1['test_auc']:.3f} / {many['test_auc']:.3f} / {one_c['test_auc']:.3f}")

if __name__ == "__main__":
    main()
