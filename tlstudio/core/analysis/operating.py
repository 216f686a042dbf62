"""The operating point of a two-class classifier: which class is "positive", and from which
probability on a case is called positive.

    k = positive_index(["benign", "malignant"], "")           # 1: guessed from the names
    op = choose_threshold(val_scores, val_is_pos, "sensitivity", target=0.9)
    at = operating_point(test_scores, test_is_pos, op["threshold"])   # sens/spec/PPV/NPV with Wilson CIs

Thresholds are chosen on the validation split only (scikit-learn's ROC curve gives the
candidates); the test split then measures them.  A chosen threshold lies half-way between
two neighbouring validation scores, so that a case scored exactly like a validation case is
not left on the edge.
"""
from __future__ import annotations

import re

import numpy as np

from .metrics import wilson_interval

METHODS = ("fixed", "youden", "sensitivity", "specificity")
METHOD_WORDS = {"fixed": "a fixed threshold", "youden": "Youden's J (sensitivity + specificity - 1, largest)",
                "sensitivity": "sensitivity at least {target:.0%} on validation, then the best specificity",
                "specificity": "specificity at least {target:.0%} on validation, then the best sensitivity"}

_POSITIVE = re.compile(r"(abnormal|malignan|positive|disease|cancer|tumou?r|lesion|pneumonia|fracture|patholog|"
                       r"carcinoma|melanoma|metasta|covid|infect|effusion|nodule|mass|finding|^yes$|^true$|^1$)", re.I)
_NEGATIVE = re.compile(r"(^normal|benign|negative|healthy|no.?finding|control|^no$|^false$|^0$)", re.I)


def guess_positive(class_names: list[str]) -> int:
    """The class that is most likely the finding: a name such as abnormal, malignant,
    positive, pneumonia ..., or the other one of a normal/benign/negative class; else the
    second class (the convention of two-class tables: 0 = negative, 1 = positive)."""
    if len(class_names) != 2:
        return 1 if len(class_names) > 1 else 0
    neg = [bool(_NEGATIVE.search(c)) for c in class_names]
    pos = [bool(_POSITIVE.search(c)) and not n for c, n in zip(class_names, neg)]
    if sum(pos) == 1:
        return pos.index(True)
    if sum(neg) == 1:
        return neg.index(False)
    return 1


def positive_index(class_names: list[str], positive: str | None) -> int:
    """Index of ``positive`` in ``class_names``; guessed when empty; a name that is not a
    class raises ValueError naming the classes."""
    if positive:
        if positive not in class_names:
            raise ValueError(f"positive class '{positive}' is not one of the classes ({', '.join(class_names)})")
        return class_names.index(positive)
    return guess_positive(class_names)


def counts_at(scores, is_pos, threshold: float) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(is_pos, dtype=bool)
    called = s >= threshold
    return {"tp": int((called & pos).sum()), "fn": int((~called & pos).sum()),
            "tn": int((~called & ~pos).sum()), "fp": int((called & ~pos).sum())}


def _rate(k: int, n: int) -> tuple[float | None, list[float] | None]:
    return (k / n, list(wilson_interval(k, n))) if n else (None, None)


def operating_point(scores, is_pos, threshold: float) -> dict:
    """Sensitivity, specificity, PPV and NPV at ``threshold`` (positive when score >=
    threshold), each with its Wilson 95% interval, and the four counts."""
    c = counts_at(scores, is_pos, threshold)
    out: dict = {"threshold": float(threshold), **c, "n": sum(c.values())}
    for name, k, n in (("sensitivity", c["tp"], c["tp"] + c["fn"]), ("specificity", c["tn"], c["tn"] + c["fp"]),
                       ("ppv", c["tp"], c["tp"] + c["fp"]), ("npv", c["tn"], c["tn"] + c["fn"])):
        out[name], out[f"{name}_ci95"] = _rate(k, n)
    return out


def _between(scores: np.ndarray, t: float) -> float:
    """``t`` moved half-way down to the next lower distinct score (same calls on these scores)."""
    lower = scores[scores < t]
    return float((t + lower.max()) / 2.0) if len(lower) else float(t)


def choose_threshold(scores, is_pos, method: str = "fixed", threshold: float = 0.5, target: float = 0.9) -> dict:
    """The threshold of ``method`` on these (validation) scores of the positive class.

    fixed: ``threshold`` as given; youden: the largest sensitivity + specificity - 1;
    sensitivity: sensitivity >= ``target`` with the best specificity; specificity: specificity >=
    ``target`` with the best sensitivity.  Returns {"threshold", "method", "target", "note",
    "validation": operating point on these scores}.  Without positive and negative cases the
    fixed threshold is kept and the note says why."""
    if method not in METHODS:
        raise ValueError(f"unknown threshold method '{method}' (known: {', '.join(METHODS)})")
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(is_pos, dtype=bool)
    note = ""
    t = float(threshold)
    if method != "fixed":
        if pos.all() or (~pos).all() or not len(s):
            note = (f"the validation split has no {'negative' if pos.all() else 'positive'} cases: "
                    f"the fixed threshold {threshold:.2f} is used instead")
            method = "fixed"
        else:
            from sklearn.metrics import roc_curve

            fpr, tpr, thr = roc_curve(pos.astype(int), s, drop_intermediate=False)
            thr = np.minimum(thr, np.nextafter(1.0, 2.0))  # the first candidate (inf) calls nothing positive
            if method == "youden":
                j = tpr - fpr
                best = np.flatnonzero(j >= j.max() - 1e-12)
                k = best[np.argmin(np.abs(thr[best] - 0.5))]  # ties: nearest to 0.5
            elif method == "sensitivity":
                ok = np.flatnonzero(tpr >= target - 1e-12)
                k = ok[np.argmin(fpr[ok])] if len(ok) else len(thr) - 1
                if not len(ok):
                    note = f"no threshold reaches sensitivity {target:.0%} on validation"
            else:
                ok = np.flatnonzero(1.0 - fpr >= target - 1e-12)
                k = ok[np.argmax(tpr[ok])] if len(ok) else 0
                if not len(ok):
                    note = f"no threshold reaches specificity {target:.0%} on validation"
            t = _between(s, float(thr[k]))
    return {"threshold": t, "method": method, "target": float(target), "note": note,
            "validation": operating_point(s, pos, t)}


def describe_method(method: str, target: float, threshold: float) -> str:
    words = METHOD_WORDS.get(method, method).format(target=target)
    return f"{words} (threshold {threshold:.3f})" if method != "fixed" else f"a fixed threshold of {threshold:.3f}"
