"""Callbacks that recipes share: L2-SP, mixup, weight averaging and the stage schedule of
progressive unfreezing (for image and text models alike).

Each is a :class:`tlstudio.core.techniques.base.Callback`; a technique lists the ones its
recipe uses (``Technique.callbacks``).  The EWC penalty, gradient reversal with its domain
discriminator, the target domain and the feature cache live beside their building blocks
(``continual``, ``adaptation``, ``target``, ``features``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .base import Callback
from .blocks import set_trainable
from .regularizers import L2SP as _L2SPPenalty
from .regularizers import without_weight_decay


class L2SP(Callback):
    """L2-SP (Li, Grandvalet & Davoine 2018): ``λ·‖θ − θ₀‖²`` over the pretrained backbone is
    added to the loss, ``θ₀`` snapshot right after the model is built (so a resumed run takes
    the same snapshot), and weight decay is switched off where it applies.  λ = 0: off."""

    series = {"l2sp": "L2-SP distance to the pretrained weights (λ·‖θ − θ₀‖²)"}

    def __init__(self, strength: float):
        self.strength = float(strength)
        self.penalty: _L2SPPenalty | None = None

    def on_build(self, ctx, model) -> None:
        self.penalty = _L2SPPenalty(model.backbone, self.strength) if self.strength > 0 else None

    def adjust_param_groups(self, ctx, groups: list[dict]) -> list[dict]:
        return without_weight_decay(groups) if self.penalty is not None else groups

    def after_loss(self, ctx, out: dict) -> None:
        if self.penalty is not None:
            pen = self.penalty()
            out["loss"] = out["loss"] + pen
            out["l2sp"] = pen.detach()

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {"l2sp": float(self.penalty().detach())} if self.penalty is not None else {}


class Mixup(Callback):
    """Mixup (Zhang et al. 2018, torchvision's MixUp): training batches become blends of two
    images and of their labels (soft labels that cross-entropy takes as they are).  α = 0: off.
    Only (images, labels) pairs are mixed; other batches pass unchanged."""

    def __init__(self, alpha: float):
        self.alpha = float(alpha)
        self._mix = None

    def before_batch(self, ctx, batch):
        if self.alpha <= 0 or not (isinstance(batch, (list, tuple)) and len(batch) == 2):
            return batch
        x, y = batch
        if not (torch.is_tensor(x) and x.dim() == 4 and torch.is_tensor(y) and y.dim() == 1):
            return batch
        if self._mix is None:
            from torchvision.transforms import v2

            self._mix = v2.MixUp(alpha=self.alpha, num_classes=ctx.num_classes)
        return self._mix(x, y)


class WeightAveraging(Callback):
    """Stochastic weight averaging of the last ``n`` epochs: the final model is the mean of
    the weights at the end of each of them (Izmailov et al. 2018).  n <= 1: off."""

    def __init__(self, last: int):
        self.last = int(last)
        self.avg: dict | None = None
        self.avg_n = 0

    def setup(self, ctx) -> None:
        if self.last > 1 and ctx.training.monitor != "last":
            ctx.log(f"Weights of the last {self.last} epochs are averaged into the final model, but the "
                    f"best-model metric is '{ctx.training.monitor}': an earlier epoch may be kept instead. Choose "
                    "'last' to keep the average.", "warning")

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        epochs = ctx.training.epochs
        if self.last > 1 and epoch >= epochs - self.last:
            self._accumulate(ctx.model.state_dict())
            if epoch == epochs - 1 and self.avg_n > 1:
                self._load_average(ctx, metrics)
        return {}

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
            after = ctx.evaluate("val")
            name = "auc" if after.get("auc") is not None else "accuracy"
            msg += f" (validation {name} {after.get(name, 0):.3f}; the last epoch alone {metrics.get(name) or 0:.3f})"
        ctx.log(msg + ".")

    def state_dict(self) -> dict:
        return {"avg": self.avg, "avg_n": self.avg_n} if self.avg is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.avg = state.get("avg")
        self.avg_n = int(state.get("avg_n", 0) or 0)


# --- progressive unfreezing ----------------------------------------------------------------------
@dataclass
class Stage:
    """One stage of a schedule: which layer groups train, at what learning-rate factor."""

    index: int  # 0-based
    count: int
    groups: list  # the layer groups that train (bottom to top)
    lr_factor: float = 1.0


class StageSchedule(Callback):
    """Progressive unfreezing (ULMFiT's gradual unfreezing), written once for any model with
    layer groups: ``plan(ctx, epoch) -> Stage`` says what trains in each epoch; when the stage
    changes, exactly its groups are unfrozen, the optimizer is rebuilt (keeping the state of
    the groups that trained on) and a ``stage`` event marks the charts.  Plans:
    :func:`even_stages` (images) and :func:`layers_per_stage` (text encoders)."""

    def __init__(self, plan: Callable[[object, int], Stage], describe: Callable[[object, Stage], str] | None = None):
        self.plan = plan
        self.describe = describe or _describe_groups
        self.stage: int | None = None  # index of the stage applied (None: none yet)
        self._names: list[str] | None = None
        self._factor = 1.0

    def setup(self, ctx) -> None:
        # the stage of the last completed epoch (ctx.train.epoch; 0 for a new run): a resumed run's
        # optimizer state was saved with that stage's groups
        self._apply(ctx, self.plan(ctx, ctx.train.epoch))

    def adjust_param_groups(self, ctx, groups: list[dict]) -> list[dict]:
        if self._factor == 1.0:
            return groups
        return [dict(g, lr=g["lr"] * self._factor) for g in groups]

    def on_epoch_start(self, ctx, epoch: int) -> None:
        ctx.control.check()  # a run stopped between epochs does not announce a stage it never trains
        st = self.plan(ctx, epoch)
        changed = self._apply(ctx, st)
        if changed:
            ctx.rebuild_optimizer()
        if changed or epoch == 0:
            names = [g.name for g in st.groups]
            message = self.describe(ctx, st)
            if st.count > 1:
                ctx.stage(stage=st.index + 1, stages=st.count, epoch=epoch + 1, trainable=names,
                          lr_factor=st.lr_factor, message=message)
            else:
                ctx.log(message)

    def _apply(self, ctx, st: Stage) -> bool:
        names = [g.name for g in st.groups]
        if names == self._names and st.index == self.stage:
            return False
        set_trainable(ctx.model.groups, False)
        set_trainable(st.groups, True)
        self._names, self.stage, self._factor = names, st.index, st.lr_factor
        return True

    def state_dict(self) -> dict:
        return {"stage": self.stage or 0}

    def load_state_dict(self, state: dict) -> None:
        pass  # the stage follows from the epoch (see setup); it is saved to be read, not needed back


def _describe_groups(ctx, st: Stage) -> str:
    groups = ctx.model.groups
    names = [g.name for g in st.groups]
    what = "the new head only" if len(names) == 1 else (
        "the whole network" if len(names) == len(groups) else ", ".join(names))
    return f"Stage {st.index + 1} of {st.count}: training {what}." if st.count > 1 else f"Training {what}."


def parse_numbers(text: str, kind, what: str) -> list:
    """'1, 1, 2' -> [1, 1, 2]: positive numbers separated by commas (or semicolons)."""
    try:
        values = [kind(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected numbers separated by commas, e.g. '1, 1, 2' (got {text!r})") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{what}: expected positive numbers separated by commas (got {text!r})")
    return values


def even_stages(stages: int, stage_epochs: str = "1", stage_lr: str = "1") -> Callable[[object, int], Stage]:
    """Stage 1 trains the head only, the last stage the whole network, the stages between
    unfreeze the layer groups from the top down, evenly spread.  ``stage_epochs`` and
    ``stage_lr`` ('1, 1, 2'; the last number repeats): epochs and learning-rate factor per stage."""
    per = parse_numbers(stage_epochs, int, "Epochs per stage")
    lrs = parse_numbers(stage_lr, float, "Learning-rate factor per stage")

    def plan(ctx, epoch: int) -> Stage:
        groups = ctx.model.groups
        n_groups = len(groups)
        count = min(stages, n_groups)
        last = count - 1
        index, start = last, 0
        for k in range(last):
            start += per[min(k, len(per) - 1)]
            if epoch < start:
                index = k
                break
        n = n_groups if index >= last else 1 + round(index * (n_groups - 1) / last)
        return Stage(index, count, list(groups[n_groups - n:]), lrs[min(index, len(lrs) - 1)])

    return plan


def layers_per_stage(eligible: Callable[[object], Sequence], per_stage: int, epochs_per_stage: int,
                     progressive: bool = True) -> Callable[[object, int], Stage]:
    """Text encoders: the head always trains; ``eligible(ctx)`` lists the groups that may ever
    train (bottom to top); each stage opens ``per_stage`` more of them from the top, every
    ``epochs_per_stage`` epochs.  Not ``progressive``: one stage, everything eligible trains."""

    def plan(ctx, epoch: int) -> Stage:
        ok = list(eligible(ctx))
        head = ctx.model.groups[-1]
        if not progressive:
            return Stage(0, 1, [*ok, head])
        count = 1 + -(-len(ok) // per_stage)
        index = min(count - 1, epoch // epochs_per_stage)
        k = min(len(ok), index * per_stage)
        return Stage(index, count, [*ok[len(ok) - k:], head])

    return plan
