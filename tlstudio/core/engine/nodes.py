"""More than one machine: ``tlstudio train ... --nnodes N --node-rank R --rdzv-endpoint HOST:PORT``.

The same command runs on every machine (node).  Each one starts torchrun's own multi-node
launch, re-invoking the tlstudio command line in ``--nproc`` processes per node::

    python -m torch.distributed.run --nnodes N --nproc-per-node P \\
        --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID --rdzv-conf is_host=<R == 0> \\
        --max-restarts K -m tlstudio.cli train <the same arguments>

- **c10d rendezvous** (the default): node 0 hosts the rendezvous store at HOST:PORT (HOST is
  node 0's address); torchrun assigns the global ranks when the nodes meet (global rank 0 is
  on whichever node comes first in torchrun's order).  ``--rdzv-backend static`` instead uses
  ``--node-rank`` as the node's rank, HOST:PORT as the master address, and puts global rank 0
  on node 0.
- **one coherent run**: global rank 0 writes the run folder (``--into-run DIR`` on a folder
  every node sees, else a new folder in rank 0's runs folder); it tells every process the
  folder, and each node's launcher prints it (and the results, where the folder is visible).
- **resume with another number of nodes or processes**: checkpoints hold the plain model and
  the number of processes (see :mod:`tlstudio.core.engine.distributed`); ``--resume RUN`` needs the
  run folder at the same path on every node (a shared folder).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import StudioError
from ..io import stable_hash

HANDOFF_ENV = "TLSTUDIO_RUN_HANDOFF"  # a file where local rank 0 writes the run folder for its launcher

NODE_FLAGS = {"--nproc": True, "--nnodes": True, "--node-rank": True, "--rdzv-endpoint": True, "--rdzv-id": True,
              "--rdzv-backend": True, "--max-restarts": True, "--json": False}


@dataclass
class Nodes:
    """How this machine joins a multi-node job."""

    nnodes: int
    node_rank: int
    endpoint: str
    rdzv_id: str = ""
    backend: str = "c10d"
    max_restarts: int = 0

    def check(self) -> None:
        if self.nnodes < 2:
            raise StudioError(f"--nnodes must be at least 2 for a multi-node job (got {self.nnodes}).")
        if not 0 <= self.node_rank < self.nnodes:
            raise StudioError(f"--node-rank must be between 0 and {self.nnodes - 1} (got {self.node_rank}).")
        host, _, port = (self.endpoint or "").rpartition(":")
        if not host or not port.isdigit():
            raise StudioError(f"--rdzv-endpoint must be HOST:PORT, the address of node 0 and a free port "
                              f"(got {self.endpoint!r}).")
        if self.backend not in ("c10d", "static"):
            raise StudioError(f"--rdzv-backend must be c10d or static (got {self.backend!r}).")

    def torchrun_flags(self, worker_args: Sequence[str]) -> list[str]:
        host, _, port = self.endpoint.rpartition(":")
        # the same id on every node when they run the same command (a new command: a new job)
        rid = self.rdzv_id or "tlstudio-" + stable_hash(self.endpoint, self.nnodes, list(worker_args))
        if self.backend == "static":
            return ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank), "--rdzv-backend", "static",
                    "--master-addr", host, "--master-port", port, "--rdzv-id", rid]
        return ["--nnodes", str(self.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", self.endpoint,
                "--rdzv-id", rid, "--rdzv-conf", f"is_host={'1' if self.node_rank == 0 else '0'}"]


def torchrun_command(nodes: Nodes, nproc: int, worker_args: Sequence[str], python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "torch.distributed.run", *nodes.torchrun_flags(worker_args),
            "--nproc-per-node", str(int(nproc)), "--max-restarts", str(int(nodes.max_restarts)),
            "-m", "tlstudio.cli", *worker_args]


def processes_per_node(device_pref: str, nproc: int | None) -> int:
    """``--nproc``, else one per GPU on this node (or one CPU process)."""
    if nproc:
        return int(nproc)
    import torch

    pref = (device_pref or "auto").lower()
    if pref.startswith("cuda") or (pref == "auto" and torch.cuda.is_available()):
        return max(1, torch.cuda.device_count())
    return 1


def hand_over_run_dir(dist, run_dir: str | None) -> str | None:
    """Every process learns global rank 0's run folder; local rank 0 of each node writes it for
    its launcher (``TLSTUDIO_RUN_HANDOFF``)."""
    run_dir = dist.broadcast(run_dir)
    target = os.environ.get(HANDOFF_ENV)
    if target and dist.local_rank == 0 and run_dir:
        try:
            Path(target).write_text(run_dir, encoding="utf-8")
        except OSError:
            pass
    return run_dir


def launch_nodes(nodes: Nodes, nproc: int, worker_args: Sequence[str], env: dict, *, stdout=None, say=None) -> dict:
    """Run this node's share of the job (``env``: the workers' environment, see
    distributed.worker_env) and wait; the run's final summary where its folder is visible
    here, else {"status", "run_dir", "message"} from this node's view."""
    from ..runs import DONE, RUNNING, Run

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    nodes.check()
    fd, handoff = tempfile.mkstemp(prefix="tlstudio-run-", suffix=".txt")
    os.close(fd)
    env = dict(env) | {HANDOFF_ENV: handoff}
    cmd = torchrun_command(nodes, nproc, worker_args)
    say(f"Node {nodes.node_rank} of {nodes.nnodes}: {nproc} process(es), meeting the other nodes at {nodes.endpoint} ...")
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, start_new_session=True)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            rc = proc.wait()
        run_dir = Path(handoff).read_text(encoding="utf-8").strip() or None
    finally:
        Path(handoff).unlink(missing_ok=True)
    if run_dir and (Path(run_dir) / "status.json").exists():
        run = Run(run_dir)
        info = run.status_info()
        if info.get("status") == DONE:
            return run.final() | {"status": DONE, "node_rank": nodes.node_rank}
        if info.get("status") != RUNNING:
            return {"status": info.get("status"), "message": info.get("message", ""), "run_dir": run_dir}
    where = f"the run folder {run_dir} is written by global rank 0, on another machine" if run_dir else \
        "the nodes did not get as far as creating the run folder"
    status = "done" if rc == 0 else "failed"
    return {"status": status, "run_dir": run_dir, "node_rank": nodes.node_rank,
            "message": f"this node's processes ended with status {rc}; {where}"}
