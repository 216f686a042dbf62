"""Domain shift and forgetting end to end, on real digits and real ImageNet weights (CPU,
32 px, a few dozen images): DANN with a target domain, a run started from an earlier run
with and without EWC, the negative-transfer check and ``tlstudio shift`` on the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_digit_folder, mnist_arrays, quick_project

from tlstudio.cli import main
from tlstudio.core.engine import train
from tlstudio.core.delivery.predict import Predictor
from tlstudio.core.runs import Run

pytestmark = pytest.mark.slow


def sklearn_digit_folder(root, classes=(0, 1, 7), per_class=30, labelled=True):
    """scikit-learn's 8x8 digits (other writers, coarser scan) as PNGs: root/<class>/ or, unlabelled, root/."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in classes:
        folder = root / str(c) if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(d.target == c)[:per_class]:
            Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), "L").save(folder / f"sk{c}-{i}.png")
    return root


def small(project, **settings):
    project.model.image_size = 32
    project.augmentation.preset = "none"
    project.technique.settings = settings
    return project


def epochs(events):
    return [e for e in events if e["kind"] == "epoch"]


def test_dann_trains_with_a_target_domain_and_charts_its_series(tmp_path):
    source = make_digit_folder(tmp_path / "mnist", classes=(0, 1, 7), per_class=30)
    target = sklearn_digit_folder(tmp_path / "sk", per_class=30)
    p = small(quick_project(source, technique="dann", epochs=2, lr=2e-3), shift_images=60)
    p.data.target_source = str(target)
    events: list[dict] = []
    res = train(p, on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    start = next(e for e in events if e["kind"] == "start")
    assert {"class_loss", "domain_loss", "discriminator_accuracy", "target_accuracy"} <= set(start["series"])
    ep = epochs(events)
    for e in ep:
        s = e["series"]
        assert {"class_loss", "domain_loss", "discriminator_accuracy", "grl_lambda", "target_accuracy"} <= set(s)
        assert 0 <= s["discriminator_accuracy"] <= 1 and 0 <= s["target_accuracy"] <= 1 and s["domain_loss"] > 0
    assert 0 < ep[0]["series"]["grl_lambda"] < ep[1]["series"]["grl_lambda"] < 1  # the Ganin schedule rises
    # target accuracy on the held-out labelled target images (30% of 90), never trained on
    assert res["test_target_n"] == 27 and 0 <= res["test_target_accuracy"] <= 1
    run = Run(res["run_dir"])
    shift = json.loads((run.dir / "domain_shift.json").read_text())
    assert shift["before"]["p_value"] < 0.05  # MNIST vs scikit-learn digits: a real shift
    emb = shift["after"]["embedding"]
    assert len(emb["points"]) == len(emb["domains"]) == shift["after"]["n_source"] + shift["after"]["n_target"]
    assert shift["after"]["n_target"] == 27 and sum(emb["domains"]) == 27
    data = json.loads((run.dir / "data.json").read_text())
    assert data["target"]["adapt"] == 63 and data["target"]["test"] == 27
    split = json.loads((run.dir / "target_split.json").read_text())["refs"]
    assert sum(v == "test" for v in split.values()) == 27
    assert "## Target domain" in (run.dir / "report.md").read_text()
    assert res["test_mmd2_before"] == pytest.approx(shift["before"]["mmd2"])
    # a DANN run predicts like any other run (the discriminator stays out of the model)
    pred = Predictor.from_run(run.dir)
    out = pred.predict_paths([next((target / "7").iterdir())])
    assert out[0]["predicted"] in ("0", "1", "7")


def test_dann_with_an_unlabelled_target_and_its_source_only_baseline(tmp_path):
    source = make_digit_folder(tmp_path / "mnist", classes=(0, 1), per_class=20)
    target = sklearn_digit_folder(tmp_path / "sk", classes=(0, 1), per_class=20, labelled=False)
    events: list[dict] = []
    p = small(quick_project(source, technique="dann", epochs=1), measure_shift=False)
    p.data.target_source = str(target)
    res = train(p, on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    assert "test_target_accuracy" not in res  # no labels: nothing to measure, nothing invented
    assert any("no labels" in e.get("message", "") for e in events if e["kind"] == "log")
    # adversarial off: the source-only baseline (no discriminator in the optimizer)
    events.clear()
    base = small(quick_project(source, technique="dann", epochs=1), adversarial=False, measure_shift=False)
    base.data.target_source = str(target)
    res = train(base, on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    assert "discriminator" not in epochs(events)[0]["lr"] and "domain_loss" not in epochs(events)[0]["series"]
    # no target at all: a clear message, not a crash
    none = small(quick_project(source, technique="dann", epochs=1))
    res = train(none, runs_dir=tmp_path / "runs")
    assert res["status"] == "failed" and "target-domain" in res["message"]


def test_run_from_an_earlier_run_reports_forgetting_with_and_without_ewc(tmp_path, capsys):
    runs = tmp_path / "runs"
    task_a = make_digit_folder(tmp_path / "a", classes=(0, 1), per_class=20)
    task_b = make_digit_folder(tmp_path / "b", classes=(7, 8), per_class=20)
    first = train(small(quick_project(task_a, epochs=2, lr=2e-3)), runs_dir=runs)
    assert first["status"] == "done", first

    def second(technique, **settings):
        rc = main(["train", "--data", str(task_b), "--technique", technique, "--from-run", first["run_id"],
                   "--runs-dir", str(runs), "--epochs", "2", "--lr", "3e-3", "--device", "cpu", "--json",
                   "--set", "augmentation.preset='none'", "--set", "data.split.mode='stratified'",
                   *[a for k, v in settings.items() for a in ("--set", f"technique.settings.{k}={v}")]])
        assert rc == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    plain = second("fine-tuning")
    ewc = second("ewc", strength=1e4, fisher_samples=40)
    for res in (plain, ewc):
        src = res["source_task"]
        # the earlier run's model and test set came along: its accuracy before equals that run's own
        assert src["run_id"] == first["run_id"] and src["split"] == "test" and src["n"] == 6
        assert res["source_accuracy_before"] == pytest.approx(first["test_accuracy"])
        assert res["forgetting_points"] == pytest.approx(100 * (res["source_accuracy_before"] - res["source_accuracy_after"]))
        assert 0 <= res["test_accuracy"] <= 1  # the new task (7 vs 8)
        d = Run(res["run_dir"]).dir
        inherited = json.loads((d / "from_run.json").read_text())
        assert inherited["run_id"] == first["run_id"] and inherited["class_names"] == ["0", "1"]
        assert json.loads((d / "source_split.json").read_text()) == json.loads((Run(first["run_dir"]).dir / "split.json").read_text())
        project = Run(res["run_dir"]).project()
        assert project.model.from_run == str(Run(first["run_dir"]).dir.resolve()) and project.model.image_size == 32
    assert ewc["test"]["n"] and (Run(ewc["run_dir"]).dir / "evaluation_source_task.json").exists()
    assert "## The earlier task" in (Run(ewc["run_dir"]).dir / "report.md").read_text()
    # EWC's spring held the weights that mattered for 0-vs-1 closer to their old values
    import torch

    old = torch.load(Run(first["run_dir"]).best_checkpoint, weights_only=True)["model"]

    def moved(res):
        new = torch.load(Run(res["run_dir"]).best_checkpoint, weights_only=True)["model"]
        return sum(float((new[k].float() - old[k].float()).pow(2).sum()) for k in old
                   if k.startswith("backbone.") and new[k].is_floating_point() and "running" not in k)

    assert moved(ewc) < moved(plain)
    # EWC without an earlier run: a clear message
    rc = main(["train", "--data", str(task_b), "--technique", "ewc", "--runs-dir", str(runs), "--epochs", "1",
               "--device", "cpu", "--json"])
    assert rc == 1 and "earlier run" in capsys.readouterr().err


def test_negative_transfer_check_flags_images_that_carry_no_class_information(tmp_path, capsys):
    """A constructed case where pretrained features cannot help: every image is the same
    pixel-shuffled digit, so nothing in the pixels tells the classes apart.  (Shuffling the
    pixels of real digits is not enough: ImageNet features still beat chance on them.)"""
    from PIL import Image

    X, _ = mnist_arrays()
    rng = np.random.default_rng(0)
    shuffled = X[0].reshape(-1)[rng.permutation(784)].reshape(28, 28)
    for c in ("a", "b"):
        (tmp_path / "noinfo" / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(shuffled, "L").save(tmp_path / "noinfo" / c / f"{c}{i}.png")
    rc = main(["train", "--data", str(tmp_path / "noinfo"), "--technique", "frozen-features", "--model", "mobilenet_v2",
               "--image-size", "32", "--epochs", "3", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
               "--compare-scratch", "--compare-seeds", "2", "--json", "--set", "data.split.mode='stratified'"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["negative_transfer"] is True and "WARNING" in out["verdict"]
    assert len(out["transfer"]["values"]) == len(out["scratch"]["values"]) == 2
    assert out["scratch"]["mean"] >= out["transfer"]["mean"] and out["transfer"]["ci95"][0] is not None
    # same data, split and budget; scratch from random weights
    runs = [Run(d) for d in out["transfer"]["run_dirs"] + out["scratch"]["run_dirs"]]
    splits = {json.dumps(json.loads((r.dir / "split.json").read_text())["refs"], sort_keys=True) for r in runs}
    assert len(splits) == 1
    assert {r.project().model.weights for r in runs[2:]} == {"none"}
    assert {r.project().model.weights for r in runs[:2]} == {"imagenet"}
    assert {r.project().training.epochs for r in runs} == {3}
    # the human-readable form says it plainly
    rc = main(["train", "--data", str(tmp_path / "noinfo"), "--technique", "frozen-features", "--image-size", "32",
               "--epochs", "1", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--compare-scratch",
               "--compare-seeds", "1", "--set", "data.split.mode='stratified'"])
    text = capsys.readouterr().out
    assert rc == 0 and "negative transfer" in text and "scratch" in text


def test_shift_command_prints_mmd_and_p_value(tmp_path, capsys):
    mnist_a = make_digit_folder(tmp_path / "mnist_a", classes=(0, 1, 7), per_class=25)
    mnist_b = make_digit_folder(tmp_path / "mnist_b", classes=(0, 1, 7), per_class=25, offset=25)
    sk = sklearn_digit_folder(tmp_path / "sk", per_class=25)
    common = ["--model", "mobilenet_v2", "--image-size", "32", "--permutations", "200", "--json"]
    assert main(["shift", str(mnist_a), str(sk), *common]) == 0
    shifted = json.loads(capsys.readouterr().out)
    assert main(["shift", str(mnist_a), str(mnist_b), *common, "--embedding-csv", str(tmp_path / "emb.csv")]) == 0
    same = json.loads(capsys.readouterr().out)
    assert shifted["p_value"] < 0.05 and shifted["shifted"] is True
    assert same["p_value"] > 0.05 and same["shifted"] is False
    assert shifted["mmd2"] > 5 * max(same["mmd2"], 1e-4)
    assert shifted["n_source"] == shifted["n_target"] == 75 and "MMD²" in shifted["explanation"]
    rows = (tmp_path / "emb.csv").read_text().splitlines()
    assert rows[0] == "x,y,domain,label" and len(rows) == 151 and rows[-1].split(",")[2] == "target"
    assert main(["shift", str(mnist_a), str(sk), "--image-size", "32", "--permutations", "100"]) == 0
    text = capsys.readouterr().out
    assert "p-value" in text and "real domain shift" in text
    assert main(["shift", str(mnist_a), str(tmp_path / "missing"), "--image-size", "32"]) == 1
    assert "no such file" in capsys.readouterr().err
