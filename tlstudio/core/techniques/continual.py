"""Learning a new task without forgetting the old one: the diagonal Fisher information and
the elastic weight consolidation penalty (Kirkpatrick et al., "Overcoming catastrophic
forgetting in neural networks", PNAS 2017).

After task A the weights ``theta*_A`` are kept, with the diagonal of the empirical Fisher
information ``F_i = E_(x, y) in A [ (d log p(y | x, theta) / d theta_i)^2 ]`` at
``theta*_A``: how sharply the log-likelihood of task A's data bends along each weight.
Learning task B then minimises ``L_B(theta) + (lambda / 2) * sum_i F_i (theta_i - theta*_A,i)^2``:
weights that mattered for A are held near their old values, the others are free.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .base import Callback

Progress = Callable[[str, int, int], None] | None


def _per_sample_squared_grads(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> dict:
    """Sum over the batch of each sample's squared gradient of -log p(y | x) (torch.func)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if k in names}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def nll(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out.float(), yi.unsqueeze(0))

    with torch.enable_grad():
        g = vmap(grad(nll), in_dims=(None, 0, 0))(params, x, y)
    return {k: v.pow(2).sum(0) for k, v in g.items()}


def _looped_squared_grads(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> dict:
    """The same, one sample at a time with ordinary autograd (for layers torch.func cannot map)."""
    params = dict(model.named_parameters())
    out = {k: torch.zeros_like(params[k]) for k in names}
    flags = {k: params[k].requires_grad for k in names}
    try:
        for k in names:  # the earlier model may be frozen: gradients are needed here all the same
            params[k].requires_grad_(True)
        with torch.enable_grad():
            for xi, yi in zip(x, y):
                loss = nn.functional.cross_entropy(model(xi.unsqueeze(0)).float(), yi.unsqueeze(0))
                grads = torch.autograd.grad(loss, [params[k] for k in names], allow_unused=True)
                for k, gk in zip(names, grads):
                    if gk is not None:
                        out[k] += gk.pow(2)
    finally:
        for k, f in flags.items():
            params[k].requires_grad_(f)
    return out


def diagonal_fisher(model: nn.Module, batches: Iterable, names: Iterable[str] | None = None,
                    device: torch.device | str = "cpu", max_samples: int | None = None, progress: Progress = None,
                    should_stop: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """The diagonal empirical Fisher of ``model`` (a classifier returning logits) on the
    (images, labels) ``batches``: the mean over samples of the squared per-sample gradient
    of the log-likelihood of the true label, for each parameter in ``names`` (default: every
    parameter).  The model runs in eval mode (BatchNorm statistics as learned).  A parameter
    that does not affect the output gets a Fisher of exactly zero.
    """
    model.eval()
    device = torch.device(device)
    all_params = dict(model.named_parameters())
    names = [k for k in (names if names is not None else all_params) if k in all_params]
    fisher = {k: torch.zeros_like(all_params[k], dtype=torch.float32) for k in names}
    mode: str = "vmap"
    seen = 0
    total = max_samples or (len(batches.dataset) if hasattr(batches, "dataset") else 0)
    for x, y in batches:
        if should_stop:
            should_stop()
        if max_samples is not None and seen >= max_samples:
            break
        if max_samples is not None:
            x, y = x[: max_samples - seen], y[: max_samples - seen]
        x, y = x.to(device), y.to(device).long()
        if mode == "vmap":
            try:
                sq = _per_sample_squared_grads(model, names, x, y)
            except (RuntimeError, NotImplementedError):  # an op torch.func cannot batch: fall back
                mode = "loop"
        if mode == "loop":
            sq = _looped_squared_grads(model, names, x, y)
        for k in names:
            fisher[k] += sq[k].float()
        seen += len(x)
        if progress and total:
            progress("Fisher information of the earlier task", min(seen, total), total)
    if seen == 0:
        raise ValueError("no samples to estimate the Fisher information from")
    return {k: (v / seen).detach() for k, v in fisher.items()}


class EWCPenalty(nn.Module):
    """``(lambda / 2) * sum_i F_i (theta_i - theta*_i)^2`` over the parameters that have a
    Fisher value and an anchor (the earlier task's weights) of the same shape.

    Call it with the model being trained; parameters are looked up by name, so the
    penalty also works when the model is a fresh object holding the same layer names.
    """

    def __init__(self, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], strength: float):
        super().__init__()
        self.strength = float(strength)
        self.names = [k for k in fisher if k in anchor and fisher[k].shape == anchor[k].shape]
        for i, k in enumerate(self.names):
            self.register_buffer(f"fisher_{i}", fisher[k].detach().float().clone())
            self.register_buffer(f"anchor_{i}", anchor[k].detach().float().clone())

    def terms(self):
        for i, k in enumerate(self.names):
            yield k, getattr(self, f"fisher_{i}"), getattr(self, f"anchor_{i}")

    def forward(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = None
        for k, f, a in self.terms():
            p = params.get(k)
            if p is None:
                continue
            t = (f * (p.float() - a).pow(2)).sum()
            total = t if total is None else total + t
        if total is None:
            return torch.zeros((), device=next(model.parameters()).device)
        return 0.5 * self.strength * total

    def fisher_summary(self) -> dict:
        """Size of the Fisher information: total, largest value, share of near-zero entries."""
        vals = torch.cat([f.flatten() for _, f, _ in self.terms()]) if self.names else torch.zeros(1)
        return {"parameters": int(vals.numel()), "sum": float(vals.sum()), "max": float(vals.max()),
                "mean": float(vals.mean()), "near_zero_share": float((vals < vals.max() * 1e-6).float().mean())}


# --- as a callback any technique can list ---------------------------------------------------------
class ElasticWeightConsolidation(Callback):
    """The EWC penalty on a run that starts from an earlier run (``model.from_run``): the
    Fisher information of the weights the two tasks share, from ``fisher_samples`` of the
    earlier task's training images, then ``(λ/2)·Σ F_i (θ_i − θ*_i)²`` added to every step's
    loss.  Charts the new-task loss, the penalty and (``track``) the earlier task's accuracy;
    the report tells the forgetting."""

    series = {"task_loss": "New-task loss", "ewc_penalty": "EWC penalty",
              "earlier_task_accuracy": "Earlier task accuracy (validation)"}

    def __init__(self, strength: float, fisher_samples: int = 500, track: bool = True):
        self.strength, self.fisher_samples, self.track = float(strength), int(fisher_samples), bool(track)
        self.penalty: EWCPenalty | None = None
        self._sums: dict[str, float] = {}
        self._n = 0

    def setup(self, ctx) -> None:
        task = ctx.source_task
        if task is None:
            from ..errors import StudioError

            raise StudioError("EWC continues from an earlier run: choose 'Start from run' on the Model page "
                              "(or give --from-run RUN on the command line).")
        if self.strength <= 0:  # plain fine-tuning from the earlier run: nothing to estimate
            ctx.log("EWC strength 0: plain fine-tuning from the earlier run (no penalty).")
            return
        # the weights the two tasks share: the backbone, and the head when the classes are the same
        shared = [k for k, p in ctx.model.named_parameters()
                  if p.requires_grad and (k.startswith("backbone.") or task.shared_head)]
        loader = task.loader("train", self.fisher_samples, batch_size=32, seed=ctx.training.seed)
        fisher = diagonal_fisher(task.model, loader, shared, ctx.device, self.fisher_samples, progress=ctx.progress,
                                 should_stop=ctx.control.check)
        anchor = {k: p for k, p in task.model.named_parameters() if k in fisher}
        self.penalty = EWCPenalty(fisher, anchor, self.strength).to(ctx.device)
        s = self.penalty.fisher_summary()
        ctx.log(f"EWC: Fisher information of {s['parameters']:,} weights from "
                f"{min(self.fisher_samples, len(loader.dataset))} earlier-task images (mean {s['mean']:.3g}, "
                f"max {s['max']:.3g}); λ = {self.strength:g}.")

    def on_epoch_start(self, ctx, epoch: int) -> None:
        self._sums, self._n = {}, 0

    def after_loss(self, ctx, out: dict) -> None:
        loss = out["loss"]
        penalty = self.penalty(unwrap(ctx.model)) if self.penalty is not None else loss.new_zeros(())
        out.update(task_loss=loss.detach(), ewc_penalty=penalty.detach(), loss=loss + penalty)
        for k in ("task_loss", "ewc_penalty"):
            self._sums[k] = self._sums.get(k, 0.0) + float(out[k])
        self._n += 1

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        series = {k: v / max(1, self._n) for k, v in self._sums.items()}
        task = ctx.source_task
        if self.track and task is not None:
            split = "val" if task.data.has_split("val") else task.split
            series["earlier_task_accuracy"] = task.evaluate(ctx, split, model=ctx.model)["accuracy"]
        return series

    def report(self, ctx, final: dict) -> str | None:
        s = final.get("source_task")
        if not s:
            return None
        new_acc = final.get("test_accuracy")
        lines = ["## The earlier task", "",
                 f"Started from run `{s['run_id']}`; its {s['split']} set ({s['n']} images) was kept with this run.", "",
                 f"- Accuracy on the earlier task before learning the new one: {s['before']['accuracy']:.3f}",
                 f"- After: {s['after']['accuracy']:.3f} — forgetting {s['forgetting_points']:.1f} points "
                 f"(EWC λ = {self.strength:g})"]
        if new_acc is not None:
            lines.append(f"- New task test accuracy: {new_acc:.3f}")
        return "\n".join(lines)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
