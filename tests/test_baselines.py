"""Honest baselines: every technique's "without it" arm is the recommended plain recipe on the
same budget (DANN's source-only arm, EWC's strength 0, the plain recipe beside any other
technique, the plain recipe from scratch), and the comparison says plainly when a technique
does not help."""
from __future__ import annotations

import json

import pytest
from conftest import make_digit_folder, quick_project

from tlstudio.core.analysis.compare import Arm, BaselineComparison, baseline_project, compare_with_baseline, scratch_project
from tlstudio.core.errors import StudioError
from tlstudio.core.techniques.base import PLAIN_TECHNIQUE
from tlstudio_plugins.finetune import RECOMMENDED_TRAINING
from tlstudio.core.plugins import get_plugin_manager


def _plain_settings() -> dict:
    return get_plugin_manager().technique(PLAIN_TECHNIQUE).make_config({}).model_dump()


def test_dann_source_only_arm_is_the_plain_recipe_on_the_same_budget(tmp_path):
    p = quick_project(tmp_path, technique="dann", epochs=3, batch_size=48, lr=0.02, seed=7, label_smoothing=0.1)
    p.technique.settings = {"lr_decay": 0.5, "mixup": 0.0, "l2sp": 0.0, "head": "bn_dropout",  # a weakened recipe
                            "target_test_share": 0.4, "shift_images": 50, "lambda_max": 2.0}
    p.model.image_size = 48
    base = baseline_project(p)
    assert base.technique.id == "dann"
    cfg = get_plugin_manager().technique("dann").make_config(base.technique.settings).model_dump()
    assert cfg["adversarial"] is False
    assert {k: cfg[k] for k in _plain_settings()} == _plain_settings()  # every recipe setting at its default
    assert cfg["target_test_share"] == 0.4 and cfg["shift_images"] == 50  # the measurement stays the same
    # the plain recipe's training, on the project's budget (epochs, batch, seed, device)
    assert {k: getattr(base.training, k) for k in RECOMMENDED_TRAINING if k not in ("epochs", "batch_size")} == \
        {k: v for k, v in RECOMMENDED_TRAINING.items() if k not in ("epochs", "batch_size")}
    assert (base.training.epochs, base.training.batch_size, base.training.seed) == (3, 48, 7)
    assert base.training.label_smoothing == 0.0 and base.model.image_size == 48
    assert base.data == p.data and base.augmentation == p.augmentation


def test_other_techniques_are_compared_with_fine_tuning_defaults_and_scratch_trains_every_layer(tmp_path):
    p = quick_project(tmp_path, technique="frozen-features", epochs=20)
    base = baseline_project(p)
    assert base.technique.id == PLAIN_TECHNIQUE and base.technique.settings == {}
    assert base.training.class_balance == "weighted_loss" and base.training.epochs == 20
    ewc = quick_project(tmp_path, technique="ewc")
    ewc.technique.settings = {"strength": 500.0, "fisher_samples": 40}
    b = baseline_project(ewc)
    assert b.technique.id == "ewc" and b.technique.settings == {"fisher_samples": 40, "strength": 0.0}
    # scratch: not a frozen random network (a straw man) but the plain recipe, every layer, no pull to random weights
    s = scratch_project(p)
    assert s.model.weights == "none" and s.technique.id == PLAIN_TECHNIQUE and s.technique.settings == {"l2sp": 0.0}
    assert s.training.epochs == 20
    # the plain recipe itself has nothing to be compared with
    plain = quick_project(tmp_path, technique=PLAIN_TECHNIQUE)
    plain.training = baseline_project(plain).training
    with pytest.raises(StudioError, match="already trains the recommended plain recipe"):
        compare_with_baseline(plain, seeds=2)


def _cmp(technique, baseline, metric="accuracy"):
    seeds = list(range(len(technique)))
    return BaselineComparison(metric, Arm("technique", "imagenet", list(technique), seeds, recipe="dann as set"),
                              Arm("baseline", "imagenet", list(baseline), seeds, recipe="fine-tuning with its defaults"))


def test_the_verdict_says_plainly_when_a_technique_does_not_help():
    worse = _cmp([0.82, 0.80, 0.85], [0.86, 0.85, 0.86], "target_accuracy")
    assert worse.does_not_help and not worse.helps
    assert worse.verdict.startswith("WARNING — it does not help") and "Keep the plain recipe" in worse.verdict
    unsure = _cmp([0.86, 0.84, 0.90], [0.85, 0.86, 0.85])
    assert not unsure.does_not_help and not unsure.helps and "includes zero" in unsure.verdict
    better = _cmp([0.90, 0.91, 0.93], [0.85, 0.86, 0.86])
    assert better.helps and better.verdict.startswith("It helps") and "95% CI of the difference" in better.verdict
    d = better.to_dict()
    assert d["kind"] == "baseline" and d["technique"]["ci95"][0] is not None and d["helps"]


@pytest.mark.slow
def test_source_only_arm_trains_exactly_like_the_plain_recipe(tmp_path):
    """DANN with the alignment off and fine-tuning with its defaults, same seed and data: the
    same model, prediction for prediction (deterministic on the CPU)."""
    from tlstudio.core.engine import train

    source = make_digit_folder(tmp_path / "src", classes=(0, 1, 7), per_class=16)
    target = make_digit_folder(tmp_path / "tgt", classes=(0, 1, 7), per_class=10, offset=100)
    runs = tmp_path / "runs"
    results = {}
    for tid in ("dann", PLAIN_TECHNIQUE):
        p = quick_project(source, technique=tid, epochs=2, deterministic=True, seed=3)
        p.model.image_size = 32
        for k, v in RECOMMENDED_TRAINING.items():
            if k not in ("epochs", "batch_size"):
                setattr(p.training, k, v)
        if tid == "dann":
            p.data.target_source = str(target)
            p.technique.settings = {"adversarial": False, "measure_shift": False}
        res = train(p, runs_dir=runs)
        assert res["status"] == "done", res
        results[tid] = res
    dann, plain = results["dann"], results[PLAIN_TECHNIQUE]
    assert dann["test_target_n"] == 9  # the source-only arm is measured on the target
    a = (runs / dann["run_id"] / "test_predictions.csv").read_text().splitlines()
    b = (runs / plain["run_id"] / "test_predictions.csv").read_text().splitlines()
    assert a == b and dann["test_accuracy"] == plain["test_accuracy"]
    assert "source only: the plain fine-tuning recipe" in (runs / dann["run_id"] / "report.md").read_text()


@pytest.mark.slow
def test_compare_baseline_on_the_command_line(tmp_path, capsys):
    from tlstudio.cli import main

    data = make_digit_folder(tmp_path / "d", classes=(0, 1, 7), per_class=16)
    rc = main(["train", "--data", str(data), "--technique", "frozen-features", "--epochs", "1", "--image-size", "32",
               "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--compare-baseline", "--seeds", "2",
               "--set", "data.split.mode='stratified'", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["kind"] == "baseline" and out["metric"] == "accuracy"
    assert len(out["technique"]["values"]) == 2 and len(out["baseline"]["values"]) == 2
    assert out["baseline"]["recipe"] == "fine-tuning with its defaults"
    assert out["verdict"] and set(out["baseline"]["also"]) >= {"accuracy", "train_seconds"}
    for run_dir in out["baseline"]["run_dirs"]:  # the baseline's runs are the plain recipe, one epoch like the technique's
        text = (tmp_path / "runs" / run_dir.split("/")[-1] / "project.toml").read_text()
        assert 'id = "fine-tuning"' in text and "epochs = 1" in text and 'class_balance = "weighted_loss"' in text
    splits = {(tmp_path / "runs" / d.split("/")[-1] / "split.json").read_text()
              for d in out["technique"]["run_dirs"] + out["baseline"]["run_dirs"]}
    assert len(splits) == 1  # every run on the same split
