"""Helpers of the fine-tuning toolkit tests (no tests here)."""
from __future__ import annotations

from conftest import quick_project


def technique_context(data, technique: str, settings: dict | None = None, **training):
    """A run's context with the model built and the optimizer made, exactly as the engine
    does before the first epoch (no run folder): returns (technique, ctx, events)."""
    from tlstudio.core.engine import open_context

    p = quick_project(data, technique, **training)
    p.technique.settings = dict(settings or {})
    events: list = []
    ctx = open_context(p, device="cpu", emit=events.append)
    return ctx.technique, ctx, events


def epoch_starts(ctx, epoch: int) -> None:
    """What the engine calls at the start of an epoch: the technique's and its callbacks' hooks."""
    ctx.recipe.call("on_epoch_start", ctx, epoch)


def trainable(model) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def in_optimizer(opt) -> set[int]:
    return {id(p) for g in opt.param_groups for p in g["params"]}


def params_of(groups) -> set[int]:
    return {id(p) for g in groups for p in g.parameters()}


def one_step(ctx, tech=None) -> float:
    """One real training step on the first training batch (through the whole recipe)."""
    ctx.model.train()
    batch = next(iter(ctx.train_batches(0)))
    out = ctx.training_step(batch)
    opt = ctx.train.optimizer
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    return float(out["loss"].detach())
