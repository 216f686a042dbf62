"""Frozen feature extraction: the pretrained network is a fixed feature extractor and
only a new classifier head learns."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from tlstudio.core import ImageClassificationTechnique, TechniqueConfig, hookimpl
from tlstudio.core.blocks import set_trainable
from tlstudio.core.features import cached_features


class FrozenConfig(TechniqueConfig):
    head: Literal["linear", "bn_dropout"] = Field(
        "linear", title="Head", description="linear: one new layer; bn_dropout: BatchNorm + dropout + a hidden layer (more capacity, more regularisation).")
    dropout: float = Field(0.0, ge=0.0, le=0.9, title="Dropout", description="Dropout before the new layer(s).")
    hidden: int = Field(256, ge=8, le=4096, title="Hidden units", description="Width of the hidden layer of the bn_dropout head.",
                        json_schema_extra={"shown_when": {"head": ["bn_dropout"]}})
    cache_features: bool = Field(
        True, title="Cache features", description="Run the frozen network once per image and train the head on stored features (much faster). Off: run it every epoch.")
    augmented_views: int = Field(
        0, ge=0, le=20, title="Augmented views", description="Also cache this many augmented versions of each training image, one used per epoch (0 = no augmentation).")


class FrozenFeatures(ImageClassificationTechnique):
    id = "frozen-features"
    title = "Frozen feature extraction"
    explanation = (
        "The pretrained network is used as it is, as a fixed feature extractor: each image passes through it once "
        "and only a small new classifier on top learns your classes. It is the fastest technique and the safest "
        "with very few images (tens per class), because almost nothing can overfit; it is weaker when your images "
        "look very different from everyday photos, where fine-tuning usually does better."
    )
    Config = FrozenConfig

    def recommended_training(self) -> dict:
        return {"epochs": 30, "lr": 3e-3, "batch_size": 64, "schedule": "cosine", "weight_decay": 1e-4}

    def build(self, ctx):
        c = ctx.config
        model = ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)
        set_trainable(model.groups[:-1], False)
        model.backbone._tl_frozen = True  # stays in eval mode (BatchNorm statistics, dropout)
        if c.cache_features:  # evaluated on the cached features of the plain images: predictions must agree
            model.flip_average = False
        return model

    def param_groups(self, ctx) -> list[dict]:
        return [{"params": list(ctx.model.head.parameters()), "lr": ctx.training.lr, "name": "head"}]

    def on_fit_start(self, ctx) -> None:
        if not ctx.config.cache_features:
            return
        backbone = ctx.model.backbone
        self.features = {s: cached_features(ctx, backbone, s) for s in ("train", "val", "test") if ctx.data.has_split(s)}
        self.views = [cached_features(ctx, backbone, "train", v) for v in range(1, ctx.config.augmented_views + 1)]

    def _feature_loader(self, ctx, feats, train: bool, epoch: int = 0):
        return ctx.loader("train", train=train, epoch=epoch, dataset=torch.utils.data.TensorDataset(*feats))

    def train_batches(self, ctx, epoch: int):
        if not ctx.config.cache_features:
            return super().train_batches(ctx, epoch)
        views = [self.features["train"], *self.views]
        return self._feature_loader(ctx, views[epoch % len(views)], train=True, epoch=epoch)

    def training_step(self, ctx, batch) -> dict:
        if not ctx.config.cache_features:
            return super().training_step(ctx, batch)
        f, y = batch
        return {"loss": ctx.criterion(ctx.model.head(f), y)}

    def eval_batches(self, ctx, split: str):
        if not ctx.config.cache_features:
            return super().eval_batches(ctx, split)
        return self._feature_loader(ctx, self.features[split], train=False)

    def predict_step(self, ctx, batch) -> tuple:
        if not ctx.config.cache_features:
            return super().predict_step(ctx, batch)
        f, y = batch
        return ctx.model.head(f), y


@hookimpl
def tlstudio_techniques():
    return [FrozenFeatures()]
