"""A run's decision: how its model's outputs become what a clinician reads.

``decision.json`` lies beside the checkpoints of every classification run trained since it
exists.  It holds the temperature that calibrates the probabilities, the positive class and
the threshold of a two-class run (and how that threshold was chosen, on validation), and the
conformal quantile that turns probabilities into prediction sets.  A run without the file
(trained before) reads as it always did: argmax, uncalibrated, no sets.

    dec = RunDecision.load(run_dir, class_names)
    out = dec.apply(raw_probabilities)        # {"probs", "predicted", "sets"}

"Use this operating point" rewrites only this file (:func:`RunDecision.with_threshold`);
everything that predicts (``tlstudio predict``, the Predict page, exported packages, the
report and the model card) reads it.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .calibration import calibration_report, cross_validated_gain, fit_temperature, rescale_probabilities, softmax_t
from .conformal import conformal_quantile, coverage_report, prediction_sets, set_labels
from .operating import choose_threshold, describe_method, operating_point, positive_index

DECISION_FILE = "decision.json"
VERSION = 1


@dataclass
class RunDecision:
    class_names: list[str]
    temperature: float = 1.0
    positive: int | None = None  # index of the positive class (two classes only)
    threshold: float | None = None  # call positive when p(positive) >= threshold
    method: str = "argmax"  # argmax, fixed, youden, sensitivity, specificity
    target: float | None = None
    conformal_method: str | None = None  # lac, aps (None: no sets)
    conformal_level: float | None = None
    conformal_quantile: float | None = None
    chosen_on: str = ""  # "validation", or how the threshold was set otherwise
    chosen: str = ""  # when
    note: str = ""
    validation: dict = field(default_factory=dict)  # operating point / coverage on validation
    n_calibration: int = 0
    calibration_check: dict = field(default_factory=dict)  # does T help held-out validation cases? (cross-validated)

    # --- reading and writing -------------------------------------------------------------------
    @classmethod
    def default(cls, class_names: list[str]) -> "RunDecision":
        """What a run without a decision file does: the most probable class, as the model says."""
        return cls(list(class_names))

    @classmethod
    def from_dict(cls, d: dict, class_names: list[str] | None = None) -> "RunDecision":
        known = set(cls.__dataclass_fields__)
        out = cls(**{k: v for k, v in d.items() if k in known})
        if class_names is not None and list(class_names) != list(out.class_names):
            raise ValueError(f"the decision file names the classes {out.class_names}, the model {list(class_names)}")
        return out

    @classmethod
    def load(cls, run_dir: str | Path, class_names: list[str]) -> "RunDecision":
        """The run's decision file, or :meth:`default` when it has none (an older run) or it
        does not fit the model's classes."""
        path = Path(run_dir) / DECISION_FILE
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), class_names)
        except (OSError, ValueError, TypeError):
            return cls.default(class_names)

    def to_dict(self) -> dict:
        return {"version": VERSION, **asdict(self)}

    def save(self, run_dir: str | Path) -> Path:
        from ..io import atomic_write_json

        return atomic_write_json(Path(run_dir) / DECISION_FILE, self.to_dict())

    # --- what it does ------------------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2 and self.positive is not None and self.threshold is not None

    @property
    def positive_class(self) -> str | None:
        return self.class_names[self.positive] if self.positive is not None else None

    @property
    def has_sets(self) -> bool:
        return self.conformal_quantile is not None and self.conformal_method is not None

    def calibrate(self, probs) -> np.ndarray:
        return rescale_probabilities(probs, self.temperature)

    def decide(self, probs_calibrated) -> np.ndarray:
        """Class index per case: the positive class from the threshold on (two classes), else
        the most probable class."""
        p = np.asarray(probs_calibrated, dtype=np.float64)
        if self.binary:
            neg = 1 - self.positive
            return np.where(p[:, self.positive] >= self.threshold, self.positive, neg)
        return p.argmax(1)

    def sets(self, probs_calibrated) -> np.ndarray | None:
        if not self.has_sets:
            return None
        return prediction_sets(probs_calibrated, self.conformal_quantile, self.conformal_method)

    def apply(self, probs) -> dict:
        """Raw softmax probabilities (N, K) -> calibrated ones, the decision and the sets."""
        pc = self.calibrate(probs)
        return {"probs": pc, "predicted": self.decide(pc), "sets": self.sets(pc)}

    def results(self, probs) -> list[dict]:
        """Per case: predicted, probabilities (calibrated), set (names), top classes (more than two)."""
        out = self.apply(probs)
        names = self.class_names
        rows = []
        for i, p in enumerate(out["probs"]):
            r = {"predicted": names[int(out["predicted"][i])], "probabilities": {c: float(v) for c, v in zip(names, p)}}
            if out["sets"] is not None:
                r["set"] = set_labels(out["sets"][i], names, p)
            if len(names) > 2:
                top = np.argsort(-p, kind="stable")[:min(5, len(names))]
                r["top"] = [[names[int(k)], float(p[k])] for k in top]
            rows.append(r)
        return rows

    def with_threshold(self, threshold: float, chosen_on: str, method: str = "fixed", target: float | None = None,
                       validation: dict | None = None, note: str = "") -> "RunDecision":
        """A copy with another operating point (the rest, calibration and sets, kept)."""
        d = RunDecision.from_dict(self.to_dict())
        d.threshold, d.method, d.target, d.chosen_on = float(threshold), method, target, chosen_on
        d.validation = dict(validation or {})
        d.note = note
        d.chosen = _dt.datetime.now().isoformat(timespec="seconds")
        return d

    def describe(self) -> str:
        """One or two sentences for a person."""
        parts = []
        parts.append(f"probabilities calibrated by temperature scaling (T = {self.temperature:.3f}, fitted on "
                     "validation)" if self.temperature != 1.0 else "probabilities as the model gives them (not calibrated)")
        if self.binary:
            parts.append(f"'{self.positive_class}' is called when its probability is at least {self.threshold:.3f}: "
                         f"{describe_method(self.method, self.target or 0.0, self.threshold)}"
                         + (f", chosen on {self.chosen_on}" if self.chosen_on else ""))
        else:
            parts.append("the most probable class is called")
        if self.has_sets:
            parts.append(f"prediction sets at the {self.conformal_level:.0%} level ({self.conformal_method.upper()}, "
                         f"split conformal on {self.n_calibration} validation cases)")
        return "; ".join(parts) + "."


def fit_decision(logits, targets, class_names: list[str], cfg) -> RunDecision:
    """The decision of a run from its VALIDATION logits and labels and the project's decision
    settings (``cfg``: :class:`tlstudio.core.config.DecisionConfig`)."""
    y = np.asarray(targets, dtype=np.int64)
    z = np.asarray(logits, dtype=np.float64)
    t = fit_temperature(z, y) if cfg.calibrate else 1.0
    probs = softmax_t(z, t)
    dec = RunDecision(list(class_names), temperature=t, chosen_on="validation", n_calibration=int(len(y)),
                      chosen=_dt.datetime.now().isoformat(timespec="seconds"))
    notes = []
    if t != 1.0:
        dec.calibration_check = check = cross_validated_gain(z, y)
        if check["helps"] is False:
            notes.append(f"temperature scaling did not help the validation cases held out in {check['folds']}-fold "
                         f"cross-validation (NLL {check['nll_uncalibrated']:.3f} uncalibrated, "
                         f"{check['nll_calibrated']:.3f} calibrated): with {len(y)} validation cases the fitted "
                         f"temperature is uncertain, and so are the calibrated probabilities")
    if len(class_names) == 2:
        dec.positive = positive_index(class_names, cfg.positive_class)
        ch = choose_threshold(probs[:, dec.positive], y == dec.positive, cfg.threshold_method, cfg.threshold,
                              cfg.target)
        dec.threshold, dec.method, dec.validation = ch["threshold"], ch["method"], {"operating_point": ch["validation"]}
        dec.target = cfg.target if ch["method"] in ("sensitivity", "specificity") else None
        if ch["note"]:
            notes.append(ch["note"])
    if cfg.conformal_level > 0 and len(y):
        dec.conformal_method, dec.conformal_level = cfg.conformal_method, float(cfg.conformal_level)
        q = conformal_quantile(probs, y, cfg.conformal_level, cfg.conformal_method)
        dec.conformal_quantile = q if np.isfinite(q) else None
        if dec.conformal_quantile is None:
            notes.append(f"{len(y)} validation cases are too few for sets at the {cfg.conformal_level:.0%} level")
            dec.conformal_method = dec.conformal_level = None
    dec.note = "; ".join(notes)
    return dec


def decision_report(dec: RunDecision, probs_raw, targets) -> dict:
    """What the decision gives on labelled cases (the test split): the operating point with
    Wilson intervals, calibration before and after, coverage and set sizes."""
    y = np.asarray(targets, dtype=np.int64)
    out = dec.apply(probs_raw)
    rep: dict = {"decision": dec.to_dict(), "description": dec.describe() + (f" Note: {dec.note}." if dec.note else ""),
                 "calibration": {"temperature": dec.temperature, "before": calibration_report(probs_raw, y),
                                 "after": calibration_report(out["probs"], y)}}
    if dec.binary:
        rep["operating_point"] = operating_point(out["probs"][:, dec.positive], y == dec.positive, dec.threshold)
        rep["positive_class"] = dec.positive_class
    if out["sets"] is not None:
        rep["conformal"] = coverage_report(out["sets"], y, dec.conformal_level) | {"method": dec.conformal_method}
    return rep


def decision_scalars(rep: dict) -> dict:
    """The single numbers of a decision report (charts, ``--json``, final.json)."""
    cal = rep.get("calibration") or {}
    out = {"ece": (cal.get("after") or {}).get("ece"), "ece_uncalibrated": (cal.get("before") or {}).get("ece"),
           "brier": (cal.get("after") or {}).get("brier"), "temperature": cal.get("temperature")}
    op = rep.get("operating_point")
    if op:
        out.update(threshold=op["threshold"], op_sensitivity=op["sensitivity"], op_specificity=op["specificity"])
    cf = rep.get("conformal")
    if cf:
        out.update(coverage=cf["coverage"], mean_set_size=cf["mean_set_size"])
    return {k: v for k, v in out.items() if v is not None}
