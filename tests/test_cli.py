"""The command line as a user types it."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import SAMPLE_PROJECT


def cli(*args: str, check: bool = True):
    r = subprocess.run([sys.executable, "-m", "tlstudio.cli", *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_models_lists_ready_weights_and_how_to_add():
    rows = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)}
    assert rows["mobilenet_v2"]["ready"] and "mobilenet_v2-b0353104.pth" in rows["mobilenet_v2"]["path"]
    assert rows["efficientnet_lite0"]["ready"]
    assert not rows["resnet152"]["ready"] and rows["resnet152"]["how_to_add"]
    text = cli("models").stdout
    assert "ready" in text and "models ready" in text


def test_validate_data_reports_skipped_files(tiny_digits):
    (tiny_digits / "0" / "notes.png").write_text("hello")
    rep = json.loads(cli("validate-data", str(tiny_digits), "--json").stdout)
    assert rep["counts"] == {"0": 40, "1": 40, "7": 40}
    assert any("notes.png" in s["ref"] for s in rep["skipped"])
    text = cli("validate-data", str(tiny_digits)).stdout
    assert "notes.png" in text and "120" in text
    r = cli("validate-data", str(tiny_digits), "--task", "segmentation", check=False)  # no such task installed
    assert r.returncode == 2 and "segmentation" in r.stderr and "image-classification" in r.stderr


def test_train_json_predict_and_runs(tmp_path, tiny_digits):
    runs = tmp_path / "runs"
    r = cli("train", "--data", str(tiny_digits), "--model", "mobilenet_v2", "--technique", "fine-tuning",
            "--epochs", "2", "--image-size", "64", "--seed", "3", "--device", "cpu", "--runs-dir", str(runs),
            "--set", "training.lr=0.002", "--json")
    out = json.loads(r.stdout)
    for key in ("test_accuracy", "test_auc", "test_balanced_accuracy", "train_seconds", "run_dir"):
        assert key in out, key
    assert out["status"] == "done"
    imgs = [str(next((tiny_digits / c).glob("*.png"))) for c in ("0", "1")]
    pred = cli("predict", out["run_dir"], *imgs, "--csv", str(tmp_path / "p.csv"), "--json")
    assert [p["ref"] for p in json.loads(pred.stdout)] == imgs
    assert (tmp_path / "p.csv").read_text().startswith("input,predicted")
    listed = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout)
    assert listed[0]["status"] == "done" and listed[0]["technique"] == "fine-tuning"
    # the run's own project file repeats the run
    again = cli("train", f"{out['run_dir']}/project.toml", "--epochs", "1", "--runs-dir", str(runs), "--json")
    assert json.loads(again.stdout)["status"] == "done"


def test_bad_project_file_exits_with_the_field(tmp_path):
    f = tmp_path / "project.toml"
    f.write_text('[training]\nbatch_size = "big"\n')
    r = cli("train", str(f), check=False)
    assert r.returncode == 1 and "training.batch_size" in r.stderr and str(f) in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_technique_is_named(tmp_path, tiny_digits):
    r = cli("train", "--data", str(tiny_digits), "--technique", "telepathy", "--runs-dir", str(tmp_path), "--json",
            check=False)
    assert r.returncode == 1 and "telepathy" in r.stderr and "fine-tuning" in r.stderr


def test_sample_project_is_valid():
    from tlstudio.core.config import load_project

    p = load_project(SAMPLE_PROJECT)
    assert p.resolve(p.data.source).is_dir() and p.resolve(p.data.split.file).exists()
