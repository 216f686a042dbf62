"""Frozen feature extraction: the pretrained network is a fixed feature extractor and
only a new classifier head learns."""
from __future__ import annotations

from pydantic import Field

from tlstudio.api import FeatureCache, HeadSettings, Technique, hookimpl, keep_in_eval, set_trainable


class FrozenConfig(HeadSettings):
    cache_features: bool = Field(
        True, title="Cache features", description="Run the frozen network once per image and train the head on stored features (much faster). Off: run it every epoch.")
    augmented_views: int = Field(
        0, ge=0, le=20, title="Augmented views", description="Also cache this many augmented versions of each training image, one used per epoch (0 = no augmentation).")


class FrozenFeatures(Technique):
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

    def callbacks(self, c):
        return [FeatureCache(views=c.augmented_views)] if c.cache_features else []

    def build(self, ctx):
        c = ctx.config
        model = ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)
        set_trainable(model.groups[:-1], False)
        keep_in_eval(model.backbone)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return [{"params": list(ctx.model.head.parameters()), "lr": ctx.training.lr, "name": "head"}]


@hookimpl
def tlstudio_techniques():
    return [FrozenFeatures()]
