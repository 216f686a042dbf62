"""Helpers of the fine-tuning toolkit tests (no tests here)."""
from __future__ import annotations

import torch
from conftest import quick_project


def technique_context(data, technique: str, settings: dict | None = None, **training):
    """A technique with its model built and its optimizer made, exactly as the engine does
    before the first epoch (no run folder): returns (technique, ctx, events)."""
    from tlstudio.core.engine import RunContext, _technique_for
    from tlstudio.core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    p = quick_project(data, technique, **training)
    p.technique.settings = dict(settings or {})
    tech, cfg = _technique_for(p, pm)
    events: list[dict] = []
    ctx = RunContext(p, tech, cfg, torch.device("cpu"), run=None, plugins=pm, emit=events.append)
    tech.prepare_data(ctx)
    torch.manual_seed(0)
    ctx.model = tech.build(ctx)
    tech.on_fit_start(ctx)
    ctx.set_param_groups(tech.param_groups(ctx))
    return tech, ctx, events


def trainable(model) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def in_optimizer(opt) -> set[int]:
    return {id(p) for g in opt.param_groups for p in g["params"]}


def params_of(groups) -> set[int]:
    return {id(p) for g in groups for p in g.parameters()}


def one_step(ctx, tech) -> float:
    """One real training step on the first training batch."""
    ctx.model.train()
    batch = next(iter(tech.train_batches(ctx, 0)))
    out = tech.training_step(ctx, batch)
    ctx.optimizer.zero_grad()
    out["loss"].backward()
    ctx.optimizer.step()
    return float(out["loss"].detach())
