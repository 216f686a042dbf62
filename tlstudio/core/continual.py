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
