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


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, class_names: list[str],
                           preds: torch.Tensor | None = None) -> dict:
    """Everything the Evaluate page and the report show, as plain JSON-able numbers.

    ``probs``: (N, K) probabilities; ``targets``: (N,) class indices; ``preds``: the class
    each case was called (default: the most probable; a two-class run's operating point
    gives its own).
    """
    probs = probs.detach().float().cpu()
    targets = targets.detach().long().cpu()
    k = len(class_names)
    n = int(targets.numel())
    if n == 0:
        return {"n": 0}
    preds = probs.argmax(1) if preds is None else torch.as_tensor(preds).long().cpu()
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


# --- confidence intervals (model card, HTML report) ------------------------------------------
def _auc_ranks(scores: np.ndarray, pos: np.ndarray) -> float | None:
    """Mann-Whitney AUC of ``scores`` for the boolean ``pos`` (ties count half)."""
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    r = avg_rank[inv]
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _auc_np(probs: np.ndarray, targets: np.ndarray) -> float | None:
    """The same AUC as :func:`auc_score` (binary, or macro one-vs-rest over the classes present)."""
    present = np.unique(targets)
    if len(present) < 2:
        return None
    if probs.shape[1] == 2:
        return _auc_ranks(probs[:, 1], targets == 1)
    vals = [_auc_ranks(probs[:, c], targets == c) for c in present]
    return float(np.mean(vals))


def _balanced_accuracy_np(preds: np.ndarray, targets: np.ndarray, k: int) -> float | None:
    support = np.bincount(targets, minlength=k)
    hit = np.bincount(targets[preds == targets], minlength=k)
    present = support > 0
    return float((hit[present] / support[present]).mean()) if present.any() else None


def _f1_macro_np(preds: np.ndarray, targets: np.ndarray, k: int) -> float | None:
    support = np.bincount(targets, minlength=k)
    predicted = np.bincount(preds, minlength=k)
    tp = np.bincount(targets[preds == targets], minlength=k)
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    present = support > 0
    return float(f1[present].mean()) if present.any() else None


def bootstrap_ci(statistic, probs: np.ndarray, targets: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(probs, targets)`` over the test cases
    (resampled with replacement; resamples where the statistic is undefined are skipped).
    None when fewer than half of the resamples give a value."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64)
    n = len(targets)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = statistic(probs[idx], targets[idx])
        if v is not None and not math.isnan(v):
            vals.append(v)
    if len(vals) < n_boot / 2:
        return None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(vals), [a, 1.0 - a])
    return (float(lo), float(hi))


def classification_cis(probs, targets, class_names: list[str], n_boot: int = 2000, seed: int = 0,
                       preds=None) -> dict:
    """95% intervals for the test metrics a clinician reads: Wilson for the proportions
    (accuracy, per-class sensitivity and specificity), a seeded percentile bootstrap over the
    test cases for AUC, balanced accuracy and macro F1.  Same definitions as
    :func:`classification_metrics`."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets).astype(np.int64)
    k = len(class_names)
    preds = probs.argmax(1) if preds is None else np.asarray(preds).astype(np.int64)
    n = len(targets)
    out: dict = {"method": f"Wilson score (proportions); percentile bootstrap, {n_boot} resamples, seed {seed} (others)",
                 "n": n}
    out["accuracy"] = list(wilson_interval(int((preds == targets).sum()), n))
    both = np.column_stack([probs, preds])  # resampled together: the calls stay those of each case
    boot = {
        "auc": lambda p, t: _auc_np(p[:, :k], t),
        "balanced_accuracy": lambda p, t: _balanced_accuracy_np(p[:, k].astype(np.int64), t, k),
        "f1_macro": lambda p, t: _f1_macro_np(p[:, k].astype(np.int64), t, k),
    }
    for name, fn in boot.items():
        ci = bootstrap_ci(fn, both, targets, n_boot=n_boot, seed=seed)
        out[name] = list(ci) if ci else None
    per = {}
    for c, name in enumerate(class_names):
        pos, pred_pos = targets == c, preds == c
        tp, fn = int((pred_pos & pos).sum()), int((~pred_pos & pos).sum())
        tn, fp = int((~pred_pos & ~pos).sum()), int((pred_pos & ~pos).sum())
        per[name] = {"sensitivity": list(wilson_interval(tp, tp + fn)) if tp + fn else None,
                     "specificity": list(wilson_interval(tn, tn + fp)) if tn + fp else None}
    out["per_class"] = per
    return out
