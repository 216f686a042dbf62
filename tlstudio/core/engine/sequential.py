"""Sequential transfer: a run that starts from an earlier run's trained model.

Set ``Project.model.from_run`` (``tlstudio train ... --from-run RUN``, or "Start from run"
in the window) and :meth:`RunContext.build_classifier` builds the new model from the
earlier run's best checkpoint (loaded with ``weights_only=True``): its backbone always, its
head too when both runs have the same classes.  The earlier run's data and test set travel
with the new run (:class:`SourceTask`, recorded in ``from_run.json`` and
``source_split.json``), and at the end the engine reports the earlier task's accuracy
before and after learning the new one: the forgetting, in points.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, StudioError
from ..io import atomic_write_json
from ..runs import Run, open_run


def resolve_run(ref: str | Path, *roots: str | Path | None) -> Run:
    """An earlier run by folder or id (looked up in ``roots``, then the runs folder)."""
    from ..settings import load_settings

    tried = [r for r in roots if r] + [load_settings().runs_path()]
    for root in tried:
        try:
            return open_run(ref, root)
        except StudioError:
            continue
    raise StudioError(f"Start from run: {ref} is not a run folder or the id of a run in "
                      f"{', '.join(str(r) for r in tried)}.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _EarlierTaskContext:
    """The run's context seen through the earlier run's project (to prepare its data)."""

    def __init__(self, ctx, project):
        self._ctx = ctx
        self.project = project

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def log(self, message: str, level: str = "info") -> None:
        self._ctx.log(f"Earlier task: {message}", level)


class SourceTask:
    """The earlier run of a sequential transfer: its model (frozen, as it finished), its
    data with the same split, and its accuracy before the new task was learned."""

    def __init__(self, run: Run, project, data, model: torch.nn.Module, shared_head: bool):
        self.run = run
        self.project = project
        self.data = data
        self.model = model  # the earlier model, frozen: its head scores the earlier task
        self.shared_head = shared_head  # same classes: the new model's own head scores it
        self.before: dict = {}
        self.split = "test" if data.has_split("test") else "val"

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    def scoring_model(self, model: torch.nn.Module | None):
        """The network that answers the earlier task: the new model itself when the classes
        are the same, else the new backbone under the earlier head."""
        if model is None:
            return self.model
        if self.shared_head:
            return model
        head = self.model.head
        return lambda x: head(model.backbone(x))

    @torch.no_grad()
    def evaluate(self, ctx, split: str | None = None, model: torch.nn.Module | None = None) -> dict:
        """Metrics of the earlier task on its ``split`` (default: its test set) with
        ``model``'s backbone (None: the earlier model as it finished)."""
        from ..analysis.metrics import classification_metrics

        split = split or self.split
        was_training = model.training if model is not None else False
        if model is not None:
            model.eval()
        self.model.eval()
        net = self.scoring_model(model)
        ds = self.data.dataset(split, train=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=ctx.training.batch_size * 2, shuffle=False)
        probs, targets = [], []
        with ctx.autocast():
            for x, y in loader:
                probs.append(net(ctx.to_device(x)).float().softmax(1).cpu())
                targets.append(y)
        if model is not None and was_training:
            model.train()
        m = classification_metrics(torch.cat(probs), torch.cat(targets).long(), self.class_names)
        m["split"] = split
        return m

    def loader(self, split: str = "train", max_samples: int | None = None, batch_size: int = 32, seed: int = 0):
        """Batches of the earlier task's ``split`` (plain preprocessing), at most
        ``max_samples`` images drawn at random with ``seed`` (for the Fisher information)."""
        ds = self.data.dataset(split, train=False)
        if max_samples and len(ds) > max_samples:
            pick = np.random.default_rng(seed).choice(len(ds), max_samples, replace=False)
            ds = torch.utils.data.Subset(ds, np.sort(pick).tolist())
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)

    def final_metrics(self, ctx) -> dict:
        """The earlier task's accuracy before and after this run, and the forgetting."""
        from ..analysis.metrics import scalar_metrics

        after = self.evaluate(ctx, model=ctx.model)
        before = self.before or self.evaluate(ctx)
        drop = 100.0 * (before["accuracy"] - after["accuracy"])
        ctx.log(f"Earlier task ({self.run.id}, {self.split} set): accuracy {before['accuracy']:.3f} before, "
                f"{after['accuracy']:.3f} after learning the new task: forgetting {drop:.1f} points.")
        info = {"run_id": self.run.id, "run_dir": str(self.run.dir), "split": self.split, "n": after.get("n"),
                "class_names": self.class_names, "shared_head": self.shared_head,
                "before": scalar_metrics(before), "after": scalar_metrics(after), "forgetting_points": drop}
        if ctx.run is not None:
            atomic_write_json(ctx.run.dir / "evaluation_source_task.json", {**info, "before_full": before, "after_full": after})
        return {"source_task": info, "source_accuracy_before": before["accuracy"],
                "source_accuracy_after": after["accuracy"], "forgetting_points": drop}


def load_run_model(run: Run, plugins=None, device: str | torch.device = "cpu"):
    """The trained model of a finished image-classification run (best checkpoint, loaded
    safely) and the project it was trained with."""
    from ..models.classifier import ClassifierModel
    from .inference import open_run_model

    ictx = open_run_model(run, plugins=plugins, device=device)
    model = ictx.task.inference_model(ictx)
    if not isinstance(model, ClassifierModel):
        raise ModelError(f"Start from run: {run.id} was trained by '{ictx.technique.id}', whose model is not an image "
                         "classifier with a backbone and a head; choose an image-classification run.")
    return model, ictx.project


def start_from_run(ctx, model) -> SourceTask:
    """Load the earlier run ``ctx.project.model.from_run`` into ``model`` (built for this
    run's classes) and attach its task: ``ctx.source_task``."""
    proj = ctx.project
    roots = [ctx.run.dir.parent if ctx.run is not None else None]
    run = resolve_run(proj.model.from_run, *roots)
    if ctx.run is not None and run.dir.resolve() == ctx.run.dir.resolve():
        raise StudioError("Start from run: a run cannot start from itself.")
    if not run.best_checkpoint.exists():
        raise StudioError(f"Start from run: {run.id} has no trained model (no checkpoints/best.pt); "
                          "choose a run that finished at least one epoch.")
    old, old_project = load_run_model(run, ctx.plugins, ctx.device)
    if old_project.task != ctx.task.id:
        raise StudioError(f"Start from run: {run.id} is a {old_project.task} run; sequential transfer needs an "
                          "image-classification run.")
    if old.arch_name != proj.model.architecture:
        raise ModelError(f"Start from run: {run.id} trained {old.arch_name}, but this project uses "
                         f"{proj.model.architecture}; choose {old.arch_name} as the model.")
    model.backbone.load_state_dict(old.backbone.state_dict())
    data = ctx.task.prepare_data(_EarlierTaskContext(ctx, old_project))
    old_names = data.class_names
    new_sd, old_sd = model.head.state_dict(), old.head.state_dict()
    same = old_names == ctx.class_names and set(new_sd) == set(old_sd) and all(
        new_sd[k].shape == old_sd[k].shape for k in new_sd)
    if same:
        model.head.load_state_dict(old_sd)
    for p in old.parameters():
        p.requires_grad_(False)
    old.eval().to(ctx.device)
    task = SourceTask(run, old_project, data, old, same)
    ctx.source_task = task
    task.before = task.evaluate(ctx)
    ckpt = run.best_checkpoint
    ctx.model_info.update(weights=f"run:{run.id}", weights_path=str(ckpt), weights_source="run",
                          weights_sha256=_sha256(ckpt), head="from run" if same else "new")
    ctx.log(f"Starting from run {run.id}: its trained {old.arch_name} backbone"
            + (" and head (same classes)" if same else f"; a new head for {', '.join(ctx.class_names[:10])}")
            + f". Its {task.split} set ({len(data.indices[task.split])} images) stays with this run: accuracy "
            f"{task.before['accuracy']:.3f} before learning the new task.")
    _record(ctx, task)
    return task


def _record(ctx, task: SourceTask) -> None:
    """Write what the new run inherited into its folder (from_run.json, source_split.json)."""
    if ctx.run is None:
        return
    from ..analysis.metrics import scalar_metrics

    d = task.data
    split_copy = None
    if d.split_file and Path(d.split_file).exists():
        split_copy = "source_split.json"
        shutil.copyfile(d.split_file, ctx.run.dir / split_copy)
    p = task.project
    atomic_write_json(ctx.run.dir / "from_run.json", {
        "run_id": task.run.id, "run_dir": str(task.run.dir), "checkpoint": str(task.run.best_checkpoint),
        "technique": p.technique.id, "architecture": p.model.architecture, "image_size": d.size,
        "class_names": d.class_names, "shared_head": task.shared_head,
        "data": {"source": str(d.table.source), "format": p.data.format, "options": p.data.options,
                 "fingerprint": d.fingerprint, "split_file": split_copy,
                 "split_counts": {s: int(len(d.indices[s])) for s in ("train", "val", "test")}},
        "evaluated_on": task.split, "before": scalar_metrics(task.before)})
