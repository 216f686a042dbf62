"""Domain-adversarial building blocks: gradient reversal, its weight schedule, the domain
discriminator and its loss (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
Backpropagation", ICML 2015; Ganin et al., JMLR 2016).

The feature extractor ``G_f`` feeds both the label classifier ``G_y`` and, through a
gradient reversal layer, a domain discriminator ``G_d``.  The reversal layer is the
identity going forward and multiplies the gradient by ``-lambda`` going back, so one
backward pass of ``L_y + L_d`` trains ``G_d`` to tell the domains apart while pushing
``G_f`` towards features that it cannot tell apart (the saddle point of
``L_y - lambda * L_d``).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

LambdaSchedule = Literal["ganin", "fixed"]


def grl_lambda(progress: float, schedule: LambdaSchedule = "ganin", value: float = 1.0, gamma: float = 10.0) -> float:
    """The reversal weight at training progress ``progress`` in [0, 1].

    ``"ganin"``: ``value * (2 / (1 + exp(-gamma * p)) - 1)``, rising from 0 to ``value``
    (gamma = 10 as in the paper), so that the noisy discriminator of the first steps does
    not disturb the features; ``"fixed"``: ``value`` throughout.
    """
    if schedule == "fixed":
        return float(value)
    if schedule != "ganin":
        raise ValueError(f"unknown reversal schedule {schedule!r} (known: ganin, fixed)")
    p = min(1.0, max(0.0, float(progress)))
    return float(value) * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.neg() * ctx.lambda_, None


def gradient_reversal(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-lambda_``."""
    return _GradientReversal.apply(x, lambda_)


class GradientReversal(nn.Module):
    """The gradient reversal layer; set ``lambda_`` (for example from :func:`grl_lambda`)
    before each step."""

    def __init__(self, lambda_: float = 1.0):
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gradient_reversal(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:.4g}"


class DomainDiscriminator(nn.Module):
    """``G_d``: pooled features (N, feature_dim) -> one logit per image, "is it from the
    target domain?".  Two hidden layers with ReLU, as in the paper's larger experiments."""

    def __init__(self, feature_dim: int, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = feature_dim
        for _ in range(2):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)


def domain_adversarial_loss(discriminator: nn.Module, reversal: GradientReversal, source_features: torch.Tensor,
                            target_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(binary cross-entropy of the discriminator on both domains, its accuracy).

    Source images are domain 0, target images domain 1; the features pass through the
    reversal layer first, so the same loss trains the discriminator and confuses the
    feature extractor.  The accuracy drifts towards 0.5 as the features align.
    """
    f = torch.cat([source_features, target_features]).float()
    domains = torch.cat([f.new_zeros(len(source_features)), f.new_ones(len(target_features))])
    logits = discriminator(reversal(f)).float()
    loss = nn.functional.binary_cross_entropy_with_logits(logits, domains)
    accuracy = ((logits.detach() > 0).float() == domains).float().mean()
    return loss, accuracy
