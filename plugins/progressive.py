"""Progressive unfreezing (ULMFiT's gradual unfreezing): first only the new head learns,
then the top layer groups join, stage by stage, until the whole network trains."""
from __future__ import annotations

from pydantic import Field, field_validator

from tlstudio.core import hookimpl
from tlstudio.core.blocks import freeze_all_but_top
from tlstudio.core.finetuning import FineTuningBase, FineTuningSettings


def _numbers(text: str, kind, what: str) -> list:
    try:
        values = [kind(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected numbers separated by commas, e.g. '1, 1, 2' (got {text!r})") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{what}: expected positive numbers separated by commas (got {text!r})")
    return values


class ProgressiveConfig(FineTuningSettings):
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
        _numbers(v, int, "Epochs per stage")
        return v

    @field_validator("stage_lr")
    @classmethod
    def _check_lr(cls, v: str) -> str:
        _numbers(v, float, "Learning-rate factor per stage")
        return v


class ProgressiveUnfreezing(FineTuningBase):
    id = "progressive-unfreezing"
    title = "Progressive unfreezing"
    explanation = (
        "Fine-tuning in stages. First only the new head learns, on top of the untouched pretrained network; then the "
        "top layer groups are unfrozen and learn too, then the next ones down, until the whole network trains. The "
        "head is no longer random when the pretrained layers start to move, so their ImageNet knowledge is not "
        "scrambled by large early errors: a good choice with a few hundred images. Stage changes are marked on the charts."
    )
    Config = ProgressiveConfig

    def __init__(self) -> None:
        super().__init__()
        self.stage = 0

    # --- the plan ---------------------------------------------------------------------
    def n_stages(self, ctx) -> int:
        return min(ctx.config.stages, len(ctx.model.groups))

    def stage_of_epoch(self, ctx, epoch: int) -> int:
        """The stage (0-based) that ``epoch`` (0-based) belongs to."""
        per = _numbers(ctx.config.stage_epochs, int, "Epochs per stage")
        start, last = 0, self.n_stages(ctx) - 1
        for k in range(last):
            start += per[min(k, len(per) - 1)]
            if epoch < start:
                return k
        return last

    def trainable_in_stage(self, ctx, stage: int) -> int:
        """How many layer groups, from the top (the head counts as one), train in ``stage``."""
        n, last = len(ctx.model.groups), self.n_stages(ctx) - 1
        return n if stage >= last else 1 + round(stage * (n - 1) / last)

    def stage_lr_factor(self, ctx, stage: int) -> float:
        f = _numbers(ctx.config.stage_lr, float, "Learning-rate factor per stage")
        return f[min(stage, len(f) - 1)]

    def _apply_stage(self, ctx, stage: int) -> None:
        self.stage = stage
        freeze_all_but_top(ctx.model, self.trainable_in_stage(ctx, stage))

    # --- hooks ------------------------------------------------------------------------
    def build(self, ctx):
        model = self.build_model(ctx)
        freeze_all_but_top(model, 1)  # stage 1: the head only
        return model

    def on_fit_start(self, ctx) -> None:
        super().on_fit_start(ctx)
        # a resumed run: load_state_dict set the stage; the optimizer groups follow it
        self._apply_stage(ctx, self.stage)

    def param_groups(self, ctx) -> list[dict]:
        return self.group_lrs(ctx, ctx.training.lr * self.stage_lr_factor(ctx, self.stage))

    def on_epoch_start(self, ctx, epoch: int) -> None:
        ctx.control.check()  # a run stopped between epochs does not announce a stage it never trains
        stage = self.stage_of_epoch(ctx, epoch)
        if stage == self.stage and epoch > 0:
            return
        changed = stage != self.stage
        if changed:
            self._apply_stage(ctx, stage)
            ctx.set_param_groups(self.param_groups(ctx))
        if changed or epoch == 0:
            groups = [g.name for g in ctx.model.groups if any(p.requires_grad for p in g.parameters())]
            n = self.n_stages(ctx)
            what = "the new head only" if len(groups) == 1 else (
                "the whole network" if len(groups) == len(ctx.model.groups) else ", ".join(groups))
            msg = f"Stage {stage + 1} of {n}: training {what}."
            ctx.emit("stage", stage=stage + 1, stages=n, epoch=epoch + 1, trainable=groups,
                     lr_factor=self.stage_lr_factor(ctx, stage), message=msg)
            ctx.log(msg)

    def state_dict(self) -> dict:
        return {"stage": self.stage, **super().state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stage = int(state.get("stage", 0))


@hookimpl
def tlstudio_techniques():
    return [ProgressiveUnfreezing()]
