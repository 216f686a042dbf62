"""Several processes, one run: torchrun with gloo on the CPU (real processes, real digits,
real ImageNet weights), Stop from outside, resume with another number of processes, and the
engine's answer to running out of device memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_digit_folder, quick_project

from tlstudio.api import hookimpl
from tlstudio.core.engine import resume, train
from tlstudio.core.runs import Run
from tlstudio_plugins.finetune import FineTuning

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

# what a finished run folder holds, written by rank 0 alone (nothing per process)
RUN_FILES = {"project.toml", "env.json", "metrics.jsonl", "status.json", "split.json", "data.json", "final.json",
             "report.md", "test_predictions.csv", "evaluation_test.json", "checkpoints",
             # the decision fitted on validation (calibration, operating point, prediction sets)
             "decision.json", "evaluation_val.json", "val_predictions.csv"}


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "tlstudio.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def project_file(tmp_path: Path, epochs: int):
    data = make_digit_folder(tmp_path / "digits", classes=(0, 1, 7), per_class=60)
    p = quick_project(data, epochs=epochs, batch_size=16, lr=2e-3)
    path = tmp_path / "proj" / "project.toml"
    p.save(path)
    return p, path


@pytest.mark.slow
def test_two_processes_train_like_one_into_one_coherent_run(tmp_path):
    project, path = project_file(tmp_path, epochs=2)

    one = train(project, runs_dir=tmp_path / "one")
    assert one["status"] == "done", one

    runs = tmp_path / "two"
    res = cli("train", str(path), "--runs-dir", str(runs), "--nproc", "2", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    two = json.loads(res.stdout)
    assert two["status"] == "done" and two["processes"] == 2

    # the same recipe on two processes learns as well as on one (27 test images: within noise)
    assert one["test_accuracy"] > 0.7 and two["test_accuracy"] > 0.7
    assert abs(one["test_accuracy"] - two["test_accuracy"]) <= 0.15, (one["test_accuracy"], two["test_accuracy"])
    assert abs(one["test_auc"] - two["test_auc"]) <= 0.1

    # one run folder, one status, each epoch once, rank-0-only files
    folders = [d for d in runs.iterdir() if d.is_dir()]
    assert len(folders) == 1
    run = Run(folders[0])
    assert str(run.dir) == two["run_dir"]
    assert run.status() == "done"
    assert {p.name for p in run.dir.iterdir()} == RUN_FILES
    assert {p.name for p in (run.dir / "checkpoints").iterdir()} == {"last.pt", "prev.pt", "best.pt"}  # prev.pt: the one before last
    ev = run.events()
    kinds = [e["kind"] for e in ev]
    assert kinds.count("start") == 1 and kinds.count("done") == 1 and kinds[-1] == "done"
    assert [e["epoch"] for e in ev if e["kind"] == "epoch"] == [1, 2]
    assert all(e["processes"] == 2 for e in ev if e["kind"] == "start")
    env = run.env()
    assert env["processes"] == 2 and env["backend"] == "gloo"
    # the checkpoint holds the plain model (no DDP "module." prefix), with the process count
    last = torch.load(run.last_checkpoint, weights_only=True)
    assert last["world_size"] == 2 and not any(k.startswith("module.") for k in last["model"])
    # the same split as the single-process run
    assert json.loads((run.dir / "split.json").read_text()) == json.loads(
        (Path(one["run_dir"]) / "split.json").read_text())



@pytest.mark.slow
def test_stop_request_stops_a_torchrun_job_which_resumes_in_one_process(tmp_path):
    """The window's way: start the job as a subprocess, follow metrics.jsonl, press Stop;
    then resume the two-process run in one process."""
    from tlstudio.core.engine.distributed import RunProcess

    project, path = project_file(tmp_path, epochs=3)
    log = open(tmp_path / "job.log", "w+")
    job = RunProcess.start(path, nproc=2, runs_dir=tmp_path / "runs", stdout=subprocess.DEVNULL, stderr=log)
    run = job.run
    assert run.dir.is_dir()  # known before the job has started
    deadline = time.time() + 500
    seen_epoch = False
    followed: list[dict] = []
    while time.time() < deadline and job.running():
        followed += job.new_events()  # what the window's timer does
        if any(e["kind"] == "epoch" for e in followed):
            seen_epoch = True
            job.stop()
            break
        time.sleep(0.2)
    assert seen_epoch, (tmp_path / "job.log").read_text()[-3000:]
    assert job.wait(timeout=300) == 3, (tmp_path / "job.log").read_text()[-3000:]  # the command line's "stopped"
    log.close()
    assert run.status() == "stopped" and run.resumable()
    ev = run.events()
    assert [e["kind"] for e in ev].count("stopped") == 1 and ev[-1]["kind"] == "stopped"
    assert followed + job.new_events() == ev  # followed piece by piece: every event, once
    done_epochs = [e["epoch"] for e in run.epochs()]
    assert done_epochs and done_epochs[0] == 1 and len(done_epochs) < 3
    assert not (run.dir / "stop.request").exists()  # carried out, so a resume does not stop at once

    res = resume(run.dir)  # one process now
    assert res["status"] == "done", res
    assert [e["epoch"] for e in run.epochs()] == [1, 2, 3]
    logs = " ".join(e["message"] for e in run.events({"log"}))
    assert "trained with 2 process(es) on 1" in logs
    last = torch.load(run.last_checkpoint, weights_only=True)
    assert last["world_size"] == 1 and last["epoch"] == 3
    assert res["test_accuracy"] > 0.7


class SmallDevice(FineTuning):
    """Fine-tuning on a device with room for 8 images at a time: a larger batch raises the
    error PyTorch raises when the GPU's memory is full."""

    id = "small-device"

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def fresh(self):
        return self

    def training_step(self, ctx, batch):
        x, y = batch
        self.sizes.append(len(x))
        if len(x) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return super().training_step(ctx, batch)


class _SmallDevicePlugin:
    def __init__(self, technique):
        self.technique = technique

    @hookimpl
    def tlstudio_techniques(self):
        return [self.technique]


def test_out_of_memory_halves_the_images_at_a_time_and_carries_on(tmp_path, tiny_digits):
    from tlstudio.core.plugins import PluginManager

    small = SmallDevice()
    pm = PluginManager()
    pm.register(_SmallDevicePlugin(small), "small-device")
    events: list[dict] = []
    p = quick_project(tiny_digits, technique="small-device", epochs=2, batch_size=16)
    p.model.image_size = 48
    p.technique.settings = {"mixup": 0.0, "average_last": 0, "lr_decay": 0.5, "l2sp": 0.0}  # the plain recipe
    p.augmentation.horizontal_flip = False  # digits have a side: no mirror images, in training or at test time
    res = train(p, on_event=events.append, runs_dir=tmp_path / "runs", plugins=pm)
    assert res["status"] == "done", res
    warn = [e for e in events if e["kind"] == "log" and e.get("oom")]
    assert len(warn) == 1  # said once, then it carries on at the smaller size
    assert "Out of GPU memory with 16 images at a time: continuing with 8" in warn[0]["message"]
    assert 16 in small.sizes and max(small.sizes[small.sizes.index(16) + 1:]) <= 8
    run = Run(res["run_dir"])
    assert [e["epoch"] for e in run.epochs()] == [1, 2]
    last = torch.load(run.last_checkpoint, weights_only=True)
    assert last["micro_batch"] == 8
    # gradient accumulation keeps the batch: as many optimizer steps as batches of 16
    steps = [e for e in events if e["kind"] == "batch"]
    assert last["step"] == steps[-1]["step"] == 2 * steps[-1]["batches"]
    assert res["test_accuracy"] > 0.5


def test_loader_workers_auto_and_persistent(tmp_path, tiny_digits):
    """"auto" loader workers: none on the CPU; a set number runs with workers kept between epochs."""
    from tlstudio.core.config import TrainingConfig

    assert TrainingConfig.model_validate({"num_workers": "auto"}).num_workers == -1
    p = quick_project(tiny_digits, epochs=2, num_workers=2)
    p.model.image_size = 32
    res = train(p, runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    ep = Run(res["run_dir"]).epochs()
    assert len(ep) == 2 and all(0.0 <= e["data_wait_share"] <= 1.0 for e in ep)
