"""Calibration, operating point and prediction sets on two real data sets (docs/results.md).

    nice -n 10 .venv/bin/python bench/calibration.py [--only breastmnist|uci|breastmnist-default] [--seeds 3]
        [--json out.json]

1. BreastMNIST (official split 546/78/156), frozen ImageNet MobileNetV2 features at 64 px and a
   new head, 10 epochs, positive class "0" (malignant), operating point "sensitivity at least
   0.9" chosen on validation; conformal LAC at 90%.  The same as
   ``tlstudio train --data ../shared/data/medmnist/breastmnist.npz --technique frozen-features --image-size 64
   --epochs 10 --threads 2 --set decision.positive_class='"0"' --set decision.threshold_method='"sensitivity"' --json``.
2. UCI sentiment sentences (amazon + imdb + yelp, 2,979 texts after duplicates; 70/10/20),
   MiniLM-L6 with its embeddings and lower 4 of 6 layers frozen (bench/text_classification.py's
   recipe otherwise, 3 epochs), positive class "negative", Youden's J; conformal LAC at 90%;
   results by source (amazon, imdb, yelp).

Prints ECE / MCE / Brier on test before and after temperature scaling, the temperature and
whether it helped held-out validation cases (5-fold cross-validation on validation),
empirical coverage and mean set size, the test operating point with Wilson intervals, and
the load average.  Quality figures only; the times are under the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, fresh_home  # noqa: E402

NPZ = REPO.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"
UCI = REPO.parent / "shared" / "data" / "text" / "sentiment_labelled_sentences"


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def breastmnist_project():
    from tlstudio.core.config import Project

    p = Project(name="BreastMNIST decision")
    p.data.source = str(NPZ)
    p.technique.id = "frozen-features"
    p.model.image_size = 64
    p.training.epochs = 10
    p.decision.positive_class = "0"
    p.decision.threshold_method = "sensitivity"
    p.decision.target = 0.9
    p.training.threads = 2
    p.training.device = "cpu"
    return p


def breastmnist_default_project():
    """The medical sample as a user gets it (progressive unfreezing, 128 px, 10 epochs: the
    recommended recipe), mirror images answered yes (a breast lesion), the same decision settings."""
    from tlstudio.core.config import load_project

    p = load_project(REPO / "resources" / "samples" / "breast-ultrasound" / "project.toml")
    p.augmentation.mirror_safe = True
    p.decision.positive_class = "malignant"
    p.decision.threshold_method = "sensitivity"
    p.decision.target = 0.9
    p.training.threads = 2
    p.training.device = "cpu"
    return p


def uci_project():
    from text_classification import project

    p = project("UCI sentiment decision", {}, {"freeze_embeddings": True, "frozen_layers": 4}, epochs=3)
    p.decision.positive_class = "negative"
    p.decision.threshold_method = "youden"
    p.decision.report_by = "source"
    return p


def summary(name: str, final: dict, seconds: float, load_before: str) -> dict:
    t = final.get("test", {})
    rep = t.get("decision") or {}
    cal = rep.get("calibration") or {}
    b, a = cal.get("before") or {}, cal.get("after") or {}
    op = rep.get("operating_point") or {}
    cf = rep.get("conformal") or {}
    out = {"data": name, "run_dir": final.get("run_dir"), "test_n": t.get("n"), "accuracy": t.get("accuracy"),
           "auc": t.get("auc"), "temperature": cal.get("temperature"),
           "ece_before": b.get("ece"), "ece_after": a.get("ece"), "mce_before": b.get("mce"), "mce_after": a.get("mce"),
           "brier_before": b.get("brier"), "brier_after": a.get("brier"), "nll_before": b.get("nll"),
           "nll_after": a.get("nll"), "coverage": cf.get("coverage"), "coverage_ci95": cf.get("coverage_ci95"),
           "mean_set_size": cf.get("mean_set_size"), "level": cf.get("level"), "operating_point": op,
           "method": (rep.get("decision") or {}).get("method"), "subgroups": _subgroups(final.get("run_dir")),
           "seconds": round(seconds, 1), "load_before": load_before, "load_after": load(),
           "calibration_check": (rep.get("decision") or {}).get("calibration_check"), "seed": final.get("seed")}
    return out


def _subgroups(run_dir) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "evaluation_test.json").read_text()).get("subgroups")
    except (OSError, ValueError, TypeError):
        return None


def show(s: dict) -> None:
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"\n== {s['data']} ({s['test_n']} test cases; run {s['run_dir']})")
    print(f"accuracy {f(s['accuracy'])}, AUC {f(s['auc'])}; temperature {f(s['temperature'])}")
    chk = s.get("calibration_check") or {}
    if chk.get("folds"):
        print(f"held-out validation NLL ({chk['folds']}-fold): {chk['nll_uncalibrated']:.3f} uncalibrated, "
              f"{chk['nll_calibrated']:.3f} calibrated: the temperature {'helps' if chk['helps'] else 'does NOT help'}")
    red = (1 - s["ece_after"] / s["ece_before"]) * 100 if s["ece_before"] else float("nan")
    print(f"ECE {f(s['ece_before'])} -> {f(s['ece_after'])} ({red:.0f}% lower); MCE {f(s['mce_before'])} -> "
          f"{f(s['mce_after'])}; Brier {f(s['brier_before'])} -> {f(s['brier_after'])}; NLL {f(s['nll_before'])} -> "
          f"{f(s['nll_after'])}")
    if s["coverage"] is not None:
        ci = s["coverage_ci95"]
        print(f"conformal LAC at {s['level']:.0%}: coverage {f(s['coverage'])} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), "
              f"mean set size {s['mean_set_size']:.2f}")
    op = s["operating_point"]
    if op:
        print(f"operating point ({s['method']}, threshold {op['threshold']:.3f}): sensitivity {f(op['sensitivity'])} "
              f"({op['sensitivity_ci95'][0]:.3f}-{op['sensitivity_ci95'][1]:.3f}), specificity {f(op['specificity'])} "
              f"({op['specificity_ci95'][0]:.3f}-{op['specificity_ci95'][1]:.3f}); TP {op['tp']} FN {op['fn']} "
              f"TN {op['tn']} FP {op['fp']}")
    sg = s.get("subgroups")
    if sg:
        for g in sg["groups"]:
            print(f"  {sg['column']} = {g['name']}: n {g['n']}, " + ", ".join(
                f"{m} {f(g.get(m))}" for m in sg["metrics"]) + (f"  FAR BELOW: {g['far_below']}" if g["far_below"] else ""))
    print(f"{s['seconds']} s; load {s['load_before']} before, {s['load_after']} after")


def show_seeds(name: str, runs: list[dict]) -> None:
    import numpy as np

    def ms(key):
        v = np.array([r[key] for r in runs if r.get(key) is not None], dtype=float)
        return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else "–"

    helps = sum(bool((r.get("calibration_check") or {}).get("helps")) for r in runs)
    print(f"\n== {name} over {len(runs)} seeds (mean ± sd): ECE {ms('ece_before')} -> {ms('ece_after')}; "
          f"Brier {ms('brier_before')} -> {ms('brier_after')}; coverage {ms('coverage')}, mean set size "
          f"{ms('mean_set_size')}; AUC {ms('auc')}; temperature {ms('temperature')} (it helped held-out validation "
          f"cases in {helps} of {len(runs)})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("breastmnist", "breastmnist-default", "uci"))
    ap.add_argument("--seeds", type=int, default=1, help="train each recipe with this many seeds (0, 1, ...)")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    fresh_home("calibration")
    from tlstudio.core.engine import train

    out = []
    # breastmnist-default (the recommended recipe) runs only when asked: --only breastmnist-default
    for name, make, path in (("breastmnist", breastmnist_project, NPZ), ("uci", uci_project, UCI),
                             ("breastmnist-default", breastmnist_default_project, NPZ)):
        if (args.only or "") != name and (args.only or name == "breastmnist-default"):
            continue
        if not path.exists():
            print(f"{path} is absent: {name} skipped")
            continue
        mine = []
        for seed in range(args.seeds):
            lb, t0 = load(), time.time()
            project = make()
            project.training.seed = project.training.seed + seed
            final = train(project)
            if final.get("status") != "done":
                print(f"{name}: {final.get('status')}: {final.get('message')}")
                continue
            s = summary(name, final, time.time() - t0, lb) | {"seed": project.training.seed}
            show(s)
            mine.append(s)
        if len(mine) > 1:
            show_seeds(name, mine)
        out += mine
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
