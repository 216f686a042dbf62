"""The training engine: one loop for the window, the command line, tests and torchrun.

``train(project, on_event=..., control=...)`` runs a project to the end and returns its
:class:`~tlstudio.core.events.RunResult`; ``resume(run)`` continues an interrupted or
stopped run exactly where its last checkpoint left off.  What happens, in order
(:meth:`Trainer.fit`):

1. the task reads the data (``ctx.data``), callbacks add theirs (a target domain);
2. the technique builds the model, callbacks see it (L2-SP's snapshot); a resume loads its
   checkpoint; callbacks set up (caches, Fisher); the optimizer gets the parameter groups;
3. each epoch: ``train_one_epoch`` (:mod:`.step`), validation, chart series, checkpoints,
   an :class:`~tlstudio.core.events.EpochEnded` event, early stopping;
4. the best epoch's weights are evaluated on the test split, results and report written.

Events go to the caller, the run store (metrics.jsonl) and observer plugins.
"""
from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import Project
from ..errors import RunStopped, StudioError
from ..events import EpochEnded, Event, RunDone, RunFailed, RunResult, RunStarted, RunWasStopped, Throttle
from ..io import atomic_write_json
from ..runs import DONE, FAILED, RUNNING, STOPPED, Run, open_run
from ..settings import load_settings
from . import checkpoint
from .context import EventCallback, RunContext
from .control import RunControl, describe_device, seed_everything, select_device
from .project import monitor_of, technique_for
from .step import train_one_epoch


def prepare(ctx: RunContext) -> None:
    """The run's data: the task reads them, callbacks add theirs."""
    ctx.data = ctx.task.prepare_data(ctx)
    ctx.recipe.call("on_data", ctx)


def build(ctx: RunContext) -> None:
    """The technique's model on the run's device (callbacks see it first)."""
    torch.manual_seed(ctx.training.seed)
    model = ctx.technique.build(ctx)
    for cb in ctx.recipe.callbacks:
        cb.on_build(ctx, model)
    ctx.model = model.to(ctx.device)
    if ctx.channels_last:
        ctx.model = ctx.model.to(memory_format=torch.channels_last)


def start_training(ctx: RunContext, state: dict | None = None) -> None:
    """Callbacks set up, the optimizer (with a resumed run's state), the steps of an epoch."""
    ctx.recipe.call("setup", ctx)
    ctx.set_param_groups(ctx.param_groups())
    if state:
        ctx.train.optimizer.load_state_dict(state["optimizer"])
    ctx.train.steps_per_epoch = steps_per_epoch(ctx)


def open_context(project: Project, *, plugins=None, device: str | torch.device = "cpu",
                 emit: EventCallback | None = None, control: RunControl | None = None) -> RunContext:
    """A run's context made ready to train exactly as a run makes it (data, model, callbacks,
    optimizer), without a run folder: for the learning-rate finder, benchmarks and tests."""
    from ..plugins import get_plugin_manager

    plugins = plugins or get_plugin_manager()
    tech, cfg = technique_for(project, plugins)
    dev = device if isinstance(device, torch.device) else select_device(device)
    ctx = RunContext(project, tech, cfg, dev, run=None, plugins=plugins, control=control, emit=emit)
    prepare(ctx)
    build(ctx)
    start_training(ctx)
    return ctx


def steps_per_epoch(ctx: RunContext) -> int:
    try:
        return max(1, len(ctx.train_batches(0)))
    except TypeError:
        return max(1, -(-len(ctx.data.dataset("train", train=True)) // ctx.training.batch_size))


class Trainer:
    """Runs one project (fresh or resumed) and reports through events."""

    def __init__(self, project: Project, *, on_event: Callable[[Any], None] | None = None,
                 control: RunControl | None = None, runs_dir: str | Path | None = None, plugins=None,
                 resume_run: Run | None = None, into_run: Run | None = None, evaluate_test: bool = True):
        from ..plugins import get_plugin_manager

        self.plugins = plugins or get_plugin_manager()
        self.project = project
        self.on_event = on_event
        self.control = control or RunControl()
        self.runs_dir = Path(runs_dir) if runs_dir else load_settings().runs_path()
        self.run: Run | None = resume_run or into_run  # into_run: a new run in a folder made beforehand
        self._resuming = resume_run is not None
        self.ctx: RunContext | None = None
        self.result: RunResult = RunResult(status=FAILED)
        self.dist = None  # tlstudio.core.engine.distributed.Distributed when torchrun started this process
        self._main = True  # rank 0 (or the only process): the one that writes, logs and evaluates
        self.throttle = Throttle()
        self._t_start = time.time()
        # False: the test split is held back (a recipe search chooses on validation only and
        # evaluates its winner's test split once, at the end); final.json says test_held_back
        self.evaluate_test = evaluate_test
        # training time of earlier sessions of this run, added to train_seconds: set by the caller
        # (a recipe search's segments) or else read from the checkpoint a resumed run starts from
        self.seconds_before = 0.0

    # events go to the caller, the run store and observer plugins
    def _emit(self, event: Event) -> None:
        if not self._main:
            return
        if self.run is not None:
            try:
                self.run.append_event(event.to_dict())
            except OSError:
                pass
        if self.plugins.has_observers():
            self.plugins.notify(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken listener must not kill the run
                traceback.print_exc()

    def fit(self) -> RunResult:
        t_start = self._t_start = time.time()
        self.threads = None  # cpu.TorchThreads: as many threads as the free cores, checked every epoch
        early_logs: list[str] = []  # said once the run has started
        try:
            tech, cfg = technique_for(self.project, self.plugins)
            tr = self.project.training
            device = self._set_up_torch(tr, early_logs)
            if self.run is None and self._main:
                self.run = Run.create(self.runs_dir, self.project)
            if self.dist is not None:  # every process follows rank 0: its folder, whether it resumes
                from .nodes import hand_over_run_dir

                hand_over_run_dir(self.dist, str(self.run.dir) if self._main else None)
                self._resuming = bool(self.dist.broadcast(self._resuming))
            run = self.run
            # a run killed from here on can be resumed or restarted: its project is on disk first
            fresh = self._main and (not self._resuming or not checkpoint.has_checkpoint(run))
            if fresh and not self._resuming:
                run.save_project(self.project.with_absolute_paths())
            if run is not None:
                from .distributed import STOP_FILE

                self.control.watch(run.dir / STOP_FILE)
            ctx = self.ctx = RunContext(self.project, tech, cfg, device, run=run, plugins=self.plugins,
                                        control=self.control, emit=self._emit)
            ctx.dist = self.dist
            mon_name, mon_mode = monitor_of(self.project, tech, ctx.task)
            self._emit(RunStarted(run_dir=str(run.dir) if run else "", run_id=run.id if run else "",
                                  technique=tech.id, model=self.project.model.architecture,
                                  device=self._device_text(device), epochs=tr.epochs, resumed=self._resuming,
                                  monitor=mon_name, series={**ctx.task.series, **ctx.recipe.series},
                                  processes=self.dist.world if self.dist else 1, task=ctx.task.id))
            for message in early_logs:
                ctx.log(message)
            if self.threads is not None:
                self.threads.log = ctx.log
            seed_everything(tr.seed)
            self._rank0_first(lambda: prepare(ctx))  # caches filled once, by rank 0
            if fresh:
                self._write_run_files(ctx)
            build(ctx)
            state = checkpoint.load_last(ctx, self._main) if self._resuming else None
            if not self.seconds_before:
                self.seconds_before = float((state or {}).get("train_seconds") or 0.0)
            start_epoch = state["epoch"] if state else 0
            best = state["best"] if state else {"value": None, "epoch": None, "loss": float("inf")}
            bad_epochs = state["bad_epochs"] if state else 0
            ctx.train.epoch = max(0, start_epoch - 1)
            self._rank0_first(lambda: start_training(ctx, state))
            if ctx.amp_dtype == torch.float16:
                ctx.train.scaler = torch.amp.GradScaler("cuda")
                if state and state.get("scaler"):
                    ctx.train.scaler.load_state_dict(state["scaler"])
            if self._main:
                run.set_status(RUNNING, monitor=mon_name)
            has_val = self._has_split(ctx, "val")
            self._restore_scale(ctx, state, start_epoch)

            for epoch in range(start_epoch, tr.epochs):
                ctx.train.epoch = epoch
                if self.threads is not None and epoch > start_epoch:
                    self.threads.epoch()
                seed_everything(tr.seed + (7_777_777 * self.dist.rank if self.dist else 0), epoch + 1)
                ctx.recipe.call("on_epoch_start", ctx, epoch)
                t0 = time.time()
                train_stats = self._train_epoch(ctx, epoch)
                val = self._validate(ctx, has_val)
                series = {**ctx.task.on_epoch_end(ctx, epoch, val), **ctx.recipe.merged("on_epoch_end", ctx, epoch, val)}
                from ..analysis.metrics import scalar_metrics

                val_scalars = {f"val_{k}": v for k, v in scalar_metrics(val).items() if v is not None}
                value = val_scalars.get(mon_name, None if has_val else -train_stats["train_loss"])
                if mon_name == "last":
                    value = float(epoch + 1)
                loss = val_scalars.get("val_loss", train_stats.get("train_loss"))
                improved = self._improved(value, best["value"], mon_mode) or (
                    value is not None and value == best["value"] and loss < best.get("loss", float("inf")))
                if improved:
                    best = {"value": value, "epoch": epoch + 1, "loss": loss}
                    bad_epochs = 0
                    if self._main:
                        checkpoint.save_best_of(ctx, self.project, epoch, value, mon_name)
                else:
                    bad_epochs += 1
                if self._main:
                    checkpoint.save_last_of(ctx, self.project, epoch + 1, best, bad_epochs,
                                            self.seconds_before + (time.time() - self._t_start))
                self._emit(EpochEnded(epoch=epoch + 1, epochs=tr.epochs, metrics={**train_stats, **val_scalars},
                                      lr=ctx.lr_by_group(), series={k: float(v) for k, v in series.items()},
                                      seconds=time.time() - t0, best=improved, monitor=mon_name))
                if self._main:
                    run.set_status(RUNNING, epoch=epoch + 1, best_value=best["value"], best_epoch=best["epoch"])
                if tr.early_stopping and bad_epochs >= tr.early_stopping:
                    ctx.log(f"Early stopping: {mon_name} did not improve for {bad_epochs} epochs.")
                    break

            if self._main:
                self.result = self._finish(ctx, best, mon_name, t_start)
            else:
                self.result = RunResult(status=DONE, extra={"rank": self.dist.rank})
            return self.result
        except RunStopped:
            if self.run is not None and self._main:
                self.run.set_status(STOPPED)
                _clear_stop(self.run)
            run_dir = str(self.run.dir) if self.run else None
            self._emit(RunWasStopped(run_dir=run_dir))
            self.result = RunResult(status=STOPPED, run_dir=run_dir or "")
            return self.result
        except BaseException as e:  # noqa: BLE001 - every failure becomes a readable event
            if isinstance(e, KeyboardInterrupt):
                if self.run is not None and self._main:
                    self.run.set_status(STOPPED)
                raise
            if self.dist is not None and isinstance(e, torch.OutOfMemoryError):
                self._oom_restart(e)  # raises: the launcher restarts the job smaller
            from ..failures import describe

            failure = describe(e)
            msg = failure.message
            run_dir = str(self.run.dir) if self.run else None
            if self.run is not None and self._main:
                self.run.set_status(FAILED, message=msg)
                _clear_stop(self.run)
            if not self._main:
                traceback.print_exc()  # a non-zero rank has no run store: its error goes to the job's output
            self._emit(RunFailed(message=msg, details=failure.details, advice=failure.advice, run_dir=run_dir))
            self.result = RunResult(status=FAILED, run_dir=run_dir or "", message=msg)
            return self.result
        finally:
            if self.ctx is not None:
                self.ctx.close_loaders()
            if self.dist is not None:
                self.dist.close()
            if self.threads is not None:
                self.threads.restore()

    # --- pieces -----------------------------------------------------------------------
    def _set_up_torch(self, tr, early_logs: list[str]) -> torch.device:
        """Threads, determinism, and the device: this process's own, or its rank's under torchrun."""
        if tr.threads:
            torch.set_num_threads(tr.threads)
        elif select_device(tr.device).type == "cpu" and not tr.deterministic:
            # 0: as many as the free cores, checked every epoch (cpu.TorchThreads); a deterministic run
            # keeps PyTorch's thread count, since another count sums in another order
            from .cpu import TorchThreads

            self.threads = TorchThreads(early_logs.append)
        if tr.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        from . import distributed as _dist

        if _dist.in_torchrun():  # one of several processes: DDP, rank 0 writes the run store
            self._main = _dist.is_main_process()
            self.dist = _dist.Distributed.setup(tr.device)
            self._main = self.dist.is_main
            self.control = _dist.make_control(self.dist, self.control)
            device = self.dist.device
        else:
            device = select_device(tr.device)
        if device.type == "cuda" and not tr.deterministic:
            torch.backends.cudnn.benchmark = True
        return device

    def _train_epoch(self, ctx: RunContext, epoch: int) -> dict:
        plain = ctx.model
        model = ctx.model = self.dist.wrap(plain, ctx.technique) if self.dist is not None else plain
        try:  # DistributedDataParallel only inside the training loop; hooks and checkpoints see the plain model
            return train_one_epoch(ctx, model, epoch, self.throttle)
        finally:
            ctx.model = plain

    def _validate(self, ctx: RunContext, has_val: bool) -> dict:
        val = ctx.evaluate("val") if has_val and self._main else {}
        if self.dist is not None:  # every process sees rank 0's validation
            val = self.dist.broadcast(val)
        return val

    def _device_text(self, device: torch.device) -> str:
        text = describe_device(device)
        return f"{text} x {self.dist.world} processes ({self.dist.backend})" if self.dist else text

    def _rank0_first(self, fn: Callable[[], Any]) -> None:
        """``fn`` on rank 0 first, then on the other processes (which find rank 0's image and
        feature caches and its split); one process: just ``fn``."""
        if self.dist is None:
            fn()
            return
        if not self._main:
            self.control.sync()  # waits for rank 0 (and learns of a stop)
        fn()
        if self._main:
            self.control.sync()

    def _restore_scale(self, ctx: RunContext, state: dict | None, start_epoch: int) -> None:
        """After a resume: the step count for another number of processes, and the images at
        a time left by an earlier out-of-memory."""
        from .distributed import read_oom

        world = self.dist.world if self.dist else 1
        if state and int(state.get("world_size", 1)) != world:
            ctx.train.step = start_epoch * ctx.train.steps_per_epoch
            ctx.log(f"Resuming a run trained with {state.get('world_size', 1)} process(es) on {world}: "
                    f"the learning-rate schedule continues at epoch {start_epoch + 1}.")
        oom = read_oom(self.run.dir if self.run is not None else None) if self.dist else {}
        known = [int(m) for m in ((state or {}).get("micro_batch"), oom.get("micro_batch")) if m]
        micro = min(known) if known else 0
        if self.dist is not None:
            micro = self.dist.min(micro or 1 << 30)
            micro = 0 if micro == 1 << 30 else micro
        if micro:
            ctx.train.micro_batch = micro
            if oom.get("micro_batch") == micro:
                ctx.log(f"Out of GPU memory on process {oom.get('rank')} with {oom.get('from')} images at a time: "
                        f"the job restarted from its last checkpoint with {micro} at a time (gradient accumulation "
                        "keeps the batch, so the results do not change).", "warning")
            else:
                ctx.log(f"{micro} images at a time on each device (set after an out-of-memory; gradient "
                        "accumulation keeps the batch).")

    def _oom_restart(self, err: BaseException) -> None:
        """Several processes, one ran out of GPU memory: the others may be waiting for it in
        a collective, so no process can carry on alone.  Record half the images at a time and
        end this process; the launcher restarts the job from the last checkpoint."""
        from .distributed import OutOfMemoryRestart, record_oom

        ctx = self.ctx
        per_proc = ctx.train.micro_batch or max(1, ctx.training.batch_size // self.dist.world)
        if per_proc <= 1:
            return  # nothing left to halve: reported as a failure
        micro = per_proc // 2
        record_oom(self.run.dir if self.run is not None else None, self.dist.rank, per_proc, micro)
        ctx.log(f"Out of GPU memory with {per_proc} images at a time: the job restarts from its last "
                f"checkpoint with {micro} at a time.", "warning")
        raise OutOfMemoryRestart(f"process {self.dist.rank}: out of GPU memory with {per_proc} images at a time") from err

    @staticmethod
    def _has_split(ctx: RunContext, split: str) -> bool:
        has = getattr(ctx.data, "has_split", None)
        return bool(has(split)) if has else True

    @staticmethod
    def _improved(value, best, mode: str) -> bool:
        if value is None:
            return best is None
        if best is None:
            return True
        return value < best if mode == "min" else value > best

    def _write_run_files(self, ctx: RunContext) -> None:
        run = self.run
        proj = self.project.with_absolute_paths()
        split_file = getattr(ctx.data, "split_file", None)
        if split_file and Path(split_file).exists():
            shutil.copyfile(split_file, run.dir / "split.json")
            proj.data.split.file = "split.json"
        run.save_project(proj)
        # the run's own copy must resolve relative paths against the run folder
        self.project = proj
        self.project._path = run.project_file.resolve()
        ctx.project = self.project
        run.write_env(device=self._device_text(ctx.device), seed=ctx.training.seed,
                      data_fingerprint=getattr(ctx.data, "fingerprint", ""),
                      deterministic=ctx.training.deterministic,
                      **({"processes": self.dist.world, "backend": self.dist.backend,
                          "nodes": max(1, self.dist.world // max(1, self.dist.local_world)),
                          "batch_per_process": max(1, ctx.training.batch_size // self.dist.world)} if self.dist else {}))
        if hasattr(ctx.data, "describe"):
            atomic_write_json(run.dir / "data.json", ctx.data.describe())

    def _finish(self, ctx: RunContext, best: dict, mon_name: str, t_start: float) -> RunResult:
        """The best epoch evaluated on the test split; results, report and final.json written."""
        run = self.run
        train_seconds = self.seconds_before + (time.time() - t_start)
        checkpoint.load_best(ctx)
        ctx.task.before_test(ctx)  # classifiers: calibration, operating point, prediction sets (on validation)
        test: dict = {}
        held_back = not self.evaluate_test and self._has_split(ctx, "test")
        if self.evaluate_test and self._has_split(ctx, "test"):
            test = ctx.evaluate("test")
            ctx.task.write_evaluation(ctx, "test", test)
            ctx.recipe.call("write_results", ctx, "test", test)
        result = RunResult(status=DONE, run_dir=str(run.dir), run_id=run.id, technique=ctx.technique.id,
                           model=self.project.model.architecture, monitor=mon_name, best_value=best["value"],
                           best_epoch=best["epoch"], train_seconds=train_seconds,
                           device=self._device_text(ctx.device), processes=self.dist.world if self.dist else 1,
                           test=test)
        if held_back:
            result.extra["test_held_back"] = True
        if ctx.source_task is not None:  # started from an earlier run: what it kept of that task
            result.extra.update(ctx.source_task.final_metrics(ctx))
        final = result.to_dict()
        run.write_final(final)
        self._write_report(ctx, final)
        run.set_status(DONE, best_value=best["value"], best_epoch=best["epoch"])
        _clear_stop(run)
        self._emit(RunDone.of(result))
        return result

    def _write_report(self, ctx: RunContext, final: dict) -> None:
        """report.md: the task's report, then the sections the technique and its callbacks add."""
        from ..io import atomic_write_text

        parts = [ctx.task.report(ctx, final).rstrip("\n"), *(s.rstrip("\n") for s in ctx.recipe.reports(ctx, final))]
        atomic_write_text(self.run.dir / "report.md", "\n\n".join(p for p in parts if p) + "\n")


def _clear_stop(run: Run) -> None:
    from .distributed import clear_stop_request

    clear_stop_request(run.dir)


# --- public entry points ------------------------------------------------------------------
def train(project: Project, *, on_event: Callable[[Any], None] | None = None, control: RunControl | None = None,
          runs_dir: str | Path | None = None, plugins=None) -> RunResult:
    """Train ``project`` to the end (or until stopped); returns the run's result."""
    return Trainer(project, on_event=on_event, control=control, runs_dir=runs_dir, plugins=plugins).fit()


def resume(run_ref: str | Path, *, on_event: Callable[[Any], None] | None = None, control: RunControl | None = None,
           runs_dir: str | Path | None = None, plugins=None, epochs: int | None = None) -> RunResult:
    """Continue a stopped or interrupted run in its own folder.  A finished run is not trained
    again unless ``epochs`` asks for more epochs than it had: it returns its final summary
    with ``already_finished`` and a message saying so."""
    root = Path(runs_dir) if runs_dir else load_settings().runs_path()
    run = open_run(run_ref, root)
    if not run.project_file.exists():
        raise StudioError(f"{run.dir}: the run stopped before it wrote its project file, so it cannot be resumed; "
                          "start it again from your project.")
    project = run.project()
    if run.status() == DONE and (not epochs or epochs <= project.training.epochs):
        return RunResult.from_dict(checkpoint.finished_summary(run, project, on_event))
    if epochs:
        project.training.epochs = epochs
        run.save_project(project)
    return Trainer(project, on_event=on_event, control=control, runs_dir=run.dir.parent, plugins=plugins,
                   resume_run=run).fit()
