"""Calibrated probabilities: temperature scaling, and how far probabilities are from the truth.

    t = fit_temperature(val_logits, val_targets)     # one T for the run, fitted by NLL on validation
    p = softmax_t(test_logits, t)                    # calibrated probabilities
    r = calibration_report(p, test_targets)          # ECE, MCE, Brier score, reliability-diagram bins

Temperature scaling (Guo et al., "On calibration of modern neural networks", ICML 2017)
divides every logit by one number T > 0: the predicted class and the ranking of cases (AUC,
two classes) stay exactly as they were, only the confidence changes.  ECE and MCE come from
torchmetrics (equal-width confidence bins, top-label); the bins for the diagram are the same.
"""
from __future__ import annotations

import math

import numpy as np
import torch

N_BINS = 15
T_RANGE = (0.05, 20.0)


def softmax_t(logits, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of ``logits`` (N, K) divided by ``temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def rescale_probabilities(probs, temperature: float) -> np.ndarray:
    """The probabilities ``softmax(z / T)`` from ``softmax(z)`` alone (log p differs from z by a
    constant per row, which softmax ignores): what prediction uses when only probabilities
    are at hand."""
    p = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return p
    with np.errstate(divide="ignore"):
        logp = np.log(np.clip(p, 1e-300, None))
    return softmax_t(logp, temperature)


def fit_temperature(logits, targets, max_iter: int = 200) -> float:
    """The T > 0 that minimises the negative log-likelihood of ``targets`` under
    ``softmax(logits / T)`` (L-BFGS on log T).  1.0 when there is nothing to fit (fewer than
    two cases) or when no T improves the NLL."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if z.ndim != 2 or len(y) < 2:
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t):
        return 1.0
    t = min(max(t, T_RANGE[0]), T_RANGE[1])
    with torch.no_grad():
        before = float(torch.nn.functional.cross_entropy(z, y))
        after = float(torch.nn.functional.cross_entropy(z / t, y))
    return t if after <= before else 1.0


def cross_validated_gain(logits, targets, folds: int = 5, seed: int = 0) -> dict:
    """Whether temperature scaling helps cases it was not fitted on: ``folds``-fold
    cross-validation over (validation) cases, each fold scored with the temperature fitted on
    the others.  {"nll_uncalibrated", "nll_calibrated": mean NLL per held-out case, "folds",
    "helps": bool}; with fewer than two cases per fold nothing is held out ("helps": None)."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.int64)
    n = len(y)
    if z.ndim != 2 or n < 2 * folds:
        return {"folds": 0, "helps": None}
    order = np.random.default_rng(seed).permutation(n)
    raw = cal = 0.0
    for k in range(folds):
        held = order[k::folds]
        fit = np.setdiff1d(order, held)
        t = fit_temperature(z[fit], y[fit])
        raw += nll(softmax_t(z[held]), y[held]) * len(held)
        cal += nll(softmax_t(z[held], t), y[held]) * len(held)
    return {"folds": folds, "nll_uncalibrated": raw / n, "nll_calibrated": cal / n, "helps": bool(cal < raw)}


def nll(probs, targets) -> float:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)))) if len(y) else float("nan")


def brier_score(probs, targets) -> float:
    """Two classes: mean (p(class 1) - y)^2; more classes: mean squared distance between the
    probability vector and the one-hot truth (summed over classes)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    if not len(y):
        return float("nan")
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(((p - onehot) ** 2).sum(1)))


def reliability_bins(probs, targets, n_bins: int = N_BINS) -> list[dict]:
    """Equal-width bins of the top-class confidence: cases, mean confidence, accuracy."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    conf = p.max(1)
    correct = p.argmax(1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # torchmetrics' binning: a confidence c goes to bin ceil(c * n) - 1 (c on an edge goes below it)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(correct[m].mean()) if n else None})
    return out


def calibration_report(probs, targets, n_bins: int = N_BINS) -> dict:
    """ECE and MCE (top-label, ``n_bins`` equal-width bins; torchmetrics), Brier score, NLL,
    and the reliability-diagram bins."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    if not len(y):
        return {"n": 0}
    pt, yt = torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(y)
    k = p.shape[1]
    ece = float(multiclass_calibration_error(pt, yt, num_classes=k, n_bins=n_bins, norm="l1"))
    mce = float(multiclass_calibration_error(pt, yt, num_classes=k, n_bins=n_bins, norm="max"))
    return {"n": int(len(y)), "ece": ece, "mce": mce, "brier": brier_score(p, y), "nll": nll(p, y),
            "n_bins": n_bins, "bins": reliability_bins(p, y, n_bins)}


class TemperatureScaled(torch.nn.Module):
    """A classifier whose logits are divided by the run's temperature: what an exported
    package holds, so that softmax of its output gives the calibrated probabilities."""

    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, *args):
        return self.model(*args) / self.temperature
