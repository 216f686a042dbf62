"""Regularisers of the fine-tuning techniques: L2-SP, weight decay, the BN + dropout head,
label smoothing and class balance (weighted loss, balanced sampler, also over cached features)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_digit_folder, quick_project
from finetune_helpers import one_step, technique_context

from tlstudio.core.engine import train
from tlstudio.core.techniques.callbacks import L2SP as L2SPCallback
from tlstudio.core.techniques.callbacks import Mixup
from tlstudio.core.techniques.regularizers import L2SP


def test_l2sp_is_zero_at_the_start_and_grows_as_weights_move(tiny_digits):
    tech, ctx, _ = technique_context(tiny_digits, "fine-tuning", {"l2sp": 0.01}, lr=3e-3, schedule="none")
    reg = ctx.recipe.find(L2SPCallback).penalty
    assert isinstance(reg, L2SP)
    assert float(reg.penalty()) == 0.0  # the snapshot is the pretrained point itself
    # the snapshot holds the pretrained weights, not a random initialisation
    from tlstudio.core.models import ModelLibrary

    pre = ModelLibrary().load_pretrained_state("mobilenet_v2")
    assert torch.equal(reg.anchor["features.0.0.weight"], pre["features.0.0.weight"])
    seen = []
    for _ in range(3):
        one_step(ctx, tech)
        seen.append(float(reg.penalty()))
    assert 0.0 < seen[0] < seen[1] < seen[2]
    # it is λ times the squared distance, and the loss of a training step carries it
    assert float(reg.penalty()) == pytest.approx(0.01 * float(reg.distance()))
    batch = next(iter(ctx.train_batches(0)))
    out = ctx.training_step(batch)
    assert "l2sp" in out and float(out["l2sp"]) == pytest.approx(seen[-1], rel=1e-5)
    # L2-SP replaces weight decay on the pretrained layers; the new head keeps it
    wd = {g["name"]: g["weight_decay"] for g in ctx.train.optimizer.param_groups}
    assert wd["head"] == ctx.training.weight_decay > 0 and all(v == 0 for k, v in wd.items() if k != "head")


def test_l2sp_pulls_toward_the_pretrained_weights(tiny_digits):
    def distance(l2sp):
        tech, ctx, _ = technique_context(tiny_digits, "fine-tuning", {"l2sp": l2sp}, lr=3e-3, schedule="none")
        probe = L2SP(ctx.model.backbone, 1.0)
        for _ in range(4):
            one_step(ctx, tech)
        return float(probe.distance())

    assert distance(10.0) < distance(0.0)


def test_without_l2sp_nothing_is_added(tiny_digits):
    tech, ctx, _ = technique_context(tiny_digits, "fine-tuning", {"l2sp": 0.0, "mixup": 0.0})
    assert ctx.recipe.find(L2SPCallback).penalty is None
    out = ctx.training_step(next(iter(ctx.train_batches(0))))
    assert "l2sp" not in out
    assert all(g["weight_decay"] == ctx.training.weight_decay for g in ctx.train.optimizer.param_groups)


def test_l2sp_is_charted_per_epoch(tmp_path, tiny_digits):
    p = quick_project(tiny_digits, "fine-tuning", epochs=1)
    p.technique.settings = {"l2sp": 0.01, "head": "bn_dropout", "dropout": 0.3}
    ev: list[dict] = []
    res = train(p, on_event=ev.append, runs_dir=tmp_path)
    assert res["status"] == "done", res
    epoch = [e for e in ev if e["kind"] == "epoch"][0]
    assert epoch["series"]["l2sp"] > 0 and epoch["train_l2sp"] > 0
    assert "l2sp" in [e for e in ev if e["kind"] == "start"][0]["series"]


def test_bn_dropout_head_is_the_regularised_head(tiny_digits):
    _, ctx, _ = technique_context(tiny_digits, "fine-tuning", {"head": "bn_dropout", "dropout": 0.4, "hidden": 32})
    kinds = [type(m).__name__ for m in ctx.model.head]
    assert kinds == ["BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert ctx.model.head[1].p == 0.4 and ctx.model.head[2].out_features == 32


def test_label_smoothing_changes_the_loss(tiny_digits):
    _, ctx, _ = technique_context(tiny_digits, "fine-tuning")
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    y = torch.tensor([0, 1])
    plain = float(ctx.criterion(logits, y))
    ctx.project.training.label_smoothing = 0.2
    assert float(ctx.criterion(logits, y)) > plain  # confident right answers cost more


def _imbalanced(root, n_major=60, n_minor=12):
    make_digit_folder(root, classes=(3,), per_class=n_major)
    make_digit_folder(root, classes=(8,), per_class=n_minor)
    return root


def test_weighted_loss_weighs_the_rare_class_up(tmp_path):
    data = _imbalanced(tmp_path / "imb")
    _, ctx, _ = technique_context(data, "fine-tuning", class_balance="weighted_loss")
    ctx.criterion(torch.zeros(2, 2), torch.tensor([0, 1]))
    w = ctx.class_weights()
    counts = np.bincount(ctx.data.labels("train"))
    assert w[1] / w[0] == pytest.approx(counts[0] / counts[1])


@pytest.mark.parametrize("technique", ["fine-tuning", "frozen-features"])
def test_balanced_sampler_evens_the_classes(tmp_path, technique):
    """Also for the frozen technique, whose epochs run over cached features."""
    data = _imbalanced(tmp_path / "imb")
    tech, ctx, _ = technique_context(data, technique, class_balance="balanced_sampler", batch_size=16)
    labels = []
    for epoch in range(6):
        for batch in ctx.train_batches(epoch):
            labels.append(batch[-1])
    y = torch.cat(labels)
    share = float((y == 1).float().mean())
    assert np.bincount(ctx.data.labels("train"))[1] / len(ctx.data.labels("train")) < 0.2
    assert 0.35 < share < 0.65, f"rare class share {share:.2f} with the balanced sampler"


def test_mixup_trains_on_blended_images_and_soft_labels(tiny_digits):
    torch.manual_seed(0)
    tech, ctx, _ = technique_context(tiny_digits, "fine-tuning", {"mixup": 0.4})
    x, y = next(iter(ctx.train_batches(0)))
    mx, my = ctx.recipe.find(Mixup).before_batch(ctx, (x, y))
    assert my.shape == (len(y), 3) and torch.allclose(my.sum(1), torch.ones(len(y)))
    assert ((my > 0) & (my < 1)).any(), "labels are blended"
    assert not torch.equal(mx, x)
    loss = one_step(ctx, tech)
    assert np.isfinite(loss)


def test_average_of_the_last_epochs_becomes_the_final_model(tiny_digits):
    tech, ctx, _ = technique_context(tiny_digits, "fine-tuning", {"average_last": 2}, epochs=3, lr=3e-3)
    snaps = []
    for epoch in range(3):
        one_step(ctx, tech)
        snaps.append({k: v.clone() for k, v in ctx.model.state_dict().items()})
        ctx.recipe.merged("on_epoch_end", ctx, epoch, {})
    final = ctx.model.state_dict()
    w = "head.1.weight"
    assert not torch.equal(snaps[1][w], snaps[2][w])
    assert torch.allclose(final[w], (snaps[1][w] + snaps[2][w]) / 2, atol=1e-6)  # epochs 2 and 3, not 1
    bn = "backbone.features.1.conv.0.1.running_mean"
    assert torch.allclose(final[bn], (snaps[1][bn] + snaps[2][bn]) / 2, atol=1e-6)
    # the running average travels with the checkpoint (resume)
    from tlstudio.core.techniques.base import Recipe
    from tlstudio.core.techniques.callbacks import WeightAveraging

    again = Recipe.of(tech.fresh(), ctx.config)
    again.load_state_dict(ctx.recipe.state_dict())
    avg, done = again.find(WeightAveraging), ctx.recipe.find(WeightAveraging)
    assert avg.avg_n == 2 and torch.equal(avg.avg[w], done.avg[w])
