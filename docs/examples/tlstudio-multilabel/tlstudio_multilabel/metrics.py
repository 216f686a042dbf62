"""Per-label figures: AUC (scikit-learn), and sensitivity and specificity at each label's
threshold; thresholds chosen by Youden's J on the validation split."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def youden_thresholds(probs: np.ndarray, targets: np.ndarray) -> list[float]:
    """For each label, the threshold that maximises sensitivity + specificity - 1 (0.5 where
    the label has no positive or no negative image to choose with)."""
    out = []
    for k in range(probs.shape[1]):
        t = targets[:, k]
        if t.min() == t.max():
            out.append(0.5)
            continue
        fpr, tpr, thr = roc_curve(t, probs[:, k])
        best = int(np.argmax(tpr - fpr))
        out.append(float(min(1.0, thr[best])))
    return out


def label_metrics(probs: np.ndarray, targets: np.ndarray, names: list[str], thresholds: list[float]) -> dict:
    """{"auc": mean AUC over the labels that have both outcomes, "n", "per_label": {name:
    {"auc", "threshold", "sensitivity", "specificity", "positives"}}, "class_names"}."""
    per = {}
    aucs = []
    for k, name in enumerate(names):
        t, p, thr = targets[:, k] > 0.5, probs[:, k], thresholds[k]
        pred = p >= thr
        pos, neg = int(t.sum()), int((~t).sum())
        auc = float(roc_auc_score(t, p)) if pos and neg else None
        if auc is not None:
            aucs.append(auc)
        per[name] = {"auc": auc, "threshold": float(thr), "positives": pos,
                     "sensitivity": float((pred & t).sum() / pos) if pos else None,
                     "specificity": float((~pred & ~t).sum() / neg) if neg else None}
    return {"auc": float(np.mean(aucs)) if aucs else None, "n": int(len(targets)), "per_label": per,
            "class_names": list(names)}
