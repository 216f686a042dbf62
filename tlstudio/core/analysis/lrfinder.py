"""The learning-rate range test (Smith 2017; fastai's lr_find): one click before training.

The project's technique builds its model and parameter groups exactly as a run would
(frozen layers stay frozen, per-group rates keep their ratios), then the learning rate
climbs geometrically from ``start_lr`` to ``end_lr`` over ``steps`` training steps on the
project's own training images.  The smoothed loss against the rate is the plot; the
suggested rate is where the loss falls fastest (steepest descent), or a tenth of the rate
at the lowest loss when the curve has no clear slope.  Nothing is written to the run
store: the model, its optimizer and its state are thrown away afterwards.

    from tlstudio.core.analysis.lrfinder import find_lr
    res = find_lr(load_project("project.toml"))
    res["suggested"]        # for the project's training.lr (the head's rate)
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..techniques import blocks
from ..errors import RunStopped, StudioError


def _smooth(values: list[float], beta: float) -> list[float]:
    """Exponential moving average with bias correction (as fastai's)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


def suggest_lr(lrs: list[float], losses: list[float]) -> dict:
    """Suggestions from a (smoothed) range-test curve.

    ``steepest``: the rate where the loss falls fastest per decade of rate (the slope of
    loss over log10(lr), taken on the part of the curve before its minimum, without the
    first and last tenth where the curve is noise or already exploding).  ``min_div10``:
    a tenth of the rate at the lowest loss.  ``suggested``: the steepest point when it lies
    below the minimum, else ``min_div10`` -- but never a rate outside the range tested: when
    the loss was lowest within the first decade (it never fell), ``suggested`` is None and
    ``note`` says why.
    """
    lr = np.asarray(lrs, dtype=float)
    ls = np.asarray(losses, dtype=float)
    ok = np.isfinite(lr) & np.isfinite(ls) & (lr > 0)
    lr, ls = lr[ok], ls[ok]
    if len(lr) == 0:
        raise StudioError("The learning-rate range test produced no usable loss values.")
    i_min = int(np.argmin(ls))
    min_div10 = float(lr[i_min] / 10)
    steepest = None
    if i_min >= 4:
        lo = max(1, int(0.1 * i_min))
        x = np.log10(lr[: i_min + 1])
        g = np.gradient(ls[: i_min + 1], x)
        seg = g[lo:i_min]
        if len(seg) and np.isfinite(seg).any() and np.nanmin(seg) < 0:
            steepest = float(lr[lo + int(np.nanargmin(seg))])
    suggested = steepest if steepest is not None and steepest < lr[i_min] else min_div10
    note = ""
    if suggested < lr[0]:
        suggested = None
        note = (f"The loss did not fall over the rates tried (it was lowest at {lr[i_min]:.2g}, near the start "
                f"of the range): there is no rate to suggest. Run the test with more steps, or keep the current rate.")
    return {"suggested": None if suggested is None else float(suggested), "steepest": steepest,
            "min_div10": min_div10, "lr_at_min": float(lr[i_min]), "min_loss": float(ls[i_min]), "note": note}


def find_lr(project, plugins=None, on_event: Callable[[dict], None] | None = None, control=None,
            start_lr: float = 1e-7, end_lr: float = 1.0, steps: int = 100, smoothing: float = 0.9,
            diverge: float = 4.0) -> dict:
    """Run the range test on ``project`` and return ``{"lrs", "losses", "raw_losses",
    "suggested", "steepest", "min_div10", "stopped_early", ...}``.

    ``lrs`` are the rates of the project's head group (``training.lr``'s place; the other
    groups move in step at their usual ratios); ``losses`` the smoothed training losses.
    The test stops early once the smoothed loss exceeds ``diverge`` times its minimum or
    becomes non-finite.  Events: ``lr_find`` per step ({step, steps, lr, loss}), ``log``
    and ``progress``; ``control`` (a :class:`RunControl`) stops it (the curve so far is
    returned, with ``stopped`` true).
    """
    from ..engine import open_context, seed_everything
    from ..events import LrFound, LrStep, Progress

    if not (0 < start_lr < end_lr):
        raise StudioError(f"The range test needs 0 < start_lr < end_lr (got {start_lr} and {end_lr}).")
    steps = max(5, int(steps))
    tr = project.training
    if tr.threads:
        torch.set_num_threads(tr.threads)
    seed_everything(tr.seed)
    ctx = open_context(project, plugins=plugins, device=tr.device, emit=on_event, control=control)
    opt = ctx.train.optimizer
    # each group's rate relative to the head's (training.lr): the curve is in head rates
    ref = max(g["base_lr"] for g in opt.param_groups)
    ratios = [g["base_lr"] / ref for g in opt.param_groups]
    mult = (end_lr / start_lr) ** (1.0 / (steps - 1))
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    best = math.inf
    stopped = exploded = False
    ctx.log(f"Learning-rate range test: {steps} steps from {start_lr:g} to {end_lr:g}.")
    model = ctx.model
    epoch = 0
    try:
        while len(lrs) < steps and not exploded:
            model.train()
            blocks.keep_frozen_bn_in_eval(model)
            for batch in ctx.train_batches(epoch):
                ctx.control.check()
                lr = start_lr * mult ** len(lrs)
                for g, r in zip(opt.param_groups, ratios):
                    g["lr"] = lr * r
                batch = ctx.to_device(batch)
                with ctx.autocast():
                    out = ctx.training_step(batch)
                loss = out["loss"]
                value = float(loss.detach())
                lrs.append(lr)
                if not math.isfinite(value):
                    exploded = True
                    lrs.pop()
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                raw.append(value)
                avg = _smooth(raw, smoothing)[-1]
                smoothed.append(avg)
                best = min(best, avg)
                ctx.emit(LrStep(step=len(lrs), steps=steps, lr=lr, loss=avg, raw_loss=value))
                ctx.emit(Progress(task="Finding the learning rate", done=len(lrs), total=steps))
                if len(lrs) > 5 and avg > diverge * best:
                    exploded = True
                    break
                if len(lrs) >= steps:
                    break
            epoch += 1
    except RunStopped:
        stopped = True
    if not smoothed:
        raise StudioError("The learning-rate range test was stopped before its first step.") if stopped else \
            StudioError(f"The loss was not finite from the first step at {start_lr:g}: check the data and the model.")
    res = {"lrs": lrs, "losses": smoothed, "raw_losses": raw, **suggest_lr(lrs, smoothed),
           "stopped_early": exploded, "stopped": stopped, "start_lr": start_lr, "end_lr": end_lr,
           "group_ratios": dict(zip((g.get("name", str(i)) for i, g in enumerate(opt.param_groups)), ratios))}
    if res["suggested"] is None:
        ctx.log(res["note"], "warning")
    else:
        ctx.log(f"Suggested learning rate: {res['suggested']:.2g} (loss fell fastest there; "
                f"lowest loss at {res['lr_at_min']:.2g}).")
    ctx.emit(LrFound(suggested=res["suggested"], steepest=res["steepest"], min_div10=res["min_div10"]))
    return res
