"""A finished run's detailed results, read back from its folder (the Evaluate page, reports).

    res = EvaluationResults.load(run_dir)           # evaluation_test.json + test_predictions.csv
    res.confusion_matrix()                          # rows: true class, columns: predicted
    res.cell(true=0, predicted=1)                   # the row indices of exactly those images
    res.operating_point(0.3)                        # two classes: sensitivity/specificity at a threshold
    res.calls_at(0.3)                               # the class each image is called at that threshold
    res.decision                                    # the run's decision.json (argmax for older runs)
    images = RunImages(run.project()); images.load(res.refs[i])   # the pixels of a row's image

Reading needs neither Qt nor torch (``operating_point`` and ``roc`` import the metrics module).
"""
from __future__ import annotations

import csv
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StudioError


@dataclass
class EvaluationResults:
    """Per-image predictions and the metrics of one split of one run."""

    run_dir: Path
    split: str
    metrics: dict
    class_names: list[str]
    refs: list[str]
    labels: np.ndarray  # (N,) true class index
    predicted: np.ndarray  # (N,) predicted class index
    probs: np.ndarray  # (N, K)
    skipped_rows: list[str] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)  # group and metadata columns ("group", "field:site")
    sets: list[str] | None = None  # the prediction set of each row, as written
    decision: object = None  # tlstudio.core.analysis.decision.RunDecision

    @classmethod
    def available(cls, run_dir: str | Path, split: str = "test") -> bool:
        d = Path(run_dir)
        return (d / f"evaluation_{split}.json").is_file() and (d / f"{split}_predictions.csv").is_file()

    @classmethod
    def load(cls, run_dir: str | Path, split: str = "test") -> "EvaluationResults":
        d = Path(run_dir)
        jf, cf = d / f"evaluation_{split}.json", d / f"{split}_predictions.csv"
        if not jf.is_file() or not cf.is_file():
            raise StudioError(f"{d}: no {split} results yet ({jf.name} and {cf.name} are written when a run finishes).")
        try:
            metrics = json.loads(jf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise StudioError(f"{jf}: cannot read: {e}") from None
        with open(cf, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise StudioError(f"{cf}: empty file")
        header, body = rows[0], rows[1:]
        pcols = [i for i, h in enumerate(header) if h.startswith("p_")]
        names = list(metrics.get("class_names") or [header[i][2:] for i in pcols])
        if len(pcols) != len(names):
            raise StudioError(f"{cf}: {len(pcols)} probability columns for {len(names)} classes")
        index = {c: k for k, c in enumerate(names)}
        col = {h: i for i, h in enumerate(header)}
        xcols = [h for h in header if h == "group" or h.startswith("field:")]
        extra: dict[str, list[str]] = {h: [] for h in xcols}
        sets: list[str] = []
        refs, labels, preds, probs, bad = [], [], [], [], []
        for n, row in enumerate(body, start=2):
            try:
                lab, pred = index[row[col["label"]]], index[row[col["predicted"]]]
                p = [float(row[i]) for i in pcols]
            except (KeyError, IndexError, ValueError):
                bad.append(f"{cf.name}:{n}")
                continue
            refs.append(row[col["ref"]])
            labels.append(lab)
            preds.append(pred)
            probs.append(p)
            for h in xcols:
                extra[h].append(row[col[h]] if col[h] < len(row) else "")
            if "set" in col:
                sets.append(row[col["set"]] if col["set"] < len(row) else "")
        k = len(names)
        from .decision import RunDecision

        return cls(d, split, metrics, names, refs, np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64),
                   np.asarray(probs, dtype=np.float64).reshape(-1, k), bad, extra, sets if "set" in col else None,
                   RunDecision.load(d, names))

    # --- views ----------------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2

    def confusion_matrix(self) -> np.ndarray:
        k = len(self.class_names)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (self.labels, self.predicted), 1)
        return cm

    def cell(self, true: int, predicted: int) -> list[int]:
        """Row indices of the images of true class ``true`` predicted as ``predicted``."""
        return np.flatnonzero((self.labels == true) & (self.predicted == predicted)).tolist()

    def per_class(self) -> dict[str, dict]:
        return dict(self.metrics.get("per_class", {}))

    @property
    def positive(self) -> int:
        """Index of the positive class (two classes): the run's decision, else the class its
        ROC was drawn for, else the second class."""
        dec = self.decision
        if dec is not None and dec.positive is not None:
            return int(dec.positive)
        pc = self.metrics.get("positive_class")
        return self.class_names.index(pc) if pc in self.class_names else 1

    @property
    def threshold(self) -> float:
        """The stored threshold of the positive class (0.5 for a run without a decision)."""
        dec = self.decision
        return float(dec.threshold) if dec is not None and dec.threshold is not None else 0.5

    def roc(self, positive: int | None = None) -> dict | None:
        """{fpr, tpr, thresholds} for two classes (of the positive class)."""
        if not self.binary or len(set(self.labels.tolist())) < 2:
            return None
        pos = self.positive if positive is None else positive
        roc = self.metrics.get("roc")
        if roc and roc.get("fpr") and pos == self.positive:
            return roc
        from .metrics import roc_curve

        return roc_curve(self.probs[:, pos], (self.labels == pos).astype(int))

    def operating_point(self, threshold: float, positive: int | None = None) -> dict:
        """Sensitivity, specificity and counts of the positive class at ``threshold``."""
        from .metrics import binary_operating_point

        pos = self.positive if positive is None else positive
        return binary_operating_point(self.probs[:, pos], (self.labels == pos).astype(int), threshold)

    def calls_at(self, threshold: float, positive: int | None = None) -> np.ndarray:
        """The class each row is called when the positive class is called from ``threshold`` on."""
        pos = self.positive if positive is None else positive
        return np.where(self.probs[:, pos] >= threshold, pos, 1 - pos)

    def confusion_at(self, calls: np.ndarray) -> np.ndarray:
        k = len(self.class_names)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (self.labels, np.asarray(calls)), 1)
        return cm

    def per_class_at(self, calls: np.ndarray) -> dict[str, dict]:
        """Sensitivity, specificity, precision, F1 and support per class for these calls."""
        out = {}
        calls = np.asarray(calls)
        for i, c in enumerate(self.class_names):
            pos, called = self.labels == i, calls == i
            tp, fn = int((pos & called).sum()), int((pos & ~called).sum())
            tn, fp = int((~pos & ~called).sum()), int((~pos & called).sum())
            sens = tp / (tp + fn) if tp + fn else None
            prec = tp / (tp + fp) if tp + fp else None
            out[c] = {"sensitivity": sens, "specificity": tn / (tn + fp) if tn + fp else None, "precision": prec,
                      "f1": (2 * tp / (2 * tp + fp + fn)) if tp + fn else None, "support": tp + fn}
        return out

    def columns(self) -> list[str]:
        """The metadata columns a report by subgroup can use ("group", "site" ...)."""
        return [("group" if h == "group" else h[6:]) for h in self.extra]

    def subgroups(self, column: str, calls: np.ndarray | None = None, positive: int | None = None) -> dict:
        """The subgroup report of ``column`` (see :mod:`tlstudio.core.analysis.subgroups`)."""
        from .subgroups import subgroup_report

        key = "group" if column == "group" else f"field:{column}"
        if key not in self.extra:
            raise StudioError(f"no column '{column}' in the test predictions (columns: {', '.join(self.columns())})")
        calls = self.predicted if calls is None else calls
        pos = (self.positive if positive is None else positive) if self.binary else None
        return subgroup_report(self.extra[key], self.labels, self.probs, calls, pos, column=column)


class RunImages:
    """The pixels behind a result row's ``ref``: an image file as it is, or an item of the
    run's data source (an NPZ row "test/12" ...), read once and kept."""

    def __init__(self, project, readers: list | None = None):
        self.project = project
        self.readers = readers
        self._table = None
        self._index: dict[str, int] | None = None
        self._lock = threading.Lock()

    def _item_index(self) -> tuple:
        with self._lock:
            if self._table is None:
                from ..data import read_data

                p = self.project
                if not p.data.source:
                    raise StudioError("the run's project names no data source")
                self._table = read_data(p.resolve(p.data.source), p.data.format, p.data.options, self.readers,
                                        task=p.task)
                self._index = {it.ref: i for i, it in enumerate(self._table.items)}
            return self._table, self._index

    def load(self, ref: str) -> np.ndarray:
        """H x W x 3 uint8; raises :class:`StudioError` (a DataError) naming the item."""
        from ..data.image import read_file

        p = Path(ref)
        if p.is_file():
            opts = self.project.data.options if self.project is not None else {}
            window = None
            if opts.get("window_center") is not None and opts.get("window_width") is not None:
                window = [float(opts["window_center"]), float(opts["window_width"])]
            return read_file(p, window=window)[0]
        table, index = self._item_index()
        if ref not in index:
            raise StudioError(f"{ref}: not found in the run's data ({self.project.data.source})")
        return table.load_image(index[ref])
