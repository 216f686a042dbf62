"""Fine-tuning for multi-label images: the pretrained network with a new head of one logit
per label (a sigmoid each, trained with the task's binary cross-entropy), L2-SP keeping the
pretrained layers near their starting point."""
from __future__ import annotations

from tlstudio.api import (L2SP, HeadSettings, LayerSettings, Technique, discriminative_param_groups,
                          freeze_all_but_top)


class MultiLabelConfig(HeadSettings, LayerSettings):
    l2sp: float = 0.01


class MultiLabelFineTuning(Technique):
    id = "multilabel-fine-tuning"
    title = "Multi-label fine-tuning"
    task = "multi-label-classification"
    explanation = (
        "The pretrained network keeps learning on your images, with a new head that answers yes or no for each of "
        "your labels separately, so one image can carry several findings. Each label gets its own threshold, "
        "chosen on the validation images, and its own sensitivity, specificity and AUC.")
    Config = MultiLabelConfig

    def recommended_training(self) -> dict:
        return {"epochs": 8, "lr": 1e-3, "batch_size": 32, "schedule": "cosine", "monitor": "val_auc"}

    def callbacks(self, c):
        return [L2SP(c.l2sp)]

    def build(self, ctx):
        c = ctx.config
        model = ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)  # one output per label
        freeze_all_but_top(model, c.trainable_groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.lr_decay)
