"""A run killed with SIGKILL resumes, and in deterministic mode on CPU it ends with the
same weights as a run that was never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_digit_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def cli(*args: str, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "tlstudio.cli", *args], env=env, capture_output=True, text=True, **kw)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    data = make_digit_folder(tmp_path / "digits", classes=(2, 5), per_class=60)
    # every layer training at 64 px: each epoch lasts seconds, so the kill lands inside a run
    common = ["--data", str(data), "--model", "mobilenet_v2", "--technique", "fine-tuning", "--image-size", "64",
              "--epochs", "4", "--batch-size", "8", "--device", "cpu", "--deterministic", "--threads", "2", "--json"]
    env = dict(os.environ)

    # the uninterrupted reference
    ref = cli("train", *common, "--runs-dir", str(tmp_path / "ref"), env=env)
    assert ref.returncode == 0, ref.stderr
    ref_dir = Path(json.loads(ref.stdout)["run_dir"])

    # the same run, killed in the middle of its third epoch
    runs = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tlstudio.cli", "train", *common, "--runs-dir", str(runs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline:
        found = list(runs.glob("*/metrics.jsonl"))
        if found:
            run_dir = found[0].parent
            lines = [json.loads(x) for x in found[0].read_text().splitlines() if x.strip()]
            # in epoch 3: one of its batches was logged (at most one a second), or epoch 2 is over
            if any((e["kind"] == "batch" and e["epoch"] == 3) or (e["kind"] == "epoch" and e["epoch"] == 2)
                   for e in lines):
                break
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    st = cli("runs", "--runs-dir", str(runs), "--json", env=env)
    assert json.loads(st.stdout)[0]["status"] == "interrupted"

    res = cli("train", "--resume", str(run_dir), "--json", env=env)
    assert res.returncode == 0, res.stderr
    final = json.loads(res.stdout)
    assert final["status"] == "done"

    a = torch.load(ref_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff == 0.0, f"resumed weights differ by {diff}"
    ref_final = json.loads((ref_dir / "final.json").read_text())
    assert final["test_accuracy"] == ref_final["test_accuracy"]
