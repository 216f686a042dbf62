"""A trained run's model, ready for prediction, export and Grad-CAM: its project, technique
and task rebuilt with an :class:`InferenceContext` and its checkpoint's weights (loaded
safely).  No pretrained weights are read and nothing is written."""
from __future__ import annotations

import torch

from ..errors import StudioError
from ..techniques.base import Recipe
from . import checkpoint
from .services import InferenceContext
from .control import select_device
from .project import technique_for


def open_run_model(run, plugins=None, which: str = "best", device: str | torch.device = "cpu",
                   emit=None) -> InferenceContext:
    """The context of ``run``'s trained model: ``ctx.model`` (eval mode), ``ctx.data`` (what
    prediction needs: classes, preprocessing), ``ctx.task`` and ``ctx.technique``.
    ``which``: "best" (the weights the run kept; the last ones when there is no best) or "last".
    ``emit`` receives what reading the run's data logs (export reads it)."""
    from ..plugins import get_plugin_manager

    plugins = plugins or get_plugin_manager()
    path, state = checkpoint.inference_checkpoint(run, which)
    project = run.project()
    tech, cfg = technique_for(project, plugins)
    task = plugins.task(tech.task).fresh()
    dev = device if isinstance(device, torch.device) else select_device(str(device))
    ctx = InferenceContext(project, tech, cfg, task, dev, plugins, emit)
    ctx.run_dir = run.dir
    # the recipe's and the task's state first: they may say how to build (a detector's spec, a vocabulary)
    Recipe.of(tech, cfg).load_state_dict(state.get("technique") or {})
    task.load_state_dict(state.get("task_state") or {})
    ctx.data = task.load_for_inference(ctx, run.dir, state)
    ctx.model = tech.build(ctx)
    try:
        ctx.model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise StudioError(f"{path}: the checkpoint does not fit the run's model "
                          f"({str(e).strip().splitlines()[0][:200]})") from None
    ctx.model.to(dev).eval()
    # where the model came from (epoch, monitor, classes ...): exports and model cards say it
    ctx.checkpoint = {k: v for k, v in state.items() if k not in ("model", "optimizer", "technique")}
    return ctx
