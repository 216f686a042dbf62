"""Classification metrics a clinician reads (torchmetrics underneath)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional import classification as C


def _f(x) -> float | None:
    v = float(x)
    return None if math.isnan(v) or math.isinf(v) else v


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def auc_score(probs: torch.Tensor, targets: torch.Tensor) -> float | None:
    """Binary AUC (positive = class 1) or macro one-vs-rest AUC; None when undefined."""
    k = probs.shape[1]
    present = torch.unique(targets)
    if len(present) < 2:
        return None
    if k == 2:
        return _f(C.binary_auroc(probs[:, 1], targets))
    # one-vs-rest over the classes that occur (torchmetrics gives 0 for absent ones)
    per = C.multiclass_auroc(probs, targets, num_classes=k, average=None)
    vals = [float(per[c]) for c in present.tolist()]
    return _f(np.mean(vals))


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, class_names: list[str]) -> dict:
    """Everything the Evaluate page and the report show, as plain JSON-able numbers.

    ``probs``: (N, K) probabilities; ``targets``: (N,) class indices.
    """
    probs = probs.detach().float().cpu()
    targets = targets.detach().long().cpu()
    k = len(class_names)
    n = int(targets.numel())
    if n == 0:
        return {"n": 0}
    preds = probs.argmax(1)
    kw = dict(num_classes=k, average=None)
    prec = C.multiclass_precision(preds, targets, **kw)
    rec = C.multiclass_recall(preds, targets, **kw)
    spec = C.multiclass_specificity(preds, targets, **kw)
    f1 = C.multiclass_f1_score(preds, targets, **kw)
    cm = C.multiclass_confusion_matrix(preds, targets, num_classes=k)
    support = torch.bincount(targets, minlength=k)
    correct = int((preds == targets).sum())
    present = support > 0
    out = {
        "n": n,
        "accuracy": correct / n,
        "accuracy_ci95": list(wilson_interval(correct, n)),
        "balanced_accuracy": _f(rec[present].mean()),
        "f1_macro": _f(f1[present].mean()),
        "auc": auc_score(probs, targets),
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "per_class": {
            name: {
                "sensitivity": _f(rec[i]) if support[i] else None,
                "specificity": _f(spec[i]),
                "precision": _f(prec[i]) if (preds == i).any() else None,
                "f1": _f(f1[i]) if support[i] else None,
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
    }
    return out


def scalar_metrics(m: dict) -> dict[str, float]:
    """The single-number metrics (for charts, JSON output and best-model choice)."""
    return {key: v for key, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and key != "n"}


def binary_operating_point(probs_pos: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    """Sensitivity and specificity of class 1 at a threshold (the Evaluate page's slider)."""
    pred = probs_pos >= threshold
    pos = targets == 1
    tp, fn = int((pred & pos).sum()), int((~pred & pos).sum())
    tn, fp = int((~pred & ~pos).sum()), int((pred & ~pos).sum())
    return {
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
    }


def roc_curve(probs_pos: np.ndarray, targets: np.ndarray) -> dict:
    fpr, tpr, thr = C.binary_roc(torch.as_tensor(probs_pos).float(), torch.as_tensor(targets).long())
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
