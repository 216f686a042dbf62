"""Progressive unfreezing (ULMFiT's gradual unfreezing): first only the new head learns,
then the top layer groups join, stage by stage, until the whole network trains."""
from __future__ import annotations

from pydantic import Field, field_validator

from tlstudio.api import StageSchedule, even_stages, hookimpl, parse_numbers

from .finetune import FineTuneConfig, FineTuning, recipe_callbacks


class ProgressiveConfig(FineTuneConfig):
    stages: int = Field(
        3, ge=2, le=16, title="Stages",
        description="Stage 1 trains the new head only, the last stage the whole network; the stages between unfreeze "
                    "the layer groups from the top down, evenly spread.")
    stage_epochs: str = Field(
        "1", title="Epochs per stage",
        description="Epochs of each stage before the next unfreezes, separated by commas ('1, 1, 2'); the last number "
                    "repeats. The last stage runs until the training's epochs are done.")
    stage_lr: str = Field(
        "1", title="Learning-rate factor per stage",
        description="The head's learning rate in each stage, as a factor of the training's learning rate ('1, 0.5, 0.3'); "
                    "the last number repeats. Lower rates in later stages protect the pretrained layers.")

    @field_validator("stage_epochs")
    @classmethod
    def _check_epochs(cls, v: str) -> str:
        parse_numbers(v, int, "Epochs per stage")
        return v

    @field_validator("stage_lr")
    @classmethod
    def _check_lr(cls, v: str) -> str:
        parse_numbers(v, float, "Learning-rate factor per stage")
        return v


class ProgressiveUnfreezing(FineTuning):
    id = "progressive-unfreezing"
    title = "Progressive unfreezing"
    explanation = (
        "Fine-tuning in stages. First only the new head learns, on top of the untouched pretrained network; then the "
        "top layer groups are unfrozen and learn too, then the next ones down, until the whole network trains. The "
        "head is no longer random when the pretrained layers start to move, so their ImageNet knowledge is not "
        "scrambled by large early errors: a good choice with a few hundred images. Stage changes are marked on the charts."
    )
    Config = ProgressiveConfig

    def callbacks(self, c):
        return [StageSchedule(even_stages(c.stages, c.stage_epochs, c.stage_lr)), *recipe_callbacks(c)]

    def build(self, ctx):
        c = ctx.config
        return ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)  # the schedule freezes


@hookimpl
def tlstudio_techniques():
    return [ProgressiveUnfreezing()]
