"""One training epoch, read top to bottom like torchvision's ``train_one_epoch``:

    for batch in the epoch's batches:
        check Stop / Pause
        move the batch to the device, set this step's learning rate
        forward + loss (the recipe), backward, optimizer step
        add the batch's figures; now and then tell the window (a BatchEnded event)

What makes it robust sits behind small named helpers: :func:`optimizer_step` goes on in
halves after an out-of-memory (gradient accumulation keeps the batch), :class:`EpochMeter`
reads losses off the GPU only when they are shown (the GPU never waits for the CPU), and
the sums of several processes are added once at the end of the epoch.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch

from ..errors import StudioError
from ..events import BatchEnded, Throttle
from ..runs import RUNNING
from ..techniques import blocks


def train_one_epoch(ctx, model, epoch: int, throttle: Throttle) -> dict:
    """Train ``model`` (the plain model, or its DistributedDataParallel wrapper) for one
    epoch; returns ``{"train_loss", "train_<scalar>"..., "train_images_per_s", "data_wait_share"}``."""
    model.train()
    blocks.keep_frozen_bn_in_eval(model)
    state = ctx.train
    meter = EpochMeter(lazy=ctx.device.type == "cuda")
    batches = ctx.train_batches(epoch)
    n_batches = len(batches) if hasattr(batches, "__len__") else state.steps_per_epoch
    for i, batch in enumerate(meter.timed(batches)):
        ctx.control.sync()
        batch = ctx.to_device(batch)
        blocks.apply_lr(state.optimizer, blocks.lr_factor(state.step, state.steps_per_epoch * state.epochs,
                                                          state.steps_per_epoch, ctx.training))
        out = optimizer_step(ctx, model, batch, i)
        state.step += 1
        meter.add(out, batch_size(batch))
        last = i + 1 == n_batches
        if not meter.lazy or last or throttle.due("batch"):
            shown = meter.show(out, epoch, i)
            event = BatchEnded(epoch=epoch + 1, batch=i + 1, batches=n_batches, step=state.step, loss=shown.pop("loss"),
                               values=shown, lr=ctx.lr_by_group(), images_per_s=meter.speed(ctx))
            if throttle.admit(event):
                ctx.emit(event)
    return meter.summary(ctx)


def optimizer_step(ctx, model, batch, i: int = 0) -> dict:
    """Forward, backward and optimizer step of one batch.  After an out-of-memory on the
    device the batch goes through in halves (gradient accumulation: the optimizer sees the
    same batch) and the run carries on, and says so."""
    while True:
        try:
            return _accumulated_step(ctx, model, batch, i)
        except torch.OutOfMemoryError:
            if ctx.dist is not None:
                raise  # several processes: the job restarts smaller (see the loop)
        # outside the except block, so that the failed attempt's tensors are freed
        halve_micro_batch(ctx, batch)


def _accumulated_step(ctx, model, batch, i: int) -> dict:
    state, tr = ctx.train, ctx.training
    n = batch_size(batch)
    parts = split_batch(batch, state.micro_batch) if state.micro_batch and state.micro_batch < n else [batch]
    ddp = model is not unwrap_model(model)
    if ddp:
        model._tl_used = False
    state.optimizer.zero_grad(set_to_none=True)
    out: dict = {}
    for k, part in enumerate(parts):
        weight = batch_size(part) / n
        with (model.no_sync() if ddp and k < len(parts) - 1 else contextlib.nullcontext()):
            with ctx.autocast():
                o = ctx.training_step(part)
            if ctx.device.type != "cuda":  # on a GPU the loss is checked when it is read (EpochMeter.show)
                check_loss(o["loss"], state.epoch, i)
            backward(ctx, o["loss"] * weight if len(parts) > 1 else o["loss"])
        for key, v in o.items():
            v = v.detach() if torch.is_tensor(v) else float(v)
            out[key] = v if len(parts) == 1 else out.get(key, 0.0) + v * weight
        del o
    if ddp and not model._tl_used:  # the step did not go through the DDP forward (ctx.model.head(f))
        ctx.dist.average_gradients(p for g in state.optimizer.param_groups for p in g["params"])
    if state.scaler is not None:
        if tr.grad_clip:
            state.scaler.unscale_(state.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        if tr.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        state.optimizer.step()
    return out


def backward(ctx, loss: torch.Tensor) -> None:
    scaler = ctx.train.scaler
    (scaler.scale(loss) if scaler is not None else loss).backward()


def halve_micro_batch(ctx, batch) -> None:
    state = ctx.train
    n = batch_size(batch)
    cur = min(state.micro_batch or n, n)
    new = cur // 2
    state.optimizer.zero_grad(set_to_none=True)
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    if new < 1 or split_batch(batch, new) is None:
        raise StudioError(f"Out of GPU memory even with {cur} image(s) at a time. Choose a smaller image size "
                          "or a smaller model, or close other programs that use the graphics card.")
    state.micro_batch = new
    ctx.log(f"Out of GPU memory with {cur} images at a time: continuing with {new} at a time "
            f"(gradient accumulation keeps the batch of {n}, so the results do not change).", "warning",
            oom={"from": cur, "to": new, "batch": n})
    if ctx.run is not None and (ctx.dist is None or ctx.dist.is_main):
        ctx.run.set_status(RUNNING, micro_batch=new)


class EpochMeter:
    """The epoch's sums of the step's scalars, the images seen and the time spent waiting
    for data.  ``lazy`` (GPU): the sums stay on the device and a loss is read (a sync) only
    when it is shown."""

    def __init__(self, lazy: bool):
        self.lazy = lazy
        self.sums: dict[str, Any] = {}
        self.batches = 0
        self.images = 0
        self.waited = 0.0
        self.t0 = time.time()

    def timed(self, batches):
        it = iter(batches)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.waited += time.perf_counter() - t
            yield batch

    def add(self, out: dict, n: int) -> None:
        self.batches += 1
        self.images += n
        for k, v in out.items():
            v = v.detach().float() if torch.is_tensor(v) and self.lazy else (float(v) if not self.lazy else v)
            self.sums[k] = self.sums.get(k, 0.0) + v

    def show(self, out: dict, epoch: int, i: int) -> dict[str, float]:
        scalars = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
        if self.lazy:  # the only place a GPU loss is read: check it here
            check_loss(scalars["loss"], epoch, i)
        return scalars

    def speed(self, ctx) -> float:
        el = time.time() - self.t0
        world = ctx.dist.world if ctx.dist else 1
        return self.images * world / el if el > 0 else 0.0

    def summary(self, ctx) -> dict:
        elapsed = max(1e-9, time.time() - self.t0)
        keys = sorted(self.sums)
        totals = [float(self.sums[k]) for k in keys] + [self.batches, self.images, self.waited, elapsed]
        world = 1
        if ctx.dist is not None:  # the epoch's figures over all processes
            totals = ctx.dist.sum(totals)
            world = ctx.dist.world
        *vals, n_all, seen_all, waited_all, elapsed_all = totals
        stats = {f"train_{k}": v / max(1, n_all) for k, v in zip(keys, vals)}
        stats["train_images_per_s"] = seen_all / (elapsed_all / world)
        stats["data_wait_share"] = waited_all / elapsed_all  # share of the epoch spent waiting for the loader
        return stats


def check_loss(loss, epoch: int, i: int) -> None:
    v = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
    if not math.isfinite(v):
        raise StudioError(f"The loss became {v} at epoch {epoch + 1}, batch {i + 1}: the learning "
                          "rate is probably too high. Lower it (for example by 10x) and train again.")


def unwrap_model(model):
    """The plain model inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def split_batch(batch: Any, size: int) -> list | None:
    """``batch`` cut into parts of at most ``size`` samples (tensors along their first
    dimension, lists of per-sample items, recursively); None when it cannot be cut."""
    n = batch_size(batch)
    if n <= size:
        return [batch]
    found = []

    def cut(x, a: int, b: int):
        if torch.is_tensor(x):
            if x.dim() and x.shape[0] == n:
                found.append(True)
                return x[a:b]
            return x
        if isinstance(x, dict):
            return {k: cut(v, a, b) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            if len(x) == n and not any(isinstance(v, (torch.Tensor, list, tuple, dict)) for v in x):
                found.append(True)
                return type(x)(x[a:b])
            return type(x)(cut(v, a, b) for v in x)
        return x

    parts = [cut(batch, a, min(n, a + size)) for a in range(0, n, size)]
    return parts if found else None


def batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, (list, tuple)) and batch:
        return batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return batch_size(next(iter(batch.values())))
    return 1
