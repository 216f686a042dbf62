"""Shared building blocks for techniques: freezing by layer group, per-group learning
rates, schedules.  Techniques compose these so that each plugin reads like its recipe."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

_BN_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _group_modules(group) -> list[nn.Module]:
    return list(getattr(group, "modules", group))


def set_trainable(groups: Iterable, trainable: bool) -> None:
    """Freeze or unfreeze whole layer groups.

    Frozen BatchNorm layers also keep their running statistics (they stay in eval mode
    while the rest of the model trains): fine-tuning on a few hundred images must not
    overwrite ImageNet's statistics of layers that are not being trained.
    """
    for g in groups:
        for p in getattr(g, "params", ()):  # loose parameters (ViT's class token, position embedding)
            p.requires_grad_(trainable)
        for m in _group_modules(g):
            for p in m.parameters():
                p.requires_grad_(trainable)
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub._tl_frozen = not trainable


def freeze_all_but_top(model, trainable_groups: int) -> None:
    """Train only the top ``trainable_groups`` layer groups (the head counts as one);
    a negative number or one >= the number of groups trains everything."""
    groups = model.groups
    n = len(groups) if trainable_groups < 0 else min(trainable_groups, len(groups))
    set_trainable(groups[: len(groups) - n], False)
    set_trainable(groups[len(groups) - n:], True)


def keep_in_eval(module: nn.Module) -> None:
    """``module`` stays in eval mode while the rest of the model trains (a frozen backbone:
    its BatchNorm statistics and dropout as pretrained)."""
    module._tl_frozen = True


def keep_frozen_bn_in_eval(model: nn.Module) -> None:
    """Call after ``model.train()``: BatchNorm layers of frozen groups go back to eval."""
    for m in model.modules():
        if getattr(m, "_tl_frozen", False):
            m.eval()


def trainable_groups(model) -> list:
    return [g for g in model.groups if any(p.requires_grad for p in g.parameters())]


def discriminative_param_groups(model, head_lr: float, decay: float, head_weight_decay: float | None = None) -> list[dict]:
    """One optimizer group per trainable layer group: the head at ``head_lr``, each group
    below it at ``decay`` times the one above (ULMFiT's discriminative fine-tuning)."""
    out = []
    for depth, g in enumerate(reversed(model.groups)):
        params = [p for p in g.parameters() if p.requires_grad]
        if not params:
            continue
        grp = {"params": params, "lr": head_lr * (decay ** depth), "name": g.name}
        if head_weight_decay is not None and depth == 0:
            grp["weight_decay"] = head_weight_decay
        out.append(grp)
    return list(reversed(out))


def count_params(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


# --- learning-rate schedules ------------------------------------------------------------
def lr_factor(step: int, total: int, steps_per_epoch: int, training) -> float:
    """The multiplier of every group's base learning rate at optimizer step ``step``.

    A pure function of the step, so a resumed run continues on exactly the same curve.
    ``training`` is a :class:`tlstudio.core.config.TrainingConfig`.
    """
    total = max(1, total)
    spe = max(1, steps_per_epoch)
    warm = int(round(training.warmup_epochs * spe))
    kind = training.schedule
    if kind == "onecycle":  # a third up from lr/25, then cosine down to lr/1e4
        up = max(1, int(0.3 * total))
        if step < up:
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / up)) / 2
        t = (step - up) / max(1, total - up)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * min(1.0, t))) / 2
    if warm and step < warm:
        return (step + 1) / warm
    s = step - warm
    rest = max(1, total - warm)
    if kind == "none":
        return 1.0
    if kind == "linear":  # linear decay to zero after the warm-up (BERT's recipe)
        return max(0.0, 1.0 - s / rest)
    if kind == "cosine":
        return 0.01 + 0.99 * (1 + math.cos(math.pi * min(1.0, s / rest))) / 2
    if kind == "cosine_warm_restarts":
        period = training.restart_epochs * spe
        mult = training.restart_mult
        while s >= period:
            s -= period
            period *= mult
        return 0.01 + 0.99 * (1 + math.cos(math.pi * s / period)) / 2
    if kind == "step":
        return training.step_gamma ** (s // (training.step_epochs * spe))
    raise ValueError(f"unknown schedule {kind!r}")


def apply_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g.setdefault("base_lr", g["lr"]) * factor


def make_optimizer(groups: Sequence[dict], training) -> torch.optim.Optimizer:
    groups = [dict(g, base_lr=g.get("base_lr", g["lr"])) for g in groups if g["params"]]
    if not groups:
        raise ValueError("Nothing to train: every layer is frozen.")
    if training.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=training.lr, momentum=training.momentum,
                               weight_decay=training.weight_decay, nesterov=training.momentum > 0)
    if training.optimizer == "adam":
        return torch.optim.Adam(groups, lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.AdamW(groups, lr=training.lr, weight_decay=training.weight_decay)


def carry_optimizer_state(old: torch.optim.Optimizer | None, new: torch.optim.Optimizer) -> None:
    """Keep the per-parameter state (momentum, Adam moments) of parameters that train on
    when the groups change (progressive unfreezing)."""
    if old is None:
        return
    for group in new.param_groups:
        for p in group["params"]:
            if p in old.state:
                new.state[p] = old.state[p]
