"""Regularisers that keep a fine-tuned network close to what it learned on ImageNet.

- :class:`L2SP` — L2-SP (Li, Grandvalet & Davoine 2018), the article's first equation:
  ``λ · ‖θ − θ_pretrained‖²`` over the pretrained layers, with the pretrained point
  snapshot when the model is built.  Where weight decay pulls every weight toward zero (and
  so away from what ImageNet taught), L2-SP pulls toward the starting point instead: use
  it *instead of* weight decay on the pretrained layers (:func:`without_weight_decay`).
- AdamW weight decay: ``training.weight_decay`` (``blocks.make_optimizer``).
- Dropout + BatchNorm head (the article's RegularizedTransferModel): ``head="bn_dropout"``
  of ``ctx.build_classifier`` / ``models.make_head``.
- Label smoothing: ``training.label_smoothing`` (``ctx.criterion``).
- Class-weighted loss or a balanced sampler: ``training.class_balance`` (``ctx.criterion``,
  ``ctx.loader``).
"""
from __future__ import annotations

import torch
from torch import nn


class L2SP:
    """``λ · Σ ‖θ − θ₀‖²`` over the parameters of ``module`` (the pretrained backbone),
    ``θ₀`` being their values when this object is made (right after the pretrained weights
    are loaded).  Only parameters that train contribute (a frozen one never moves)."""

    def __init__(self, module: nn.Module, strength: float):
        self.strength = float(strength)
        self.module = module
        self.anchor = {n: p.detach().clone() for n, p in module.named_parameters()}

    def distance(self) -> torch.Tensor:
        """``Σ ‖θ − θ₀‖²`` (without λ)."""
        total = None
        for n, p in self.module.named_parameters():
            if not p.requires_grad:
                continue
            a = self.anchor[n]
            if a.device != p.device:
                a = self.anchor[n] = a.to(p.device)
            d = (p.float() - a.float()).pow(2).sum()
            total = d if total is None else total + d
        if total is None:
            return torch.zeros((), device=next(iter(self.anchor.values())).device if self.anchor else "cpu")
        return total

    def penalty(self) -> torch.Tensor:
        """``λ · Σ ‖θ − θ₀‖²``: add it to the loss."""
        return self.strength * self.distance()

    __call__ = penalty


def without_weight_decay(groups: list[dict], names: set[str] | None = None, keep: str = "head") -> list[dict]:
    """Switch weight decay off in the optimizer groups of the pretrained layers (every
    group but ``keep``, or only those in ``names``): L2-SP replaces it there."""
    out = []
    for g in groups:
        name = g.get("name", "")
        hit = (name in names) if names is not None else (name != keep)
        out.append(dict(g, weight_decay=0.0) if hit else g)
    return out
