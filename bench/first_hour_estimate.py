"""How close is the Technique page's expected time ("Quick: 4 epochs, about 1 min") to the real
training time?  Measures the model's speed the way the page does (tlstudio.core.analysis.recommend.speed_of,
in a fresh studio home), computes the page's estimate (tlstudio.core.analysis.guide.training_plan)
for each technique, trains the medical sample with it, and prints estimate, actual training time
and their ratio, with the load average (2 cores shared with other work: timings vary with it).

    .venv/bin/python bench/first_hour_estimate.py [--size 64] [--epochs 4] [--techniques progressive-unfreezing,frozen-features]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "samples" / "breast-ultrasound" / "project.toml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--techniques", default="progressive-unfreezing,frozen-features")
    args = ap.parse_args()
    os.environ["TLSTUDIO_HOME"] = tempfile.mkdtemp(prefix="tl-estimate-")
    import torch

    torch.set_num_threads(2)
    from tlstudio.core.analysis.guide import split_sizes, training_plan
    from tlstudio.core.config import load_project
    from tlstudio.core.data import read_data
    from tlstudio.core.engine import train
    from tlstudio.core.plugins import get_plugin_manager
    from tlstudio.core.analysis.recommend import speed_of

    pm = get_plugin_manager()
    base = load_project(SAMPLE).with_absolute_paths()
    table = read_data(base.data.source, base.data.format, base.data.options)
    counts = split_sizes(table, base.data.split)
    load0 = os.getloadavg()[0]
    t = time.time()
    speed = speed_of(base.model.architecture, args.size, "cpu", measure=True)
    print(f"speed of {base.model.architecture} at {args.size} px: {speed:.1f} images/s (measured in "
          f"{time.time() - t:.1f} s, load {load0:.1f})", flush=True)
    rows = []
    for tid in args.techniques.split(","):
        p = base.model_copy(deep=True)
        p._path = None
        p.technique.id, p.technique.settings = tid, {}
        for k, v in pm.technique(tid).recommended_training().items():
            setattr(p.training, k, v)
        p.training.epochs, p.training.device, p.model.image_size = args.epochs, "cpu", args.size
        p.augmentation.mirror_safe = True
        frozen = tid == "frozen-features"
        plan = training_plan(args.epochs, counts, speed, frozen, p.augmentation.flips_at_test)
        estimate = next(d.seconds for d in plan.durations if d.key == "standard")
        load_before = os.getloadavg()[0]
        final = train(p, plugins=pm)
        actual = float(final.get("train_seconds") or 0)
        row = {"technique": tid, "epochs": args.epochs, "size": args.size, "estimate_s": round(estimate, 1),
               "actual_s": round(actual, 1), "ratio": round(actual / estimate, 2) if estimate else None,
               "load": [round(load_before, 1), round(os.getloadavg()[0], 1)], "test_auc": final.get("test_auc")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
