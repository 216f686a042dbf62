"""Progressive unfreezing: each stage unfreezes exactly its layer groups, the optimizer
trains exactly those, stage changes are events, and a run resumes across stages."""
from __future__ import annotations

import pytest
import torch
from finetune_helpers import epoch_starts, in_optimizer, one_step, params_of, technique_context, trainable
from conftest import quick_project

from tlstudio.core.engine import RunControl, resume, train
from tlstudio.core.runs import Run


def test_stage_change_unfreezes_exactly_the_intended_groups(tiny_digits):
    tech, ctx, events = technique_context(tiny_digits, "progressive-unfreezing",
                                          {"stages": 3, "stage_epochs": "1, 2", "stage_lr": "1, 0.5", "lr_decay": 0.5})
    groups = ctx.model.groups
    assert [g.name for g in groups][-1] == "head" and len(groups) == 8  # MobileNetV2: 7 pretrained groups + head

    epoch_starts(ctx, 0)  # stage 1: the head only
    assert trainable(ctx.model) == params_of(groups[-1:]) == in_optimizer(ctx.train.optimizer)
    assert [g["name"] for g in ctx.train.optimizer.param_groups] == ["head"]
    ctx.model.train()
    from tlstudio.core.techniques.blocks import keep_frozen_bn_in_eval

    keep_frozen_bn_in_eval(ctx.model)
    bn = [m for m in groups[0].modules[1].modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert not bn.training, "a frozen group's BatchNorm keeps ImageNet's statistics"
    one_step(ctx, tech)
    head_w = next(groups[-1].parameters())
    assert head_w in ctx.train.optimizer.state

    epoch_starts(ctx, 1)  # stage 2: head + the top half (1 + round(7/2) = 5 groups)
    assert trainable(ctx.model) == params_of(groups[-5:]) == in_optimizer(ctx.train.optimizer)
    assert not trainable(ctx.model) & params_of(groups[:-5])
    assert [g["name"] for g in ctx.train.optimizer.param_groups] == [g.name for g in groups[-5:]]
    lrs = {g["name"]: g["lr"] for g in ctx.train.optimizer.param_groups}
    assert lrs["head"] == pytest.approx(ctx.training.lr * 0.5)  # the stage's learning-rate factor
    assert lrs["head_conv"] == pytest.approx(lrs["head"] * 0.5)  # discriminative: lr_decay per group
    assert head_w in ctx.train.optimizer.state, "the head keeps its Adam moments across the change"
    stage_events = [e for e in events if e["kind"] == "stage"]
    assert [e["stage"] for e in stage_events] == [1, 2]
    assert stage_events[-1]["trainable"] == [g.name for g in groups[-5:]] and "Stage 2 of 3" in stage_events[-1]["message"]

    epoch_starts(ctx, 2)  # stage_epochs "1, 2": stage 2 lasts two epochs
    assert len([e for e in events if e["kind"] == "stage"]) == 2
    epoch_starts(ctx, 3)  # stage 3: everything
    assert trainable(ctx.model) == params_of(groups) == in_optimizer(ctx.train.optimizer)
    assert {id(p) for p in ctx.model.parameters()} == trainable(ctx.model)
    one_step(ctx, tech)
    assert next(groups[0].parameters()) in ctx.train.optimizer.state


def test_bad_stage_settings_are_refused_with_the_field_named(tiny_digits):
    from tlstudio.core.errors import ProjectError

    p = quick_project(tiny_digits, "progressive-unfreezing")
    p.technique.settings = {"stage_epochs": "1, two"}
    res = train(p)
    assert res["status"] == "failed" and "stage_epochs" in res["message"] and "Epochs per stage" in res["message"]
    with pytest.raises(ProjectError):
        from tlstudio.core.engine import technique_for
        from tlstudio.core.plugins import get_plugin_manager

        technique_for(p, get_plugin_manager())


@pytest.mark.slow
def test_resume_across_a_stage_change_matches_an_uninterrupted_run(tmp_path, tiny_digits):
    def project():
        p = quick_project(tiny_digits, "progressive-unfreezing", epochs=3, deterministic=True, lr=2e-3, monitor="last")
        p.technique.settings = {"stages": 3, "stage_epochs": "1", "l2sp": 0.01, "mixup": 0.2, "average_last": 3}
        return p

    ref = train(project(), runs_dir=tmp_path / "ref")
    assert ref["status"] == "done", ref

    control = RunControl()
    events: list[dict] = []

    def on_event(e):
        events.append(e)
        if e["kind"] == "epoch" and e["epoch"] == 2:
            control.stop()

    stopped = train(project(), on_event=on_event, control=control, runs_dir=tmp_path / "runs")
    assert stopped["status"] == "stopped"
    last = torch.load(Run(stopped["run_dir"]).last_checkpoint, weights_only=True)
    # the stage, and the running average of the last epochs' weights, travel with the checkpoint
    callbacks = last["technique"]["callbacks"]
    assert callbacks["StageSchedule"]["stage"] == 1 and callbacks["WeightAveraging"]["avg_n"] == 2 and last["epoch"] == 2

    more: list[dict] = []
    done = resume(stopped["run_dir"], on_event=more.append)
    assert done["status"] == "done", done
    assert [e["stage"] for e in more if e["kind"] == "stage"] == [3]
    assert [e["stage"] for e in events if e["kind"] == "stage"] == [1, 2]
    a = torch.load(Run(ref["run_dir"]).last_checkpoint, weights_only=True)["model"]
    b = torch.load(Run(done["run_dir"]).last_checkpoint, weights_only=True)["model"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) == 0.0
