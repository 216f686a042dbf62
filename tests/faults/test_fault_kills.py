"""A run killed (SIGKILL) at any point — while reading its data, while building the image
cache, in the middle of an epoch, while writing a checkpoint, during the final evaluation —
is listed as interrupted with its technique and model, resumes with `--resume`, and ends
with weights identical to those of a run that was never interrupted (deterministic, CPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faultlib import FAULTS, assert_plain, cli_process, env_with

from conftest import make_digit_folder

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]

ARGS = ["--model", "mobilenet_v2", "--technique", "fine-tuning", "--image-size", "32", "--epochs", "2",
        "--batch-size", "8", "--device", "cpu", "--deterministic", "--threads", "2", "--seed", "4", "--json"]

# point, N (see killpoint.py), what the interrupted run must hold on disk
POINTS = [
    ("read", 20, "project.toml"),
    ("cache", 20, "project.toml"),
    ("epoch", 2, "checkpoints/last.pt"),
    ("checkpoint", 2, "checkpoints/last.pt"),
    ("rotate", 1, "checkpoints/last.pt"),
    ("final", 1, "checkpoints/best.pt"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_digit_folder(tmp_path_factory.mktemp("killdata") / "digits", classes=(2, 5), per_class=24)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> dict:
    home = tmp_path_factory.mktemp("refhome")
    o = cli_process("train", "--data", data, *ARGS, "--runs-dir", home / "runs", env=env_with(TLSTUDIO_HOME=home))
    assert o.code == 0, o.err[-3000:]
    return o.json()


def weights(run_dir: Path) -> dict:
    return torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("point, n, kept", POINTS, ids=[p[0] for p in POINTS])
def test_killed_at_any_point_resumes_to_identical_weights(tmp_path, data, reference, point, n, kept):
    home = tmp_path / "home"
    env = env_with(TLSTUDIO_HOME=home)
    runs = home / "runs"
    killed = subprocess.run([sys.executable, str(FAULTS / "killpoint.py"), point, str(n), "train", "--data", str(data),
                             *ARGS, "--runs-dir", str(runs)], env=env, capture_output=True, text=True, timeout=900)
    assert killed.returncode == -9, f"not killed at {point}: {killed.returncode}\n{killed.stderr[-2000:]}"
    [run] = [d for d in runs.iterdir() if d.is_dir()]
    assert (run / "project.toml").is_file() and (run / kept).exists(), sorted(p.name for p in run.rglob("*"))

    listed = cli_process("runs", "--runs-dir", runs, "--json", env=env)
    row = json.loads(listed.out)[0]
    assert (row["status"], row["technique"], row["model"]) == ("interrupted", "fine-tuning", "mobilenet_v2")

    res = cli_process("train", "--resume", run, "--json", env=env)
    assert_plain(res)
    assert res.code == 0, res.err[-3000:]
    final = res.json()
    assert final["status"] == "done"
    a, b = weights(reference["run_dir"]), weights(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"resumed weights differ after a kill at {point}"
    assert final["test_accuracy"] == reference["test_accuracy"]
    assert not list((run / "checkpoints").glob(".*.tmp"))  # a half-written checkpoint was cleared away
