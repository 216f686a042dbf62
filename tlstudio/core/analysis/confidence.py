"""A finished run's test metrics with 95% confidence intervals, read back from its folder
(model card, HTML report)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def load_predictions(run_dir: str | Path, split: str = "test", predicted: bool = False) -> tuple | None:
    """(probabilities (N, K), true class indices (N,), class names, refs) from a
    classification run's ``<split>_predictions.csv`` (with ``predicted``: and the class each
    case was called, (N,)); None when the run has none."""
    path = Path(run_dir) / f"{split}_predictions.csv"
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return None
    head = rows[0]
    if "label" not in head:  # not one class per item (multi-label, or another task's predictions)
        return None
    pcols = [i for i, h in enumerate(head) if h.startswith("p_")]
    names = [head[i][2:] for i in pcols]
    li = head.index("label")
    pi = head.index("predicted") if "predicted" in head else None
    idx = {n: k for k, n in enumerate(names)}
    probs, targets, refs, called = [], [], [], []
    for r in rows[1:]:
        if len(r) < len(head) or r[li] not in idx:
            continue
        p = [float(r[i]) for i in pcols]
        probs.append(p)
        targets.append(idx[r[li]])
        refs.append(r[0])
        called.append(idx.get(r[pi], int(np.argmax(p))) if pi is not None else int(np.argmax(p)))
    if not probs:
        return None
    out = (np.asarray(probs), np.asarray(targets, dtype=np.int64), names, refs)
    return out + (np.asarray(called, dtype=np.int64),) if predicted else out


def test_results(run_dir: str | Path, n_boot: int = 2000) -> dict:
    """The run's test metrics with 95% confidence intervals: {"metrics": {...}, "ci": {...}}.

    ``metrics`` comes from evaluation_test.json (or final.json); ``ci`` is computed from the
    test predictions (:func:`tlstudio.core.analysis.metrics.classification_cis`), empty for tasks
    without them."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "evaluation_test.json") or read_json(run_dir / "final.json").get("test", {})
    ci: dict = {}
    pred = load_predictions(run_dir, "test", predicted=True)
    if pred is not None:
        from .metrics import classification_cis

        probs, targets, names, _, called = pred
        ci = classification_cis(probs, targets, names, n_boot=n_boot, preds=called)
    return {"metrics": metrics, "ci": ci}
