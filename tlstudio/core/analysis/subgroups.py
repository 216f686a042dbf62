"""Results by subgroup (site, scanner, sex, age band ...): does the model work as well for
each of them as for the whole?

    rep = subgroup_report(values, targets, probs, decisions, positive=1)

Two classes: sensitivity and specificity (Wilson 95% intervals) and AUC (seeded percentile
bootstrap) per subgroup; more classes: accuracy and macro AUC.  A subgroup is flagged "far
below" when the upper end of its 95% interval lies below the whole test set's figure: the
gap is then larger than chance alone explains at that size.
"""
from __future__ import annotations

import numpy as np

from .metrics import _auc_np, _auc_ranks, bootstrap_ci, wilson_interval

MIN_CASES = 5  # smaller subgroups are listed, not judged
MISSING = "(not given)"


def _prop(k: int, n: int) -> tuple[float | None, list[float] | None]:
    return (k / n, list(wilson_interval(k, n))) if n else (None, None)


def _binary_figures(y_pos: np.ndarray, called: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> dict:
    tp, fn = int((called & y_pos).sum()), int((~called & y_pos).sum())
    tn, fp = int((~called & ~y_pos).sum()), int((called & ~y_pos).sum())
    out = {"n": int(len(y_pos)), "positives": int(y_pos.sum())}
    out["sensitivity"], out["sensitivity_ci95"] = _prop(tp, tp + fn)
    out["specificity"], out["specificity_ci95"] = _prop(tn, tn + fp)
    out["auc"] = _auc_ranks(scores, y_pos)
    ci = bootstrap_ci(lambda p, t: _auc_ranks(p[:, 0], t == 1), scores[:, None], y_pos.astype(int),
                      n_boot=n_boot, seed=seed) if out["auc"] is not None else None
    out["auc_ci95"] = list(ci) if ci else None
    return out


def _multi_figures(y: np.ndarray, pred: np.ndarray, probs: np.ndarray, n_boot: int, seed: int) -> dict:
    out = {"n": int(len(y))}
    out["accuracy"], out["accuracy_ci95"] = _prop(int((pred == y).sum()), len(y))
    out["auc"] = _auc_np(probs, y) if len(np.unique(y)) > 1 else None
    ci = bootstrap_ci(_auc_np, probs, y, n_boot=n_boot, seed=seed) if out["auc"] is not None else None
    out["auc_ci95"] = list(ci) if ci else None
    return out


def subgroup_report(values: list, targets, probs, decisions, positive: int | None, column: str = "",
                    n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-subgroup figures for the test cases; ``values`` holds each case's subgroup (None or
    "" = not given), ``decisions`` the class each case was called, ``positive`` the positive
    class index of a two-class run (None: more classes)."""
    y = np.asarray(targets, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    d = np.asarray(decisions, dtype=np.int64)
    vals = np.array([MISSING if v in (None, "") else str(v) for v in values], dtype=object)
    binary = positive is not None and p.shape[1] == 2

    def figures(m: np.ndarray) -> dict:
        if binary:
            return _binary_figures(y[m] == positive, d[m] == positive, p[m, positive], n_boot, seed)
        return _multi_figures(y[m], d[m], p[m], n_boot, seed)

    whole = figures(np.ones(len(y), dtype=bool))
    metrics = ("sensitivity", "specificity", "auc") if binary else ("accuracy", "auc")
    groups = []
    for name in sorted(set(vals.tolist()), key=lambda v: (v == MISSING, v)):
        m = vals == name
        g = {"name": name, **figures(m), "far_below": []}
        if g["n"] >= MIN_CASES:
            for key in metrics:
                ci, ref = g.get(f"{key}_ci95"), whole.get(key)
                if ci and ref is not None and g.get(key) is not None and g[key] < ref and ci[1] < ref - 1e-9:
                    g["far_below"].append(key)
        groups.append(g)
    return {"column": column, "metrics": list(metrics), "whole": whole, "groups": groups,
            "rule": "far below: the subgroup's 95% interval lies wholly below the whole test set's figure "
                    f"(subgroups of at least {MIN_CASES} cases)"}
