"""Fine-tuning: the pretrained network keeps learning on your images, the top layers
faster than the bottom ones."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from tlstudio.core import ImageClassificationTechnique, TechniqueConfig, hookimpl
from tlstudio.core.blocks import discriminative_param_groups, freeze_all_but_top


class FineTuneConfig(TechniqueConfig):
    trainable_groups: int = Field(
        -1, ge=-1, le=64, title="Layer groups to train",
        description="How many layer groups, counted from the top, learn (the new head counts as one). -1 = all of them.")
    lr_decay: float = Field(
        0.5, gt=0.0, le=1.0, title="Learning-rate decay per group",
        description="Each group learns at this times the rate of the group above it: the general early layers change least.")
    head: Literal["linear", "bn_dropout"] = Field(
        "linear", title="Head", description="linear: one new layer; bn_dropout: BatchNorm + dropout + a hidden layer.")
    dropout: float = Field(0.2, ge=0.0, le=0.9, title="Dropout", description="Dropout before the new layer(s).")
    hidden: int = Field(256, ge=8, le=4096, title="Hidden units", description="Width of the hidden layer of the bn_dropout head.")


class FineTuning(ImageClassificationTechnique):
    id = "fine-tuning"
    title = "Fine-tuning"
    explanation = (
        "The pretrained network keeps learning on your images. A new head is trained for your classes while the "
        "pretrained layers adapt too, each at a smaller learning rate the deeper it lies, so that the general "
        "features learned from millions of photos are adjusted rather than destroyed. It usually gives the best "
        "accuracy from a few hundred images upwards; freeze the lower groups when you have very few images."
    )
    Config = FineTuneConfig

    def recommended_training(self) -> dict:
        return {"epochs": 8, "lr": 1e-3, "batch_size": 32, "schedule": "cosine", "warmup_epochs": 0.5,
                "weight_decay": 1e-4, "optimizer": "adamw"}

    def build(self, ctx):
        c = ctx.config
        model = ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)
        freeze_all_but_top(model, c.trainable_groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.lr_decay)


@hookimpl
def tlstudio_techniques():
    return [FineTuning()]
