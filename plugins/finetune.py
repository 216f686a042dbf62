"""Fine-tuning: the pretrained network keeps learning on your images, the top layers
faster than the bottom ones, held near what it learned by L2-SP."""
from __future__ import annotations

from tlstudio.api import (L2SP, HeadSettings, LayerSettings, Mixup, RegularisationSettings, Technique, WeightAveraging,
                          discriminative_param_groups, freeze_all_but_top, hookimpl)

#: the training settings the fine-tuning techniques propose (measured: docs/results.md)
RECOMMENDED_TRAINING = {"epochs": 10, "lr": 1e-3, "batch_size": 32, "optimizer": "adamw", "weight_decay": 1e-4,
                        "schedule": "cosine", "warmup_epochs": 0.5, "monitor": "last", "class_balance": "weighted_loss"}


class FineTuneConfig(HeadSettings, LayerSettings, RegularisationSettings):
    """Defaults = the best plain recipe measured on BreastMNIST (docs/results.md)."""


def recipe_callbacks(c) -> list:
    """The regularisers of the plain recipe: L2-SP, mixup, weight averaging (each off at 0)."""
    return [L2SP(c.l2sp), Mixup(c.mixup), WeightAveraging(c.average_last)]


class FineTuning(Technique):
    id = "fine-tuning"
    title = "Fine-tuning"
    explanation = (
        "The pretrained network keeps learning on your images. A new head is trained for your classes while the "
        "pretrained layers adapt too, held near what they learned from millions of photos by L2-SP (and, if you "
        "lower the decay per group, at smaller learning rates the deeper they lie), so that the general features "
        "are adjusted rather than destroyed. It usually gives the best accuracy from a few hundred images upwards; "
        "freeze the lower groups when you have very few images."
    )
    Config = FineTuneConfig

    def recommended_training(self) -> dict:
        return dict(RECOMMENDED_TRAINING)

    def callbacks(self, c):
        return recipe_callbacks(c)

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
