"""Several processes, one run: training on torch.distributed, launched by ``torchrun``.

``tlstudio train ... --nproc N`` starts ``python -m torch.distributed.run --standalone
--nproc-per-node N -m tlstudio.cli train ... --into-run RUN`` (see :func:`launch`): N
processes, one per GPU (NCCL) or N CPU processes (gloo), each running the ordinary engine,
which sees the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and then

- wraps the model in DistributedDataParallel for the training loop only (hooks, evaluation
  and checkpoints see the plain model, so a checkpoint holds the unwrapped weights and a
  run resumes with any number of processes);
- shards the training loader with a DistributedSampler seeded per epoch; the project's
  batch size is the *global* batch (each of N processes takes batch/N), so the recipe and
  the results do not depend on the number of processes;
- lets rank 0 alone prepare data first (image and feature caches, split), evaluate,
  checkpoint, log, and write the run store: the run folder is one coherent run;
- agrees on Stop at every training batch (rank 0 reads the run folder's stop request,
  :func:`request_stop`, and every rank learns it through a tiny all-reduce), so that all
  processes stop at the same batch and the run can be resumed.

Multi-node: run the same worker command with torchrun on every node (docs/distributed.md).

The window (or any program) runs such a job as a subprocess and follows it through the run
folder; :class:`RunProcess` wraps that: it creates the run folder first (so the folder is
known at once), starts the command, and offers ``stop()``.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .control import RunControl

STOP_FILE = "stop.request"      # written by request_stop(); rank 0 (or the single process) stops
OOM_FILE = "oom.json"           # a process ran out of GPU memory: the launcher restarts smaller
MAX_OOM_RESTARTS = 6
EXIT_OOM = 75                   # a worker's exit status after out-of-memory (os.EX_TEMPFAIL)


# --- the torchrun environment -------------------------------------------------------------
def in_torchrun() -> bool:
    """True inside a process started by torchrun (or anything that sets its variables)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0) if in_torchrun() else 0


def is_main_process() -> bool:
    """Rank 0 (or not distributed at all): the process that writes, prints and logs."""
    return env_rank() == 0


def restart_count() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


class Distributed:
    """The process group of one distributed run, and the few collectives the engine needs.

    ``group`` (the default group: NCCL on GPUs, gloo on CPU) carries the gradients (DDP);
    ``control`` is always a gloo group on the CPU with a long timeout: it carries the small
    agreements (stop, validation results, checkpoints) and the waits for rank 0's solo work
    (data preparation, evaluation), so no GPU stream is ever synchronised for them.
    """

    def __init__(self, rank: int, world: int, local_rank: int, local_world: int, device, backend: str, control):
        self.rank, self.world, self.local_rank, self.local_world = rank, world, local_rank, local_world
        self.device, self.backend, self.control = device, backend, control
        self._ddp = None
        self._ddp_key: tuple = ()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device_pref: str = "auto") -> "Distributed":
        """Join the job torchrun started; the device follows LOCAL_RANK on GPUs."""
        import torch
        import torch.distributed as dist

        from ..errors import StudioError

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        pref = (device_pref or "auto").lower()
        use_cuda = pref.startswith("cuda") or (pref == "auto" and torch.cuda.is_available())
        if use_cuda:
            if not torch.cuda.is_available():
                raise StudioError(f"Device '{device_pref}' was asked for, but no CUDA GPU is available here: "
                                  "choose cpu or auto.")
            n = torch.cuda.device_count()
            if local_rank >= n:
                raise StudioError(f"{local_world} processes per machine were asked for, but this machine has "
                                  f"{n} GPU(s): start at most {n} (one per GPU).")
            torch.cuda.set_device(local_rank)
            device, backend = torch.device("cuda", local_rank), "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            kw: dict[str, Any] = {"backend": backend, "timeout": _dt.timedelta(minutes=30)}
            if backend == "nccl":
                kw["device_id"] = device
            dist.init_process_group(**kw)
        control = dist.new_group(backend="gloo", timeout=_dt.timedelta(hours=12))
        return cls(rank, world, local_rank, local_world, device, backend, control)

    def close(self) -> None:
        import torch.distributed as dist

        self._ddp = None
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - leaving anyway
                pass

    # --- agreements (CPU, gloo) -----------------------------------------------------------
    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def min(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        t = torch.tensor([int(value)], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.control)
        return int(t.item())

    def sum(self, values: Sequence[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.control)
        return t.tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects, tensors on the CPU)."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    # --- gradients -----------------------------------------------------------------------
    def wrap(self, model, technique):
        """``model`` in DistributedDataParallel (cached; wrapped anew when the set of
        trainable parameters changes, for example by progressive unfreezing)."""
        key = tuple(id(p) for p in model.parameters() if p.requires_grad)
        if not key:
            return model  # nothing learns: nothing to synchronise
        if self._ddp is None or self._ddp.module is not model or key != self._ddp_key:
            self._ddp = _DDP(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(technique, "ddp_find_unused_parameters", False)),
            )
            self._ddp_key = key
        return self._ddp

    def average_gradients(self, params) -> None:
        """All-reduce (mean) the gradients of ``params`` in one flat buffer: used when a
        technique's training step did not call the DDP-wrapped model (``ctx.model.head(f)``)."""
        import torch
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        params = [p for p in params if p.requires_grad]
        if not params:
            return
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        by_dtype: dict = {}
        for g in grads:
            by_dtype.setdefault(g.dtype, []).append(g)
        for gs in by_dtype.values():
            flat = _flatten_dense_tensors(gs)
            dist.all_reduce(flat, group=None)
            flat /= self.world
            for g, f in zip(gs, _unflatten_dense_tensors(flat, gs)):
                g.copy_(f)


class OutOfMemoryRestart(Exception):
    """A process of a distributed job ran out of GPU memory; the launcher restarts the job
    from its last checkpoint with half the images at a time (``oom.json``)."""


@functools.lru_cache(maxsize=None)
def _ddp_class():
    from torch.nn.parallel import DistributedDataParallel

    class DDP(DistributedDataParallel):
        """DDP that remembers whether its forward ran in this step, and lets techniques
        reach the wrapped model's attributes (``ctx.model.head``) as before."""

        _tl_used = False

        def forward(self, *args, **kwargs):
            self._tl_used = True
            return super().forward(*args, **kwargs)

        def __getattr__(self, name: str):
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name == "module":
                    raise
                return getattr(self.module, name)

    return DDP


def _DDP(*args, **kwargs):
    return _ddp_class()(*args, **kwargs)


# --- stop from outside --------------------------------------------------------------------
def request_stop(run_dir: str | Path) -> Path:
    """Ask a running job (one process or torchrun) to stop at its next batch: it records
    ``stopped`` and can be resumed from its last completed epoch.  Safe to call twice."""
    from ..io import atomic_write_json

    return atomic_write_json(Path(run_dir) / STOP_FILE, {"requested": time.time(), "by": os.getpid()})


def clear_stop_request(run_dir: str | Path) -> None:
    try:
        (Path(run_dir) / STOP_FILE).unlink()
    except OSError:
        pass


def stop_requested(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


def make_control(dist: "Distributed | None", base=None):
    """The RunControl of a process: the caller's own in one process, a
    :class:`DistributedControl` (around it) under torchrun."""
    if dist is None:
        return base
    return DistributedControl(dist, base)


class DistributedControl(RunControl):
    """Stop for several processes: a request seen by any rank (the stop file on rank 0,
    ``stop()`` called in-process, Ctrl-C on the launcher) takes effect on *all* ranks at the
    same training batch, through :meth:`sync`.  ``check()`` never stops one rank alone
    (the others would wait for it in a collective); pause is not offered."""

    def __init__(self, dist: Distributed, base=None):
        super().__init__()
        self.dist = dist
        self.base = base
        self._agreed = False

    def watch(self, path) -> None:
        if self.dist.is_main:  # the run folder may exist on rank 0's machine only
            super().watch(path)

    @property
    def requested(self) -> bool:
        return super().stopped or bool(self.base is not None and self.base.stopped)

    @property
    def stopped(self) -> bool:
        return self._agreed

    @property
    def paused(self) -> bool:
        return False

    def pause(self) -> None:  # not offered across processes
        pass

    def check(self) -> None:
        from ..errors import RunStopped

        if self._agreed:
            raise RunStopped()

    def sync(self) -> None:
        """Collective: every rank calls it at the same point (each training batch)."""
        from ..errors import RunStopped

        if not self._agreed:
            self._agreed = self.dist.any(self.requested)
        if self._agreed:
            raise RunStopped()


# --- out of GPU memory across processes ---------------------------------------------------
def read_oom(run_dir: str | Path | None) -> dict:
    if not run_dir:
        return {}
    try:
        return json.loads((Path(run_dir) / OOM_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def record_oom(run_dir: str | Path | None, rank: int, batch: int, micro: int) -> None:
    """A process ran out of GPU memory with ``batch`` images at a time: the job restarts from
    its last checkpoint with ``micro`` (the launcher reads this file)."""
    from ..io import atomic_write_json

    if run_dir:
        prev = read_oom(run_dir)
        atomic_write_json(Path(run_dir) / OOM_FILE, {
            "micro_batch": micro, "from": batch, "rank": rank, "time": time.time(),
            "restarts": int(prev.get("restarts", 0)),
        })


# --- launching ----------------------------------------------------------------------------
def torchrun_command(worker_args: Sequence[str], nproc: int, *, python: str | None = None,
                     max_restarts: int = 0) -> list[str]:
    """``python -m torch.distributed.run`` (torchrun) on this machine, re-invoking the
    tlstudio command line in ``nproc`` processes."""
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc-per-node", str(int(nproc)), "--max-restarts", str(int(max_restarts)),
            "-m", "tlstudio.cli", *worker_args]


def worker_env(nproc: int, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    # torchrun would set 1 thread per process; share this machine's cores out instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, int(nproc)))))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def create_run_folder(path: str | Path) -> "Any":
    """The (empty) run folder a job will fill: created before the job starts so that the
    caller knows where to follow it."""
    from ..runs import RUNNING, Run

    d = Path(path)
    (d / "checkpoints").mkdir(parents=True, exist_ok=True)
    run = Run(d)
    if not (d / "status.json").exists():
        run.set_status(RUNNING)
    return run


def new_run_folder(runs_dir: str | Path, project) -> "Any":
    from ..runs import Run

    return Run.create(runs_dir, project)


def strip_args(argv: Sequence[str], drop_flags: dict[str, bool]) -> list[str]:
    """``argv`` without the given flags (name -> takes a value)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in drop_flags:
            skip = drop_flags[name] and "=" not in a
            continue
        out.append(a)
    return out


class _Signals:
    """While a launcher waits: the first SIGINT/SIGTERM asks the job to stop cleanly, a
    second one terminates it."""

    def __init__(self, run_dir: Path, proc: subprocess.Popen, say):
        self.run_dir, self.proc, self.say, self.count = run_dir, proc, say, 0
        self.old: dict = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            request_stop(self.run_dir)
            self.say("Stopping at the next batch (again to terminate at once) ...")
        elif self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                self.proc.terminate()

    def __exit__(self, *exc) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def launch(run_dir: str | Path, worker_args: Sequence[str], nproc: int, *, stdout=None, stderr=None,
           max_oom_restarts: int = MAX_OOM_RESTARTS, say=None) -> dict:
    """Run ``tlstudio train <worker_args> --into-run RUN`` in ``nproc`` processes with torchrun
    and wait for it; restart from the last checkpoint with half the images at a time after an
    out-of-memory; return the run's final summary (or its status).  The run store is written by
    rank 0 only; this launcher writes to it only when no worker is left (a crash)."""
    from ..runs import DONE, FAILED, INTERRUPTED, RUNNING, STOPPED, Run

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    run = Run(run_dir)
    args = list(worker_args)
    oom_seen = read_oom(run.dir).get("micro_batch")
    rc = 0
    for attempt in range(max_oom_restarts + 1):
        cmd = torchrun_command([*args, "--into-run", str(run.dir)], nproc)
        proc = subprocess.Popen(cmd, env=worker_env(nproc), stdout=stdout, stderr=stderr, start_new_session=True)
        with _Signals(run.dir, proc, say):
            while True:
                try:
                    rc = proc.wait()
                    break
                except KeyboardInterrupt:  # pragma: no cover - handled by _Signals
                    continue
        status = run.status_info().get("status")
        oom = read_oom(run.dir)
        if status in (RUNNING, INTERRUPTED) and oom.get("micro_batch") and oom.get("micro_batch") != oom_seen \
                and not stop_requested(run.dir):
            oom_seen = oom["micro_batch"]
            oom["restarts"] = attempt + 1
            from ..io import atomic_write_json

            atomic_write_json(run.dir / OOM_FILE, oom)
            say(f"Out of GPU memory (process {oom.get('rank')}) with {oom.get('from')} images at a time: "
                f"restarting from the last checkpoint with {oom['micro_batch']} at a time.")
            # the workers resume the run in its folder (its own project.toml)
            args = global_args(worker_args) + ["train"]
            continue
        break
    info = run.status_info()
    status = info.get("status")
    if status in (RUNNING, INTERRUPTED):
        msg = (f"A training process ended unexpectedly (torchrun exit status {rc}); its error is in the output "
               "above. The run can be resumed from its last completed epoch.")
        run.set_status(FAILED, message=msg)
        run.append_event({"kind": "failed", "message": msg, "details": "", "advice": "", "run_dir": str(run.dir),
                          "time": time.time()})
        status = FAILED
    if status == DONE:
        return run.final() | {"status": DONE}
    if status == STOPPED:
        clear_stop_request(run.dir)
    info = run.status_info()
    return {"status": info.get("status"), "message": info.get("message", ""), "run_dir": str(run.dir)}


def global_args(argv: Sequence[str]) -> list[str]:
    """The options before the sub-command (``--safe-mode``)."""
    out = []
    for a in argv:
        if a == "train":
            break
        out.append(a)
    return out


def finished(run_dir: str | Path) -> bool:
    """The run in ``run_dir`` ended (done, failed or stopped)."""
    from ..runs import DONE, FAILED, STOPPED, Run

    return Run(run_dir).status_info().get("status") in (DONE, FAILED, STOPPED)


def check_processes(device_pref: str, nproc: int) -> None:
    """A clear message before anything starts when N processes cannot each get a GPU."""
    import torch

    from ..errors import StudioError

    pref = (device_pref or "auto").lower()
    if nproc < 1:
        raise StudioError(f"--nproc must be at least 1 (got {nproc}).")
    if pref.startswith("cuda") or (pref == "auto" and torch.cuda.is_available()):
        n = torch.cuda.device_count()
        if n == 0:
            raise StudioError(f"Device '{device_pref}' was asked for, but no CUDA GPU is available here: choose cpu.")
        if nproc > n:
            raise StudioError(f"{nproc} processes were asked for, but this machine has {n} GPU(s): use --nproc {n} "
                              "or fewer (one process per GPU), or --device cpu.")


class RunProcess:
    """A training job in a subprocess, for the window: ``RunProcess.start(project_file, nproc)``
    creates the run folder at once (``.run``), starts ``tlstudio train`` (through torchrun
    when ``nproc`` > 1), and the caller follows ``run.iter_events(start=offset)`` and
    ``run.status()``; ``stop()`` asks for a clean stop (resumable), ``kill()`` ends it now."""

    def __init__(self, run, proc: subprocess.Popen):
        self.run, self.proc = run, proc
        self._offset = 0

    def new_events(self) -> list[dict]:
        """The events rank 0 appended to metrics.jsonl since the last call (complete lines
        only): call it from a timer to follow the run."""
        path = self.run.metrics_file
        try:
            with open(path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line being written right now waits for the next call
        self._offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    @classmethod
    def start(cls, project_file: str | Path, nproc: int = 1, *, runs_dir: str | Path | None = None,
              resume: bool = False, extra_args: Sequence[str] = (), python: str | None = None,
              stdout=subprocess.DEVNULL, stderr=None) -> "RunProcess":
        """``project_file``: a project.toml (a new run) or, with ``resume=True``, a run folder.
        ``stderr`` (warnings, a failing process's traceback) goes to the caller's by default;
        pass an open file to keep it (not a pipe nobody reads: the job would block on it)."""
        from ..config import load_project
        from ..runs import open_run
        from ..settings import load_settings

        if resume:
            run = open_run(project_file)
            clear_stop_request(run.dir)
            args = ["train", "--resume", str(run.dir)]
        else:
            project = load_project(project_file)
            root = Path(runs_dir) if runs_dir else load_settings().runs_path()
            run = new_run_folder(root, project)
            args = ["train", str(project_file), "--into-run", str(run.dir)]
            if runs_dir:
                args += ["--runs-dir", str(runs_dir)]
        if nproc > 1:
            args += ["--nproc", str(int(nproc))]
        cmd = [python or sys.executable, "-m", "tlstudio.cli", *args, *extra_args]
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=worker_env(nproc))
        return cls(run, proc)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        request_stop(self.run.dir)

    def kill(self) -> None:
        if self.running():
            self.proc.terminate()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)
