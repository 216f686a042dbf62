"""Mixup fine-tuning — an example technique plugin for Transfer Learning Studio.

Mixup (Zhang et al., 2018) trains on convex combinations of pairs of images and of their
labels. It is a strong regulariser when there are few images per class.
"""
from __future__ import annotations

import torch
from pydantic import Field

from tlstudio.api import Technique, TechniqueConfig, discriminative_param_groups, freeze_all_but_top, hookimpl


class MixupConfig(TechniqueConfig):
    # Every field becomes a control on the Technique page: title = label, description = tooltip,
    # ge/le = the spin box's bounds.
    alpha: float = Field(0.4, gt=0.0, le=2.0, title="Mixup strength (alpha)",
                         description="Images are mixed with a weight drawn from Beta(alpha, alpha); larger mixes more.")
    trainable_groups: int = Field(-1, ge=-1, le=64, title="Layer groups to train",
                                  description="Counted from the top (the new head is one); -1 = all.")
    lr_decay: float = Field(0.5, gt=0.0, le=1.0, title="Learning-rate decay per group")


class MixupFineTuning(Technique):
    id = "mixup"
    title = "Mixup fine-tuning"
    task = "image-classification"
    explanation = (
        "Fine-tuning in which every training image is blended with another one, and the answer the network must "
        "give is blended in the same proportion. The network cannot memorise single images, so it generalises "
        "better from few examples. Training loss looks higher than usual; judge it by the validation metrics."
    )
    Config = MixupConfig
    series = {"mix_weight": "Mean mixing weight"}  # an extra curve on the Train page

    def build(self, ctx):
        model = ctx.build_classifier(dropout=0.2)          # pretrained backbone + new head
        freeze_all_but_top(model, ctx.config.trainable_groups)
        return model

    def param_groups(self, ctx):
        return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.lr_decay)

    def on_epoch_start(self, ctx, epoch):
        self.weights = []

    def training_step(self, ctx, batch):
        x, y = batch
        lam = float(torch.distributions.Beta(ctx.config.alpha, ctx.config.alpha).sample())
        perm = torch.randperm(x.shape[0], device=x.device)
        logits = ctx.model(lam * x + (1 - lam) * x[perm])
        loss = lam * ctx.criterion(logits, y) + (1 - lam) * ctx.criterion(logits, y[perm])
        self.weights.append(max(lam, 1 - lam))
        return {"loss": loss}

    def on_epoch_end(self, ctx, epoch, metrics):
        return {"mix_weight": sum(self.weights) / max(1, len(self.weights))}


@hookimpl
def tlstudio_techniques():
    return [MixupFineTuning()]
