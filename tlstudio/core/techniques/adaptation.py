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

from .base import Callback

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


# --- as a callback any technique can list ---------------------------------------------------------
class DomainAdversarial(Callback):
    """Gradient reversal with its domain discriminator (DANN): each training batch carries
    target images beside the source batch; their features go through the reversal layer to
    the discriminator, whose loss joins the class loss.  Needs the target domain
    (:class:`tlstudio.core.techniques.target.TargetDomain`, listed before it)."""

    series = {"class_loss": "Class loss", "domain_loss": "Domain loss",
              "discriminator_accuracy": "Domain discriminator accuracy", "grl_lambda": "Reversal weight λ"}

    def __init__(self, schedule: LambdaSchedule = "ganin", lambda_max: float = 1.0, hidden: int = 256,
                 lr_factor: float = 1.0, blend_target: float = 0.0):
        self.schedule, self.lambda_max, self.hidden, self.lr_factor = schedule, float(lambda_max), int(hidden), float(lr_factor)
        # the mixup α of the recipe: target images are blended too, so that blending is no clue to the domain
        self.blend_target = float(blend_target)
        self.discriminator: DomainDiscriminator | None = None
        self.reversal = GradientReversal(0.0)
        self._target: torch.Tensor | None = None
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sums: dict[str, float] = {}
        self._n = 0

    def on_build(self, ctx, model) -> None:
        self.discriminator = DomainDiscriminator(model.feature_dim, self.hidden).to(ctx.device)

    def adjust_param_groups(self, ctx, groups: list[dict]) -> list[dict]:
        return [*groups, {"params": list(self.discriminator.parameters()), "name": "discriminator",
                          "lr": ctx.training.lr * self.lr_factor}]

    def on_epoch_start(self, ctx, epoch: int) -> None:
        self._sums, self._n = {}, 0
        self.discriminator.train()

    def train_batches(self, ctx, epoch: int):
        return WithTarget(ctx, ctx.task.train_batches(ctx, epoch), epoch)

    def before_batch(self, ctx, batch):
        if isinstance(batch, (list, tuple)) and len(batch) == 3:  # (source images, labels, target images)
            self._target = blend(batch[2], self.blend_target) if self.blend_target > 0 else batch[2]
            return batch[0], batch[1]
        return batch

    def forward(self, ctx, x):
        if self._target is None:
            return None
        xt, self._target = self._target, None
        features = ctx.model.backbone(torch.cat([x, xt]))
        fs, ft = features[: len(x)], features[len(x):]
        self._features = fs, ft
        return ctx.model.head(fs)

    def after_loss(self, ctx, out: dict) -> None:
        if self._features is None:
            return
        fs, ft = self._features
        self._features = None
        self.reversal.lambda_ = grl_lambda(ctx.train.progress, self.schedule, self.lambda_max)
        domain_loss, accuracy = domain_adversarial_loss(self.discriminator, self.reversal, fs, ft)
        out.setdefault("class_loss", out["loss"].detach())
        out["loss"] = out["loss"] + domain_loss
        out.update(domain_loss=domain_loss.detach(), discriminator_accuracy=accuracy, grl_lambda=self.reversal.lambda_)
        for k in ("class_loss", "domain_loss", "discriminator_accuracy", "grl_lambda"):
            v = out[k]
            self._sums[k] = self._sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
        self._n += 1

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {k: v / max(1, self._n) for k, v in self._sums.items()}

    def state_dict(self) -> dict:
        return {"discriminator": self.discriminator.state_dict()} if self.discriminator is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("discriminator") and self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])


def blend(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mixup of images without labels: each image blended with another of the batch, one
    Beta(α, α) weight per batch (as torchvision's MixUp does for the labelled ones)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return x.roll(1, 0).mul_(1.0 - lam).add_(x, alpha=lam)


class WithTarget:
    """One epoch of (source images, source labels, target images) batches: the source
    loader sets the length; the target loader (shuffled, seeded per epoch) cycles."""

    def __init__(self, ctx, source, epoch: int):
        self.ctx, self.source, self.epoch = ctx, source, epoch
        data = ctx.data
        self.dataset = data.target.dataset("adapt", train=True, source=data)

    def __len__(self) -> int:
        return len(self.source)

    def _target_loader(self, k: int):
        return self.ctx.loader("train", train=True, epoch=self.epoch * 1000 + k, dataset=self.dataset, shuffle=True)

    def __iter__(self):
        k = 0
        it = iter(self._target_loader(k))
        for xs, ys in self.source:
            try:
                xt, _ = next(it)
            except StopIteration:
                k += 1
                it = iter(self._target_loader(k))
                xt, _ = next(it)
            yield xs, ys, xt
