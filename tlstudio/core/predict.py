"""Predictions from a trained run: new images in, classes and probabilities out."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .errors import StudioError
from .io import atomic_write_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"}


class _InferenceData:
    """What a technique's ``build`` needs to know about the data when only predicting."""

    def __init__(self, class_names: list[str]):
        self.class_names = class_names


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
    """A trained run's model, ready to classify images (CLI, Predict page, Grad-CAM)."""

    def __init__(self, run, ctx, model: torch.nn.Module, class_names: list[str], size: int, mean, std):
        self.run = run
        self.ctx = ctx
        self.model = model.eval()
        self.class_names = class_names
        self.size = size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

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
        try:
            desc = json.loads((run.dir / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StudioError(f"{run.dir}: data.json is missing: the run did not get as far as preparing its data.") from None
        ctx = RunContext(project, tech, cfg, select_device(device), run=None, plugins=plugins, for_inference=True)
        ctx.data = _InferenceData(list(state.get("class_names") or desc["class_names"]))
        ctx.model = tech.build(ctx)
        ctx.model.load_state_dict(state["model"])
        tech.load_state_dict(state.get("technique") or {})
        model = tech.inference_model(ctx).to(ctx.device)
        return cls(run, ctx, model, ctx.data.class_names, int(desc["image_size"]), desc["mean"], desc["std"])

    # --- preprocessing ------------------------------------------------------------------
    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """H x W x 3 uint8 images -> a normalised batch, exactly as in training."""
        from .data import resize_image

        arr = np.stack([resize_image(im, self.size) for im in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def predict_arrays(self, images: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            x = self.preprocess(images[i:i + batch_size]).to(self.ctx.device)
            out.append(self.model(x).float().softmax(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def load(self, path: str | Path) -> np.ndarray:
        from .data import decode_image, decode_dicom
        from .data.image import is_dicom

        return decode_dicom(path) if is_dicom(path) else decode_image(path)

    def predict_paths(self, paths: Iterable[str | Path]) -> list[dict]:
        """One result per image: {"ref", "predicted", "probabilities"} or {"ref", "error"}."""
        results: list[dict] = []
        good: list[tuple[int, np.ndarray]] = []
        for p in expand_paths(paths):
            try:
                good.append((len(results), self.load(p)))
                results.append({"ref": str(p)})
            except Exception as e:  # noqa: BLE001 - a bad image is reported, the rest go on
                results.append({"ref": str(p), "error": str(e)})
        if good:
            probs = self.predict_arrays([a for _, a in good])
            for (k, _), pr in zip(good, probs):
                results[k]["predicted"] = self.class_names[int(pr.argmax())]
                results[k]["probabilities"] = {c: float(v) for c, v in zip(self.class_names, pr)}
        return results

    def write_csv(self, results: list[dict], path: str | Path) -> Path:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", "predicted"] + [f"p_{c}" for c in self.class_names] + ["error"])
        for r in results:
            probs = r.get("probabilities", {})
            w.writerow([r["ref"], r.get("predicted", "")] + [f"{probs[c]:.6f}" if c in probs else "" for c in self.class_names]
                       + [r.get("error", "")])
        return atomic_write_text(path, buf.getvalue())
