"""What every fine-tuning technique shares: the new head, per-group learning rates and
the regularisers that keep the network near its pretrained point.

``FineTuningSettings`` holds the settings (the config panels of the fine-tuning and
progressive-unfreezing techniques extend it); ``FineTuningBase`` builds the model with
the chosen head, takes the L2-SP snapshot of the pretrained weights, makes discriminative
parameter groups (weight decay off where L2-SP replaces it) and adds the penalty to the
loss (charted as ``l2sp``).

**The recommended plain recipe** is :data:`PLAIN_TECHNIQUE` (``fine-tuning``) with its
Config defaults (:class:`PlainRecipeSettings`) and :data:`RECOMMENDED_TRAINING`: the
strongest recipe without a technique's own idea, and so the "without it" arm of every
comparison (``tlstudio.core.compare``).  DANN and EWC extend it: their source-only and
plain-continuation arms (``adversarial = false``, ``strength = 0``) are this recipe.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .blocks import discriminative_param_groups
from .classification import ImageClassificationTechnique
from .regularizers import L2SP, without_weight_decay
from .technique import TechniqueConfig


#: the training settings the fine-tuning techniques propose (measured: docs/results.md)
RECOMMENDED_TRAINING = {"epochs": 10, "lr": 1e-3, "batch_size": 32, "optimizer": "adamw", "weight_decay": 1e-4,
                        "schedule": "cosine", "warmup_epochs": 0.5, "monitor": "last", "class_balance": "weighted_loss"}
#: the technique of the recommended plain recipe (with its Config defaults and RECOMMENDED_TRAINING)
PLAIN_TECHNIQUE = "fine-tuning"


class FineTuningSettings(TechniqueConfig):
    """Defaults = the best recipe measured on BreastMNIST (docs/results.md): every group at
    the same rate, L2-SP 0.01, mixup 0.2 (weight averaging off: it measured no better); with
    RECOMMENDED_TRAINING's class-weighted loss and the project's test-time flip."""

    lr_decay: float = Field(
        1.0, gt=0.0, le=1.0, title="Learning-rate decay per group",
        description="Each group learns at this times the rate of the group above it: the general early layers change least.")
    head: Literal["linear", "bn_dropout"] = Field(
        "linear", title="Head",
        description="linear: one new layer; bn_dropout: BatchNorm + dropout + a hidden layer (the article's regularised head).")
    dropout: float = Field(0.2, ge=0.0, le=0.9, title="Dropout",
                           description="Dropout before the new layer(s): randomly silences this share of the features "
                                       "while training, so that the head cannot rely on any single one (0 = off).")
    hidden: int = Field(256, ge=8, le=4096, title="Hidden units", description="Width of the hidden layer of the bn_dropout head.",
                        json_schema_extra={"shown_when": {"head": ["bn_dropout"]}})
    l2sp: float = Field(
        0.01, ge=0.0, le=10.0, title="L2-SP strength (λ)",
        description="Pull the pretrained layers back toward what they learned from everyday photos, so that a small "
                    "data set cannot drag them far (0 = off; 0.01 recommended). λ·‖θ − θ_pretrained‖² is added to the "
                    "loss, and replaces weight decay on those layers.")

    mixup: float = Field(
        0.2, ge=0.0, le=2.0, title="Mixup (α)",
        description="Train on blends of two images and of their labels (mixup, torchvision's MixUp): a regulariser for "
                    "small data sets. 0 = off; 0.2 is a usual value.")

    average_last: int = Field(
        0, ge=0, le=50, title="Average the last epochs",
        description="The final model is the average of the weights at the end of the last N epochs (stochastic weight "
                    "averaging): steadier than any single epoch on small data. 0 = off. Pair it with the best-model "
                    "metric 'last'.")


class PlainRecipeSettings(FineTuningSettings):
    """The settings of the plain recipe (``fine-tuning``): the shared ones and how deep it trains.
    Techniques built on the plain recipe (DANN, EWC) extend this, so that their arm without
    their own idea is the plain recipe, setting for setting."""

    trainable_groups: int = Field(
        -1, ge=-1, le=64, title="Layer groups to train",
        description="How many layer groups, counted from the top, learn (the new head counts as one); all = the whole "
                    "network.", json_schema_extra={"labels": {-1: "all"}})


class FineTuningBase(ImageClassificationTechnique):
    """Base of the fine-tuning techniques (see the module docstring)."""

    Config = FineTuningSettings
    series = {"l2sp": "L2-SP distance to the pretrained weights (λ·‖θ − θ₀‖²)"}

    def __init__(self) -> None:
        self.l2sp: L2SP | None = None
        self.avg: dict | None = None  # running mean of the weights over the last epochs
        self.avg_n = 0

    def recommended_training(self) -> dict:
        return dict(RECOMMENDED_TRAINING)

    def build_model(self, ctx):
        """The classifier with the configured head; the L2-SP snapshot is taken here, right
        after the pretrained weights were loaded (a resumed run rebuilds it the same way)."""
        c = ctx.config
        model = ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)
        self.l2sp = L2SP(model.backbone, c.l2sp) if c.l2sp > 0 else None
        return model

    def group_lrs(self, ctx, head_lr: float) -> list[dict]:
        groups = discriminative_param_groups(ctx.model, head_lr, ctx.config.lr_decay)
        return without_weight_decay(groups) if self.l2sp is not None else groups

    def training_step(self, ctx, batch) -> dict:
        if ctx.config.mixup > 0:
            batch = self._mix(ctx, batch)
        out = super().training_step(ctx, batch)
        if self.l2sp is not None:
            pen = self.l2sp.penalty()
            out["loss"] = out["loss"] + pen
            out["l2sp"] = pen.detach()
        return out

    def _mix(self, ctx, batch):
        from torchvision.transforms import v2

        x, y = batch
        if getattr(self, "_mixup", None) is None:
            self._mixup = v2.MixUp(alpha=ctx.config.mixup, num_classes=ctx.num_classes)
        return self._mixup(x, y)  # y becomes soft labels (N, classes); cross-entropy takes them as they are

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        out = {"l2sp": float(self.l2sp.penalty().detach())} if self.l2sp is not None else {}
        n, epochs = ctx.config.average_last, ctx.training.epochs
        if n > 1 and epoch >= epochs - n:
            self._accumulate(ctx.model.state_dict())
            if epoch == epochs - 1 and self.avg_n > 1:
                self._load_average(ctx, metrics)
        return out

    def on_fit_start(self, ctx) -> None:
        if ctx.config.average_last > 1 and ctx.training.monitor != "last":
            ctx.log(f"Weights of the last {ctx.config.average_last} epochs are averaged into the final model, but the "
                    f"best-model metric is '{ctx.training.monitor}': an earlier epoch may be kept instead. Choose "
                    "'last' to keep the average.", "warning")

    def _accumulate(self, sd: dict) -> None:
        if self.avg is None:
            self.avg = {k: v.detach().float().clone() for k, v in sd.items() if v.is_floating_point()}
            self.avg_n = 1
            return
        self.avg_n += 1
        for k, a in self.avg.items():
            a += (sd[k].detach().float() - a) / self.avg_n

    def _load_average(self, ctx, metrics: dict) -> None:
        sd = ctx.model.state_dict()
        ctx.model.load_state_dict({**sd, **{k: v.to(sd[k].dtype) for k, v in self.avg.items()}})
        msg = f"Final weights: the average of the last {self.avg_n} epochs"
        if ctx.data.has_split("val"):
            after = self.evaluate(ctx, "val")
            name = "auc" if after.get("auc") is not None else "accuracy"
            msg += f" (validation {name} {after.get(name, 0):.3f}; the last epoch alone {metrics.get(name) or 0:.3f})"
        ctx.log(msg + ".")

    def state_dict(self) -> dict:
        return {"avg": self.avg, "avg_n": self.avg_n} if self.avg is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.avg = state.get("avg")
        self.avg_n = int(state.get("avg_n", 0))
