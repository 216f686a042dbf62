"""BERT text classification: fine-tune any local Hugging Face model (BERT, DistilBERT,
RoBERTa, clinical BERTs, the bundled MiniLM) on the expert's own labelled texts.

The recipe: the model folder's tokenizer and ``AutoModelForSequenceClassification`` with a
new head; optionally the embeddings and the lowest encoder layers stay frozen; each layer
learns at ``layer_lr_decay`` times the rate of the layer above (layer-wise learning-rate
decay); progressive unfreezing opens the encoder from the top, a few layers per stage; the
learning rate warms up, then decays linearly (training settings ``warmup_epochs`` and
``schedule = "linear"``).
"""
from __future__ import annotations

from pydantic import Field

from tlstudio.api import (StageSchedule, Technique, TechniqueConfig, build_text_classifier, discriminative_param_groups,
                          hookimpl, layers_per_stage)


class TextClassifierConfig(TechniqueConfig):
    max_length: int = Field(
        128, ge=8, le=4096, title="Maximum length (tokens)",
        description="Texts longer than this many tokens are cut (the run reports how many). Longer is slower; most "
                    "sentences need fewer than 64 tokens, clinical notes several hundred.")
    freeze_embeddings: bool = Field(
        False, title="Freeze embeddings",
        description="Keep the word embeddings as pretrained: saves memory and guards a small data set against "
                    "overfitting rare words.")
    frozen_layers: int = Field(
        0, ge=0, le=96, title="Frozen lower layers",
        description="The first N encoder layers keep their pretrained weights (0 = every layer learns).")
    layer_lr_decay: float = Field(
        0.9, gt=0.0, le=1.0, title="Layer-wise learning-rate decay",
        description="Each layer learns at this times the rate of the layer above it; the head learns at the full "
                    "learning rate. 1 = the same rate everywhere.")
    progressive_unfreezing: bool = Field(
        False, title="Progressive unfreezing",
        description="Start with the head alone, then open the encoder from the top, a few layers per stage.")
    layers_per_stage: int = Field(
        2, ge=1, le=96, title="Layers per stage", description="Progressive unfreezing: layers opened at each stage.")
    epochs_per_stage: int = Field(
        1, ge=1, le=100, title="Epochs per stage", description="Progressive unfreezing: epochs before the next stage.")


class TextClassifier(Technique):
    id = "bert-text-classification"
    title = "Text classification (BERT)"
    task = "text-classification"
    explanation = (
        "A language model pretrained on millions of sentences (BERT, or a smaller relative such as MiniLM, or a "
        "domain model such as a clinical BERT you have on this computer) reads each of your texts and learns to "
        "sort them into your classes. The pretrained layers keep learning, the lowest ones slowest, so that what "
        "the model knows about language is adjusted rather than overwritten. A few hundred labelled texts per class "
        "usually suffice. Freeze the lower layers or unfreeze progressively when you have very few texts."
    )
    Config = TextClassifierConfig

    def recommended_training(self) -> dict:
        return {"epochs": 4, "lr": 1e-4, "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.01,
                "schedule": "linear", "warmup_epochs": 0.3, "grad_clip": 1.0}

    # --- model and what trains ---------------------------------------------------------------
    def build(self, ctx):
        return build_text_classifier(ctx)

    def _eligible(self, ctx) -> list:
        """Groups that may ever train, bottom to top (the head excluded)."""
        c = ctx.config
        groups = ctx.model.groups
        emb = [g for g in groups[:1] if g.name == "embeddings"]
        layers = [g for g in groups[:-1] if g.name != "embeddings"]
        if c.frozen_layers > len(layers) and not getattr(self, "_warned", False):
            self._warned = True
            ctx.log(f"Frozen lower layers = {c.frozen_layers}, but the model has {len(layers)}: every encoder layer "
                    "stays frozen.", "warning")
        return ([] if c.freeze_embeddings else emb) + layers[c.frozen_layers:]

    def callbacks(self, c):
        plan = layers_per_stage(self._eligible, c.layers_per_stage, c.epochs_per_stage, c.progressive_unfreezing)
        return [StageSchedule(plan, describe=_describe)]

    def param_groups(self, ctx) -> list[dict]:
        return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.layer_lr_decay)

def _describe(ctx, stage) -> str:
    names = [g.name for g in stage.groups]
    frozen = [g.name for g in ctx.model.groups if g.name not in names]
    what = "the head" + (f" and {_span(names[:-1])}" if len(names) > 1 else " only")
    return (f"Stage {stage.index + 1} of {stage.count}: training {what}" if stage.count > 1 else f"Training {what}") + \
        (f"; frozen: {_span(frozen)}" if frozen else "") + "."


def _span(names: list[str]) -> str:
    """'layer 3', 'layer 4', 'layer 5' -> 'layers 3-5' (embeddings and head named as they are)."""
    nums = [int(n.split()[1]) for n in names if n.startswith("layer ")]
    others = [n for n in names if not n.startswith("layer ")]
    parts = [n for n in others if n == "embeddings"]
    if nums:
        lo, hi = min(nums), max(nums)
        parts.append(f"layer {lo}" if lo == hi else f"layers {lo}-{hi}")
    parts += [n for n in others if n != "embeddings"]
    return ", ".join(parts)


@hookimpl
def tlstudio_techniques():
    return [TextClassifier()]
