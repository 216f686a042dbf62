"""Image captioning: a pretrained CNN encoder (frozen by default) and a word-by-word
decoder, an embedding + LSTM or a small Transformer."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from tlstudio.api import Technique, TechniqueConfig, build_caption_model, cached_features, hookimpl, keep_in_eval, set_trainable


class CaptioningConfig(TechniqueConfig):
    decoder: Literal["lstm", "transformer"] = Field(
        "lstm", title="Decoder",
        description="lstm: word embedding + LSTM, started from the image (the classic recipe); transformer: a small "
                    "Transformer decoder that looks at every part of the image for every word.")
    grid: int = Field(2, ge=1, le=4, title="Image grid",
                      description="The encoder's features are pooled to grid x grid cells: 1 keeps what is in the "
                                  "image, 2 or more also where (left, right, above, below).")
    embed_size: int = Field(256, ge=16, le=1024, title="Word vector size",
                            description="Width of the word embedding (the model width of the Transformer).")
    hidden_size: int = Field(512, ge=16, le=2048, title="LSTM size", description="Hidden units of the LSTM.")
    layers: int = Field(1, ge=1, le=6, title="Decoder layers", description="Stacked layers of the caption decoder.")
    heads: int = Field(4, ge=1, le=16, title="Attention heads (Transformer)",
                       description="Transformer decoder only: how many attention heads each layer has.",
                       json_schema_extra={"shown_when": {"decoder": ["transformer"]}})
    dropout: float = Field(0.3, ge=0.0, le=0.8, title="Dropout",
                           description="Randomly silences this share of the decoder's units while training (0 = off).")
    min_count: int = Field(1, ge=1, le=100, title="Minimum word count",
                           description="Words seen fewer times in the training captions become <unk>.")
    max_length: int = Field(20, ge=4, le=100, title="Longest caption (words)",
                            description="Captions are cut to this many words (plus start and end).")
    encoder_trainable_groups: int = Field(
        0, ge=-1, le=32, title="Encoder groups to train",
        description="0: the pretrained encoder stays frozen (its features are computed once and cached); n: its top "
                    "n layer groups learn too (all: the whole encoder).",
        json_schema_extra={"labels": {-1: "all"}})
    lr_decay: float = Field(0.3, gt=0.0, le=1.0, title="Encoder learning-rate decay",
                            description="Each trainable encoder group learns at this times the rate of the group above.")
    cache_features: bool = Field(True, title="Cache features",
                                 description="With a frozen encoder, run it once per image and train on stored features.")
    decoding: Literal["greedy", "beam"] = Field(
        "beam", title="Decoding", description="greedy: the most likely word at each step; beam: keep the best few "
                                              "partial captions (usually better, a little slower).")
    beam_size: int = Field(3, ge=1, le=20, title="Beam size",
                           description="Beam decoding only: how many candidate captions are kept at each word.",
                           json_schema_extra={"shown_when": {"decoding": ["beam"]}})


class Captioning(Technique):
    id = "captioning"
    task = "captioning"
    title = "Image captioning (CNN + LSTM)"
    explanation = (
        "Writes a sentence about each image. A network pretrained on ImageNet looks at the image (its layers stay as "
        "they are unless you let the top ones learn), and a decoder learns your captions word by word: it is shown "
        "the true previous word at each step while training (teacher forcing), and writes on its own afterwards, "
        "greedily or keeping the best few candidate sentences (beam search). Quality is measured with BLEU and "
        "CIDEr against your reference captions; several captions per image help."
    )
    Config = CaptioningConfig

    def recommended_training(self) -> dict:
        return {"epochs": 30, "lr": 2e-3, "batch_size": 32, "schedule": "cosine", "warmup_epochs": 1.0,
                "weight_decay": 1e-4, "optimizer": "adamw", "grad_clip": 5.0}

    def build(self, ctx):
        c = ctx.config
        weights = ctx.weights  # "none" when predicting: the checkpoint brings the weights
        encoder, info = ctx.library.build(ctx.project.model.architecture, 1, weights=weights)
        ctx.model_info = info
        if weights != "none":
            ctx.log(f"Encoder {ctx.project.model.architecture}: {info.get('weights_path') or weights}")
        model = build_caption_model(encoder, c.decoder, len(ctx.data.vocabulary), c.grid, c.max_length,
                                    embed=c.embed_size, hidden=c.hidden_size, layers=c.layers, dropout=c.dropout,
                                    heads=c.heads)
        groups = encoder.groups[:-1]  # the backbone's layer groups (its 1-class head is not used)
        n = len(groups) if c.encoder_trainable_groups < 0 else min(c.encoder_trainable_groups, len(groups))
        set_trainable(groups[: len(groups) - n], False)
        set_trainable(groups[len(groups) - n:], True)
        if n == 0:
            keep_in_eval(model.encoder)  # batch-norm statistics and dropout as pretrained
        object.__setattr__(model, "encoder_groups", groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        lr, decay = ctx.training.lr, ctx.config.lr_decay
        out = [{"params": list(ctx.model.decoder.parameters()), "lr": lr, "name": "decoder"}]
        for k, g in enumerate(reversed(ctx.model.encoder_groups), 1):
            params = [p for p in g.parameters() if p.requires_grad]
            if params:
                out.insert(0, {"params": params, "lr": lr * decay ** k, "name": f"encoder.{g.name}"})
        return out

    def setup(self, ctx) -> None:
        c = ctx.config
        if c.cache_features and not any(p.requires_grad for p in ctx.model.encoder.parameters()):
            enc = ctx.model.encoder
            ctx.task.use_features({s: cached_features(ctx, enc, s, extra={"grid": c.grid})[0]
                                   for s in ("train", "val", "test") if ctx.data.has_split(s)})

@hookimpl
def tlstudio_techniques():
    return [Captioning()]
