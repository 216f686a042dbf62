"""Change a finished run's decision without retraining ("Use this operating point").

    redecide(run_dir, positive="malignant", method="sensitivity", target=0.9)   # chosen on validation
    redecide(run_dir, threshold=0.31, chosen_on="the Evaluate page (by hand)")  # a fixed threshold

The run's ``decision.json`` is rewritten, and so are the files that show its calls
(``test_predictions.csv`` / ``val_predictions.csv``: predicted, correct, set;
``evaluation_test.json``, ``final.json``), from the calibrated probabilities stored there:
the Evaluate page, the report, the model card and every later prediction then agree.
A threshold method other than "fixed" is always applied to the VALIDATION predictions.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..errors import StudioError
from ..io import atomic_write_json, atomic_write_text
from .calibration import rescale_probabilities
from .conformal import conformal_quantile, set_labels
from .decision import DECISION_FILE, RunDecision, decision_report, decision_scalars
from .operating import choose_threshold, positive_index


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise StudioError(f"{path}: empty file")
    return rows[0], rows[1:]


def _probs_targets(header: list[str], body: list[list[str]], names: list[str], where: Path):
    col = {h: i for i, h in enumerate(header)}
    try:
        pcols = [col[f"p_{c}"] for c in names]
        probs = np.array([[float(r[i]) for i in pcols] for r in body], dtype=np.float64).reshape(-1, len(names))
        y = np.array([names.index(r[col["label"]]) for r in body], dtype=np.int64)
    except (KeyError, ValueError, IndexError) as e:
        raise StudioError(f"{where}: cannot read the stored predictions ({e})") from None
    return probs, y


def _rewrite_predictions(path: Path, dec: RunDecision) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """Re-call the rows of a predictions CSV with ``dec``; returns (probs, targets, calls, header, body)."""
    header, body = _read_rows(path)
    names = dec.class_names
    probs, y = _probs_targets(header, body, names, path)
    calls = dec.decide(probs)
    sets = dec.sets(probs)
    col = {h: i for i, h in enumerate(header)}
    if sets is not None and "set" not in col:
        at = col["correct"] + 1
        header.insert(at, "set")
        for r in body:
            r.insert(at, "")
        col = {h: i for i, h in enumerate(header)}
    for i, r in enumerate(body):
        r[col["predicted"]] = names[int(calls[i])]
        r[col["correct"]] = str(int(calls[i] == y[i]))
        if "set" in col:
            r[col["set"]] = " | ".join(set_labels(sets[i], names, probs[i])) if sets is not None else ""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(body)
    atomic_write_text(path, buf.getvalue())
    return probs, y, calls, header, body


def redecide(run_dir: str | Path, *, positive: str | None = None, method: str | None = None,
             threshold: float | None = None, target: float | None = None, level: float | None = None,
             conformal_method: str | None = None, chosen_on: str | None = None) -> RunDecision:
    """A new decision for a finished classification run (see the module docstring); what is
    not given stays as it was.  Returns the decision written."""
    from .metrics import classification_metrics, roc_curve

    d = Path(run_dir)
    val_csv, test_csv = d / "val_predictions.csv", d / "test_predictions.csv"
    ev_path = d / "evaluation_test.json"
    try:
        ev = json.loads(ev_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise StudioError(f"{d}: no test results (evaluation_test.json) to apply a decision to.") from None
    names = list(ev.get("class_names") or [])
    old = RunDecision.load(d, names)
    if not (d / DECISION_FILE).exists() and not val_csv.exists():
        raise StudioError(f"{d}: this run was trained before decisions were stored (no decision.json and no "
                          "validation predictions): train it again to choose an operating point.")
    dec = RunDecision.from_dict(old.to_dict())
    if len(names) == 2:
        dec.positive = positive_index(names, positive if positive is not None else dec.positive_class)
    method = method or (dec.method if dec.method != "argmax" else "fixed")
    vprobs = vy = None
    if val_csv.exists():
        vh, vb = _read_rows(val_csv)
        vprobs, vy = _probs_targets(vh, vb, names, val_csv)
    if len(names) == 2:
        if method == "fixed":
            t = float(threshold if threshold is not None else (dec.threshold if dec.threshold is not None else 0.5))
            val_op = None
            if vprobs is not None:
                val_op = choose_threshold(vprobs[:, dec.positive], vy == dec.positive, "fixed", t)["validation"]
            where = chosen_on if threshold is not None else (dec.chosen_on or chosen_on)  # only the sets changed: kept
            dec = dec.with_threshold(t, where or "by hand", "fixed", None,
                                     {"operating_point": val_op} if val_op else {})
        else:
            if vprobs is None:
                raise StudioError(f"{d}: no validation predictions: only a fixed threshold can be set.")
            tgt = float(target if target is not None else (dec.target or 0.9))
            ch = choose_threshold(vprobs[:, dec.positive], vy == dec.positive, method, 0.5, tgt)
            dec = dec.with_threshold(ch["threshold"], "validation", ch["method"],
                                     tgt if ch["method"] in ("sensitivity", "specificity") else None,
                                     {"operating_point": ch["validation"]}, ch["note"])
    if level is not None or conformal_method is not None:
        if vprobs is None:
            raise StudioError(f"{d}: no validation predictions to calibrate prediction sets on.")
        lv = float(level if level is not None else (dec.conformal_level or 0.9))
        cm = conformal_method or dec.conformal_method or "lac"
        q = conformal_quantile(vprobs, vy, lv, cm) if lv > 0 else float("inf")
        ok = lv > 0 and np.isfinite(q)
        dec.conformal_method, dec.conformal_level = (cm, lv) if ok else (None, None)
        dec.conformal_quantile = float(q) if ok else None
    dec.save(d)
    if val_csv.exists():
        _rewrite_predictions(val_csv, dec)
    if test_csv.exists():
        probs, y, calls, header, body = _rewrite_predictions(test_csv, dec)
        import torch

        m = classification_metrics(torch.as_tensor(probs), torch.as_tensor(y), names, preds=torch.as_tensor(calls))
        rep = decision_report(dec, rescale_probabilities(probs, 1.0 / dec.temperature), y)
        m.update(decision_scalars(rep))
        m["decision"] = rep
        for key in ("loss", "subgroups"):
            if key in ev:
                m[key] = ev[key]
        if len(names) == 2 and len(set(y.tolist())) == 2:
            m["roc"] = roc_curve(probs[:, dec.positive], (y == dec.positive).astype(int))
            m["positive_class"] = names[dec.positive]
        if "subgroups" in ev:
            _redo_subgroups(m, ev["subgroups"].get("column", ""), header, body, probs, y, calls, dec)
        atomic_write_json(ev_path, m)
        _update_final(d, m)
    return dec


def _redo_subgroups(m: dict, column: str, header, body, probs, y, calls, dec: RunDecision) -> None:
    from .subgroups import subgroup_report

    col = {h: i for i, h in enumerate(header)}
    key = "group" if column == "group" else f"field:{column}"
    if key in col:
        values = [r[col[key]] for r in body]
        m["subgroups"] = subgroup_report(values, y, probs, calls, dec.positive if dec.binary else None, column=column)


def _update_final(d: Path, test: dict) -> None:
    from .metrics import scalar_metrics

    path = d / "final.json"
    try:
        final = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    final = {k: v for k, v in final.items() if not k.startswith("test_")}
    final["test"] = test
    final.update({f"test_{k}": v for k, v in scalar_metrics(test).items()})
    atomic_write_json(path, final)
