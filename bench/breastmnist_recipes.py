"""Fine-tuning recipes on BreastMNIST (official split): plain fine-tuning, progressive
unfreezing, L2-SP, and the recommended recipe (the technique defaults the window proposes).

Each recipe trains MobileNetV2 (or --model; ImageNet weights, found offline) at 128 px with the
project's default 'light' augmentation through the studio's engine, once per seed; the
table gives test AUC and accuracy (mean ± sd over the seeds) and the training time (the
engine's train_seconds: data preparation, training, validation, test).

    nice -n 10 .venv/bin/python bench/breastmnist_recipes.py                  # the table (3 seeds)
    .venv/bin/python bench/breastmnist_recipes.py --recipes plain --seeds 0   # one row
    .venv/bin/python bench/breastmnist_recipes.py --recipes recommended --seeds 0 \
        --set technique.settings.l2sp=0.003 --set training.epochs=10          # screening a variant
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from common import BREAST, fresh_home

#: the foundation's fine-tuning defaults (kept here so that "plain" stays plain)
PLAIN_TRAINING = {"epochs": 8, "lr": 1e-3, "batch_size": 32, "schedule": "cosine", "warmup_epochs": 0.5,
                  "weight_decay": 1e-4, "optimizer": "adamw"}
PLAIN_SETTINGS = {"lr_decay": 0.5, "head": "linear", "dropout": 0.2, "hidden": 256, "l2sp": 0.0, "mixup": 0.0,
                  "average_last": 0}

RECIPES = {
    "plain": ("fine-tuning", PLAIN_SETTINGS, PLAIN_TRAINING),
    "progressive": ("progressive-unfreezing", {**PLAIN_SETTINGS, "stages": 3, "stage_epochs": "1", "stage_lr": "1"},
                    PLAIN_TRAINING),
    "l2sp": ("fine-tuning", {**PLAIN_SETTINGS, "l2sp": 0.01}, PLAIN_TRAINING),
    # the technique's own Config defaults and recommended_training(): what the window proposes
    "recommended": ("progressive-unfreezing", None, None),
    # what `tlstudio train --technique fine-tuning` does: the fine-tuning technique's own defaults
    "fine-tuning": ("fine-tuning", None, None),
}
TITLES = {"plain": "plain fine-tuning", "progressive": "progressive unfreezing (3 stages)",
          "l2sp": "fine-tuning + L2-SP (λ 0.01)", "recommended": "recommended (best combination)",
          "fine-tuning": "fine-tuning, its defaults (the CLI's)"}


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def make_project(recipe: str, seed: int, image_size: int, overrides: list[str], model: str = "mobilenet_v2"):
    from tlstudio.core.config import Project
    from tlstudio.core.plugins import get_plugin_manager

    tid, settings, training = RECIPES[recipe]
    tech = get_plugin_manager().technique(tid)
    p = Project()
    p.name = f"breastmnist-{recipe}"
    p.data.source = str(BREAST)
    p.model.architecture = model
    p.model.image_size = image_size
    p.technique.id = tid
    p.technique.settings = dict(settings) if settings is not None else tech.make_config({}).model_dump()
    for k, v in (training if training is not None else tech.recommended_training()).items():
        setattr(p.training, k, v)
    p.training.seed = seed
    p.training.device = "cpu"
    # a breast lesion's mirror image shows the same lesion: the figures in docs/results.md were
    # measured with flips and the test-time flip (a project says so with augmentation.mirror_safe)
    p.augmentation.mirror_safe = True
    data = p.model_dump(mode="json")
    for item in overrides:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        d = data
        for part in path:
            d = d.setdefault(part, {})
        d[last] = _parse_value(value)
    out = Project.model_validate(data)
    return out


def run_one(recipe: str, seed: int, image_size: int, overrides: list[str], trace: bool = False,
            model: str = "mobilenet_v2") -> dict:
    from tlstudio.core.engine import Trainer

    p = make_project(recipe, seed, image_size, overrides, model)
    trainer = Trainer(p)
    if trace:  # analysis only: the test split at every epoch (never used by the engine's choices)
        def on_event(e):
            if e["kind"] == "epoch":
                t = trainer.ctx.evaluate("test")
                print(f"    epoch {e['epoch']:>2}: val AUC {e.get('val_auc', 0):.3f} loss {e.get('val_loss', 0):.3f} "
                      f"ACC {e.get('val_accuracy', 0):.3f} | test AUC {t['auc']:.3f} ACC {t['accuracy']:.3f}", flush=True)

        trainer.on_event = on_event
    res = trainer.fit()
    if res.get("status") != "done":
        raise SystemExit(f"{recipe} seed {seed}: {res.get('message')}")
    return {"recipe": recipe, "seed": seed, "auc": res["test_auc"], "acc": res["test_accuracy"],
            "seconds": res["train_seconds"], "best_epoch": res["best_epoch"], "monitor": res["monitor"],
            "load": os.getloadavg()[0], "technique": p.technique.id, "settings": p.technique.settings,
            "training": {k: v for k, v in p.training.model_dump().items() if k in (
                "epochs", "lr", "schedule", "warmup_epochs", "weight_decay", "label_smoothing", "class_balance",
                "monitor")}}


def _ms(values: list[float], digits: int = 3) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated: " + ", ".join(RECIPES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--model", default="mobilenet_v2", help="architecture (its weights must be present offline)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a project field of every recipe, e.g. technique.settings.l2sp=0.003")
    ap.add_argument("--jsonl", help="append every run's figures to this file")
    ap.add_argument("--trace", action="store_true",
                    help="analysis: also print the test metrics of every epoch (the engine never sees them)")
    args = ap.parse_args()
    if not BREAST.exists():
        raise SystemExit(f"{BREAST} is absent: this benchmark needs ../shared/data/medmnist/breastmnist.npz")
    import torch

    torch.set_num_threads(args.threads)
    fresh_home("recipes")
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"BreastMNIST (official split 546/78/156), {args.model} ImageNet, {args.image_size} px, CPU, "
          f"{args.threads} threads; load at start {os.getloadavg()[0]:.1f}" + (f"; overrides {args.set}" if args.set else ""))
    rows = []
    for recipe in recipes:
        runs = []
        for seed in seeds:
            r = run_one(recipe, seed, args.image_size, args.set, args.trace, args.model)
            runs.append(r)
            print(f"  {recipe:<12} seed {seed}: AUC {r['auc']:.3f}  ACC {r['acc']:.3f}  {r['seconds']:.0f} s  "
                  f"(best epoch {r['best_epoch']} by {r['monitor']}, load {r['load']:.1f})", flush=True)
            if args.jsonl:
                with open(args.jsonl, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**r, "overrides": args.set, "time": time.time()}) + "\n")
        rows.append((recipe, runs))
    print()
    print("| recipe | test AUC | test ACC | time (s) | seeds |")
    print("|---|---|---|---|---|")
    for recipe, runs in rows:
        print(f"| {TITLES.get(recipe, recipe)} | {_ms([r['auc'] for r in runs])} | {_ms([r['acc'] for r in runs])} | "
              f"{_ms([r['seconds'] for r in runs], 0)} | {len(runs)} |")
    first = rows[-1][1][0] if rows else None
    if first:
        print(f"\nlast recipe: technique {first['technique']}, settings {first['settings']}, training {first['training']}")
    print(f"load at end {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
