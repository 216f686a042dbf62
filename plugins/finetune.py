"""Fine-tuning: the pretrained network keeps learning on your images, the top layers
faster than the bottom ones."""
from __future__ import annotations

from pydantic import Field

from tlstudio.core import hookimpl
from tlstudio.core.blocks import freeze_all_but_top
from tlstudio.core.finetuning import FineTuningBase, FineTuningSettings


class FineTuneConfig(FineTuningSettings):
    trainable_groups: int = Field(
        -1, ge=-1, le=64, title="Layer groups to train",
        description="How many layer groups, counted from the top, learn (the new head counts as one); all = the whole "
                    "network.", json_schema_extra={"labels": {-1: "all"}})


class FineTuning(FineTuningBase):
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

    def build(self, ctx):
        model = self.build_model(ctx)
        freeze_all_but_top(model, ctx.config.trainable_groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return self.group_lrs(ctx, ctx.training.lr)


@hookimpl
def tlstudio_techniques():
    return [FineTuning()]
