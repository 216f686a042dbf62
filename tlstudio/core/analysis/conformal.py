"""Prediction sets with guaranteed coverage: split conformal prediction.

    q = conformal_quantile(val_probs, val_targets, level=0.9, method="lac")
    sets = prediction_sets(test_probs, q, "lac")          # (N, K) booleans: the classes in each set
    coverage_report(sets, test_targets)                     # empirical coverage, mean set size

For cases exchangeable with the calibration cases, the set holds the true class with
probability at least ``level`` (Vovk et al. 2005; Angelopoulos & Bates, "A gentle
introduction to conformal prediction", 2021): the quantile is the ceil((n+1) level)-th
smallest nonconformity score of the n calibration cases (the finite-sample correction).

- LAC ("least ambiguous set-valued classifier", Sadinle et al. 2019): score 1 - p(true class);
  the set is every class with p >= 1 - q.  Smallest sets on average; a set may be empty
  (no class is likely enough: an input unlike the training data).
- APS ("adaptive prediction sets", Romano et al. 2020), non-randomised: score = the
  probability mass of the classes ranked at or above the true one; the set is the top
  classes up to mass q (the top class always included).  Larger sets, adapted to how hard
  the case is.
"""
from __future__ import annotations

import math

import numpy as np

METHODS = ("lac", "aps")


def _aps_cumulative(p: np.ndarray) -> np.ndarray:
    """Per case and class: the total probability of the classes ranked at or above it."""
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, 1)
    cum = np.cumsum(sorted_p, 1)
    out = np.empty_like(cum)
    np.put_along_axis(out, order, cum, 1)
    return out


def nonconformity(probs, targets, method: str = "lac") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    rows = np.arange(len(y))
    if method == "lac":
        return 1.0 - p[rows, y]
    if method == "aps":
        return _aps_cumulative(p)[rows, y]
    raise ValueError(f"unknown conformal method '{method}' (known: {', '.join(METHODS)})")


def conformal_quantile(probs, targets, level: float = 0.9, method: str = "lac") -> float:
    """The finite-sample conformal quantile of the calibration scores; ``inf`` when there are
    too few calibration cases for ``level`` (every set is then every class)."""
    s = np.sort(nonconformity(probs, targets, method))
    n = len(s)
    k = math.ceil((n + 1) * float(level))
    return float("inf") if n == 0 or k > n else float(s[k - 1])


def prediction_sets(probs, quantile: float, method: str = "lac") -> np.ndarray:
    """(N, K) booleans: the classes of each case's prediction set."""
    p = np.asarray(probs, dtype=np.float64)
    if not math.isfinite(quantile):
        return np.ones(p.shape, dtype=bool)
    if method == "lac":
        return p >= 1.0 - quantile
    if method == "aps":
        sets = _aps_cumulative(p) <= quantile
        sets[np.arange(len(p)), p.argmax(1)] = True
        return sets
    raise ValueError(f"unknown conformal method '{method}' (known: {', '.join(METHODS)})")


def coverage_report(sets: np.ndarray, targets, level: float | None = None) -> dict:
    """Empirical coverage (share of cases whose set holds the true class), mean set size, and
    how many sets hold one class, several, or none."""
    sets = np.asarray(sets, dtype=bool)
    y = np.asarray(targets, dtype=np.int64)
    n = len(y)
    if not n:
        return {"n": 0}
    size = sets.sum(1)
    covered = sets[np.arange(n), y]
    from .metrics import wilson_interval

    k = int(covered.sum())
    out = {"n": n, "coverage": k / n, "coverage_ci95": list(wilson_interval(k, n)), "mean_set_size": float(size.mean()),
           "singletons": int((size == 1).sum()), "uncertain": int((size > 1).sum()), "empty": int((size == 0).sum())}
    if level is not None:
        out["level"] = float(level)
    return out


def set_labels(row: np.ndarray, class_names: list[str], probs: np.ndarray | None = None) -> list[str]:
    """The class names of one set (most probable first when ``probs`` is given)."""
    idx = np.flatnonzero(row)
    if probs is not None:
        idx = idx[np.argsort(-np.asarray(probs)[idx], kind="stable")]
    return [class_names[int(i)] for i in idx]
