"""Two machines on one: two torchrun agents meet on 127.0.0.1 (c10d rendezvous, gloo) and
train one run with the project's global batch; the run then resumes on one machine."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import make_digit_folder, quick_project

from tlstudio.core.engine import resume
from tlstudio.core.errors import StudioError
from tlstudio.core.engine.nodes import Nodes
from tlstudio.core.runs import Run

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_node_settings_are_refused_with_a_reason():
    with pytest.raises(StudioError, match="HOST:PORT"):
        Nodes(2, 0, "node0").check()
    with pytest.raises(StudioError, match="between 0 and 1"):
        Nodes(2, 2, "node0:29500").check()
    flags = Nodes(2, 1, "node0:29500", rdzv_id="job").torchrun_flags(["train", "p.toml"])
    assert flags[flags.index("--rdzv-conf") + 1] == "is_host=0" and "--node-rank" not in flags
    static = Nodes(2, 1, "node0:29500", backend="static").torchrun_flags(["train"])
    assert static[static.index("--node-rank") + 1] == "1" and static[static.index("--master-addr") + 1] == "node0"


@pytest.mark.slow
def test_two_nodes_train_one_run_with_the_global_batch_and_it_resumes_on_one(tmp_path):
    data = make_digit_folder(tmp_path / "digits", classes=(0, 1, 7), per_class=30)
    project = quick_project(data, epochs=1, batch_size=16, lr=2e-3)
    path = tmp_path / "proj" / "project.toml"
    project.save(path)
    runs = tmp_path / "runs"  # one folder both "machines" see (a shared folder)
    endpoint = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    agents = [subprocess.Popen([sys.executable, "-m", "tlstudio.cli", "train", str(path), "--runs-dir", str(runs),
                                "--nnodes", "2", "--node-rank", str(r), "--rdzv-endpoint", endpoint, "--nproc", "1",
                                "--rdzv-id", "two-node-test", "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [a.communicate(timeout=900) for a in agents]
    for a, (out, err) in zip(agents, outs):
        assert a.returncode == 0, err[-3000:]
    finals = [json.loads(out) for out, _ in outs]
    assert finals[0]["run_dir"] == finals[1]["run_dir"] and {f["status"] for f in finals} == {"done"}

    folders = [d for d in runs.iterdir() if d.is_dir()]
    assert len(folders) == 1  # one run, written by global rank 0
    run = Run(folders[0])
    assert run.status() == "done" and str(run.dir) == finals[0]["run_dir"]
    env_json = run.env()
    assert env_json["processes"] == 2 and env_json["nodes"] == 2 and env_json["batch_per_process"] == 8
    ev = run.events()
    assert [e["kind"] for e in ev].count("start") == 1 and [e["processes"] for e in ev if e["kind"] == "start"] == [2]
    # the global batch: 16 images per step over both machines, as one process would take them
    n_train = sum(json.loads((run.dir / "data.json").read_text())["split_counts"]["train"].values())
    steps = math.ceil(n_train / 16)
    last = torch.load(run.last_checkpoint, weights_only=True)
    assert last["world_size"] == 2 and last["step"] == steps
    assert {e["batches"] for e in ev if e["kind"] == "batch"} == {steps}

    res = resume(run.dir, epochs=2)  # the same run continues on one machine, one process
    assert res["status"] == "done" and [e["epoch"] for e in run.epochs()] == [1, 2]
    assert "trained with 2 process(es) on 1" in " ".join(e["message"] for e in run.events({"log"}))
    assert torch.load(run.last_checkpoint, weights_only=True)["world_size"] == 1
