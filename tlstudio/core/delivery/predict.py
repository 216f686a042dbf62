"""Predictions from a trained run: new inputs in, predictions out (any task)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

import torch

from ..io import atomic_write_text

from ..data.table import IMAGE_SUFFIXES, expand_paths  # noqa: F401 - where prediction has always had them


class Predictor:
    """A trained run's model, ready to predict (CLI, Predict page, Grad-CAM).

    The run's task does the task-specific work (``load_for_inference`` and
    ``predict_inputs``); :func:`tlstudio.core.engine.open_run_model` loads the run."""

    def __init__(self, run, ctx):
        self.run = run
        self.ctx = ctx
        self.task = ctx.task
        self.technique = ctx.technique
        self.model = ctx.task.inference_model(ctx).to(ctx.device).eval()

    @classmethod
    def from_run(cls, run_ref, runs_dir=None, plugins=None, checkpoint: str = "best", device: str = "cpu") -> "Predictor":
        from ..engine.inference import open_run_model
        from ..runs import open_run
        from ..settings import load_settings

        run = open_run(run_ref, runs_dir or load_settings().runs_path())
        return cls(run, open_run_model(run, plugins=plugins, which=checkpoint, device=device))

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self.ctx.data, "class_names", []) or [])

    def predict(self, inputs: list) -> list[dict]:
        with torch.no_grad():
            return self.task.predict_inputs(self.ctx, list(inputs))

    def predict_paths(self, paths: Iterable[str | Path]) -> list[dict]:
        """Image files or folders of them: one result per image."""
        return self.predict([str(p) for p in expand_paths(paths)])

    def write_csv(self, results: list[dict], path: str | Path, top_k: int = 3) -> Path:
        """The predictions, each row naming the run whose model made it."""
        return write_predictions_csv(results, self.class_names, path, top_k, source=self.run.id)

    @property
    def decision(self):
        """The run's decision (calibration, operating point, sets), or None for other tasks."""
        return self.ctx.scratch.get("decision")


def set_text(names: list[str]) -> str:
    """How a prediction set reads: "malignant", "malignant or benign — uncertain", or none."""
    if not names:
        return "none of the classes — unlike the training data"
    return names[0] if len(names) == 1 else " or ".join(names) + " — uncertain"


def top_text(top: list, k: int) -> str:
    return "; ".join(f"{c} {p:.3f}" for c, p in top[:k])


def write_predictions_csv(results: list[dict], names: list[str], path: str | Path, top_k: int = 3,
                          source: str = "") -> Path:
    """input, predicted, [set], [top_k], p_<class>..., error, [run]: one row per input (a run's or
    a package's).  ``predicted`` is the run's decision (its operating point, for two classes);
    ``set`` the conformal prediction set where the run has one; ``top_k`` the most probable
    classes (more than two classes); ``run`` the run whose model made it (``source``)."""
    has_set = any("set" in r for r in results)
    has_top = any("top" in r for r in results) and top_k > 0
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["input", "predicted"] + (["set"] if has_set else []) + (["top_k"] if has_top else [])
               + [f"p_{c}" for c in names] + ["error"] + (["run"] if source else []))
    for r in results:
        probs = r.get("probabilities", {})
        pred = r.get("predicted", "")
        ok = not r.get("error")
        w.writerow([r["ref"], pred if isinstance(pred, str) else repr(pred)]
                   + ([set_text(r["set"]) if ok and "set" in r else ""] if has_set else [])
                   + ([top_text(r.get("top") or [], top_k)] if has_top else [])
                   + [f"{probs[c]:.6f}" if c in probs else "" for c in names] + [r.get("error", "")]
                   + ([source] if source else []))
    return atomic_write_text(path, buf.getvalue())
