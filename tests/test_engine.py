"""The engine end to end on real digits and real ImageNet weights (CPU, small sizes)."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from conftest import make_digit_folder, quick_project

from tlstudio.core.engine import RunControl, resume, train
from tlstudio.core.runs import Run, list_runs


def kinds(events):
    return [e["kind"] for e in events]


def test_fine_tuning_trains_and_stores_a_run(tmp_path, tiny_digits):
    events: list[dict] = []
    res = train(quick_project(tiny_digits, epochs=3, lr=2e-3), on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    k = kinds(events)
    assert k[0] == "start" and k[-1] == "done"
    assert k.count("epoch") == 3 and "batch" in k
    epoch = [e for e in events if e["kind"] == "epoch"][-1]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(epoch)
    assert len(epoch["lr"]) > 2  # one learning rate per layer group
    run = Run(res["run_dir"])
    for f in ("project.toml", "env.json", "metrics.jsonl", "split.json", "final.json", "report.md",
              "test_predictions.csv", "evaluation_test.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run.dir / f).exists(), f
    assert run.status() == "done"
    assert [e["epoch"] for e in run.epochs()] == [1, 2, 3]
    final = run.final()
    assert 0 <= final["test_accuracy"] <= 1 and final["test"]["confusion_matrix"]
    # three classes of clearly different digits: well above chance after 3 epochs
    assert final["test_accuracy"] > 0.6
    env = json.loads((run.dir / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["data_fingerprint"]
    # the run's own project file repeats the run
    again = run.project()
    assert again.data.source == str(tiny_digits) and again.data.split.file == "split.json"
    assert list_runs(tmp_path / "runs")[0].id == run.id


def test_frozen_features_cache_is_reused_and_invalidated(tmp_path, tiny_digits):
    def run(**kw):
        ev: list[dict] = []
        p = quick_project(tiny_digits, technique="frozen-features", epochs=3)
        for k, v in kw.items():
            setattr(p.model, k, v)
        res = train(p, on_event=ev.append, runs_dir=tmp_path / "runs")
        assert res["status"] == "done", res
        return ev, res

    first, r1 = run()
    extracted = [e for e in first if e["kind"] == "progress" and e["task"].startswith("Extracting")]
    assert extracted, "the first run computes features"
    second, r2 = run()
    assert not [e for e in second if e["kind"] == "progress" and e["task"].startswith("Extracting")]
    assert r1["test_accuracy"] == pytest.approx(r2["test_accuracy"])
    third, _ = run(image_size=40)  # other preprocessing -> other features
    assert [e for e in third if e["kind"] == "progress" and e["task"].startswith("Extracting")]


def test_feature_extraction_copy_gives_the_same_features():
    """The cache's inference copy (BatchNorm folded into the convolutions, channels-last)
    computes the features of the network as trained, and leaves that network alone; a
    network torch.fx cannot trace is used unfused."""
    from tlstudio.core.techniques.features import inference_copy
    from tlstudio.core.models import ModelLibrary

    model, _ = ModelLibrary().build("mobilenet_v2", 3, weights="imagenet")
    backbone = model.backbone.eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    fast = inference_copy(backbone)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref, got = backbone(x), fast(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()), "BatchNorm folded"
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())

    class Branchy(torch.nn.Module):  # data-dependent control flow: not traceable
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return y.mean((2, 3)) if y.sum() > 0 else -y.mean((2, 3))

    b = Branchy().eval()
    with torch.no_grad():
        assert torch.allclose(inference_copy(b)(x), b(x), atol=1e-5)


def test_frozen_backbone_does_not_change(tmp_path, tiny_digits):
    res = train(quick_project(tiny_digits, technique="frozen-features", epochs=2), runs_dir=tmp_path / "runs")
    sd = torch.load(Run(res["run_dir"]).best_checkpoint, weights_only=True)["model"]
    from tlstudio.core.models import ModelLibrary

    ref, _ = ModelLibrary().build("mobilenet_v2", 3, weights="imagenet")
    for k, v in ref.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(sd[k], v), k


def test_stop_then_resume_finishes(tmp_path, tiny_digits):
    control = RunControl()
    events: list[dict] = []

    def on_event(e):
        events.append(e)
        if e["kind"] == "epoch" and e["epoch"] == 1:
            control.stop()

    res = train(quick_project(tiny_digits, epochs=3), on_event=on_event, control=control, runs_dir=tmp_path / "runs")
    assert res["status"] == "stopped" and events[-1]["kind"] == "stopped"
    run = Run(res["run_dir"])
    assert run.status() == "stopped" and run.resumable()
    res2 = resume(run.dir)
    assert res2["status"] == "done"
    assert [e["epoch"] for e in run.epochs()] == [1, 2, 3]


def test_pause_holds_the_loop(tmp_path, tiny_digits):
    control = RunControl()
    seen = threading.Event()
    batches: list[int] = []

    def on_event(e):
        if e["kind"] == "batch":
            batches.append(e["step"])
            if e["step"] == 1:
                control.pause()
                seen.set()

    t = threading.Thread(target=train, args=(quick_project(tiny_digits, epochs=1),),
                         kwargs=dict(on_event=on_event, control=control, runs_dir=tmp_path / "runs"))
    t.start()
    assert seen.wait(120)
    import time

    time.sleep(1.0)
    assert batches == [1]  # nothing moves while paused
    control.resume()
    t.join(120)
    assert len(batches) > 1


def test_one_class_fails_with_a_clear_message(tmp_path):
    data = make_digit_folder(tmp_path / "one", classes=(3,), per_class=10)
    res = train(quick_project(data), runs_dir=tmp_path / "runs")
    assert res["status"] == "failed"
    assert "one class" in res["message"] and "'3'" in res["message"]


def test_bad_files_are_skipped_and_the_rest_trains(tmp_path, tiny_digits):
    (tiny_digits / "0" / "broken.png").write_text("not an image at all")
    (tiny_digits / "1" / "empty.jpg").write_bytes(b"")
    events: list[dict] = []
    res = train(quick_project(tiny_digits, epochs=1), on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "done"
    warn = " ".join(e["message"] for e in events if e["kind"] == "log" and e["level"] == "warning")
    assert "2 item(s) skipped" in warn and "broken.png" in warn


def test_early_stopping(tmp_path, tiny_digits):
    p = quick_project(tiny_digits, epochs=6, early_stopping=1, monitor="val_loss", lr=5.0, schedule="none",
                      optimizer="sgd")
    res = train(p, runs_dir=tmp_path / "runs")
    # a learning rate this large diverges or stops improving at once
    assert res["status"] in ("done", "failed")
    if res["status"] == "done":
        assert len(Run(res["run_dir"]).epochs()) < 6


def test_predict_from_a_run(tmp_path, tiny_digits):
    from tlstudio.core.delivery.predict import Predictor

    res = train(quick_project(tiny_digits, epochs=4, lr=2e-3), runs_dir=tmp_path / "runs")
    pred = Predictor.from_run(res["run_dir"])
    imgs = [next((tiny_digits / c).glob("*.png")) for c in ("0", "7")]
    (tmp_path / "bad.png").write_text("text")
    out = pred.predict_paths(imgs + [tmp_path / "bad.png"])
    assert [r.get("predicted") for r in out[:2]] == ["0", "7"]
    assert abs(sum(out[0]["probabilities"].values()) - 1) < 1e-4
    assert "error" in out[2] and "bad.png" in out[2]["error"]
    csv = pred.write_csv(out, tmp_path / "pred.csv").read_text()
    # the prediction set and the most probable classes (three classes) beside the probabilities
    assert csv.splitlines()[0] == "input,predicted,set,top_k,p_0,p_1,p_7,error,run"  # run: the model it came from


def test_split_is_stored_and_reused(tmp_path, tiny_digits):
    p = quick_project(tiny_digits, epochs=1)
    p.save(tmp_path / "proj" / "project.toml")
    r1 = train(p, runs_dir=tmp_path / "runs")
    r2 = train(p, runs_dir=tmp_path / "runs")
    s1 = json.loads((Run(r1["run_dir"]).dir / "split.json").read_text())
    s2 = json.loads((Run(r2["run_dir"]).dir / "split.json").read_text())
    assert s1 == s2
    assert list((tmp_path / "proj" / "splits").glob("split-*.json"))


def test_lr_schedules_are_pure_functions_of_the_step():
    from tlstudio.core.techniques.blocks import lr_factor
    from tlstudio.core.config import TrainingConfig

    for sched in ("none", "cosine", "cosine_warm_restarts", "onecycle", "step"):
        t = TrainingConfig(schedule=sched, warmup_epochs=1, restart_epochs=2, step_epochs=2)
        f = [lr_factor(s, 100, 10, t) for s in range(100)]
        assert all(0 < v <= 1.0 + 1e-9 for v in f), sched
    t = TrainingConfig(schedule="cosine_warm_restarts", restart_epochs=2, restart_mult=1)
    f = [lr_factor(s, 100, 10, t) for s in range(60)]
    assert f[19] < 0.05 and f[20] == pytest.approx(1.0)  # restart after T_0 = 2 epochs


def test_interrupted_run_is_detected(tmp_path):
    run = Run.create(tmp_path, quick_project(tmp_path))
    st = json.loads((run.dir / "status.json").read_text())
    st["pid"] = 999999  # a process that no longer exists
    (run.dir / "status.json").write_text(json.dumps(st))
    assert run.status() == "interrupted"


def test_determinism_same_seed_same_weights(tmp_path, tiny_digits):
    def weights():
        p = quick_project(tiny_digits, epochs=1, deterministic=True)
        r = train(p, runs_dir=tmp_path / "runs")
        return torch.load(Run(r["run_dir"]).last_checkpoint, weights_only=True)["model"]

    a, b = weights(), weights()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.isfinite(next(iter(a.values())).float().numpy()).all()
