"""Predictions from a trained run: new inputs in, predictions out (any task)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

import torch

from .errors import StudioError
from .io import atomic_write_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"}


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the image files inside them (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                          and not f.name.startswith("."))
        else:
            out.append(p)
    return out


class Predictor:
    """A trained run's model, ready to predict (CLI, Predict page, Grad-CAM).

    The run's technique does the task-specific work (``load_for_inference`` and
    ``predict_inputs``); this class loads the run and its checkpoint."""

    def __init__(self, run, technique, ctx):
        self.run = run
        self.technique = technique
        self.ctx = ctx
        self.model = technique.inference_model(ctx).to(ctx.device).eval()

    @classmethod
    def from_run(cls, run_ref, runs_dir=None, plugins=None, checkpoint: str = "best", device: str = "cpu") -> "Predictor":
        from .engine import RunContext, _technique_for, select_device
        from .plugins import get_plugin_manager
        from .runs import open_run
        from .settings import load_settings

        plugins = plugins or get_plugin_manager()
        run = open_run(run_ref, runs_dir or load_settings().runs_path())
        path = run.best_checkpoint if checkpoint == "best" and run.best_checkpoint.exists() else run.last_checkpoint
        if not path.exists():
            raise StudioError(f"{run.dir}: this run has no trained model yet (no checkpoint).")
        state = torch.load(path, map_location="cpu", weights_only=True)
        project = run.project()
        tech, cfg = _technique_for(project, plugins)
        ctx = RunContext(project, tech, cfg, select_device(device), run=None, plugins=plugins, for_inference=True)
        tech.load_for_inference(ctx, run.dir, state)
        ctx.model = tech.build(ctx)
        ctx.model.load_state_dict(state["model"])
        tech.load_state_dict(state.get("technique") or {})
        return cls(run, tech, ctx)

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self.ctx.data, "class_names", []) or [])

    def predict(self, inputs: list) -> list[dict]:
        with torch.no_grad():
            return self.technique.predict_inputs(self.ctx, list(inputs))

    def predict_paths(self, paths: Iterable[str | Path]) -> list[dict]:
        """Image files or folders of them: one result per image."""
        return self.predict([str(p) for p in expand_paths(paths)])

    def write_csv(self, results: list[dict], path: str | Path) -> Path:
        """The predictions, each row naming the run whose model made it."""
        return write_predictions_csv(results, self.class_names, path, source=self.run.id)


def write_predictions_csv(results: list[dict], names: list[str], path: str | Path, source: str = "") -> Path:
    """input, predicted, p_<class>..., error (and "run": ``source``, the model's run): one row per input
    (a run's or a package's)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["input", "predicted"] + [f"p_{c}" for c in names] + ["error"] + (["run"] if source else []))
    for r in results:
        probs = r.get("probabilities", {})
        pred = r.get("predicted", "")
        w.writerow([r["ref"], pred if isinstance(pred, str) else repr(pred)]
                   + [f"{probs[c]:.6f}" if c in probs else "" for c in names] + [r.get("error", "")]
                   + ([source] if source else []))
    return atomic_write_text(path, buf.getvalue())
