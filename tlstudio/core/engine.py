"""The training engine: one loop for the window, the command line, tests and torchrun.

``train(project, on_event=..., control=...)`` runs a project to the end and returns the
final summary; ``resume(run)`` continues an interrupted or stopped run exactly where its
last checkpoint left off.  Events are plain dicts (see :mod:`tlstudio.core.events`).
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import blocks
from . import checkpoints as ckpt
from .config import Project
from .errors import RunStopped, StudioError
from .runs import DONE, FAILED, RUNNING, STOPPED, Run, open_run
from .settings import load_settings

EventCallback = Callable[[dict], None]


class RunControl:
    """Stop and pause flags; the engine checks them before every batch."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._watch: Path | None = None
        self._next_poll = 0.0

    def watch(self, path: str | Path) -> None:
        """Also stop when ``path`` appears (a stop request written by another process, see
        :func:`tlstudio.core.distributed.request_stop`); polled at most twice a second."""
        self._watch = Path(path)
        self._next_poll = 0.0

    def _poll(self) -> None:
        if self._watch is not None and not self._stop.is_set():
            now = time.monotonic()
            if now >= self._next_poll:
                self._next_poll = now + 0.5
                if self._watch.exists():
                    self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    @property
    def stopped(self) -> bool:
        self._poll()
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set()

    def check(self) -> None:
        """Block while paused; raise :class:`RunStopped` once Stop was pressed."""
        self._poll()
        while not self._go.wait(0.2):
            self._poll()
        if self._stop.is_set():
            raise RunStopped()

    def sync(self) -> None:
        """Where every process of a distributed run agrees on Stop (each training batch);
        one process: the same as :meth:`check`."""
        self.check()


# --- devices and seeds ------------------------------------------------------------------
def select_device(pref: str = "auto") -> torch.device:
    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(pref)
    except (RuntimeError, ValueError):
        raise StudioError(f"Unknown device '{pref}' (training.device): choose auto, cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"Device '{pref}' was asked for, but no CUDA GPU is available here: choose cpu or auto.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StudioError(f"Device '{pref}' was asked for, but Apple MPS is not available here: choose cpu or auto.")
    return dev


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "GPU: Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed every generator from (seed, epoch): an epoch replays identically on resume."""
    s = (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


# --- the context a technique sees -----------------------------------------------------
class RunContext:
    """Everything a technique needs from the studio during one run."""

    def __init__(self, project: Project, technique, config, device: torch.device, *, run: Run | None,
                 plugins=None, control: RunControl | None = None, emit: EventCallback | None = None,
                 for_inference: bool = False):
        from .models import ModelLibrary

        self.project = project
        self.technique = technique
        self.config = config
        self.device = device
        self.run = run
        self.plugins = plugins
        self.control = control or RunControl()
        self._emit = emit or (lambda e: None)
        self.for_inference = for_inference
        self.settings = load_settings()
        self.library = ModelLibrary(
            sources=(plugins.model_sources() if plugins else None) or None,
            extra_architectures=(plugins.architectures() if plugins else None) or None,
        )
        self.data: Any = None
        self.model: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.epoch = 0
        self.step = 0
        self.steps_per_epoch = 1
        self.state: dict = {}  # scratch space of the technique for this run
        self.eval_details: dict = {}
        self.model_info: dict = {}
        self.amp_dtype = None
        self.dist = None  # a tlstudio.core.distributed.Distributed under torchrun
        self.micro_batch: int | None = None  # images at a time after an out-of-memory (None: whole batches)
        self._loaders: dict = {}
        if device.type == "cuda" and project.training.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    # shortcuts
    @property
    def training(self):
        return self.project.training

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.data.class_names)

    @property
    def cache_dir(self) -> Path:
        from .settings import cache_dir

        return cache_dir()

    # events
    def emit(self, kind: str, **fields: Any) -> None:
        self._emit({"kind": kind, **fields})

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    def progress(self, task: str, done: int, total: int) -> None:
        self.emit("progress", task=task, done=done, total=total)
        self.control.check()

    # data
    @property
    def num_workers(self) -> int:
        """Loader worker processes: the project's number, or for "auto" (-1) none on the CPU
        (the images are decoded once into the cache; workers would only compete for the
        same cores) and several on a GPU, so that augmentation runs beside the training."""
        n = self.training.num_workers
        if n is None or n < 0:
            if self.device.type != "cuda":
                return 0
            per_proc = (os.cpu_count() or 2) // max(1, self.dist.local_world if self.dist else 1)
            return max(2, min(8, per_proc - 1))
        return int(n)

    def loader(self, split: str, train: bool = False, epoch: int = 0, batch_size: int | None = None,
               dataset=None, shuffle: bool | None = None) -> torch.utils.data.DataLoader:
        """A DataLoader over ``split`` (or ``dataset``), seeded per epoch so that a resumed
        run sees exactly the batches an uninterrupted one would have seen.

        Under torchrun a training loader is sharded (DistributedSampler, seeded per epoch) and
        each process takes ``batch_size / processes`` images: the project's batch size is the
        global batch.  With loader workers (and not deterministic) the loaders of the data's
        own splits are kept between epochs with persistent workers and prefetching."""
        ds = dataset if dataset is not None else self.data.dataset(split, train=train)
        bs = batch_size or self.training.batch_size
        g = torch.Generator().manual_seed(self.training.seed * 7919 + epoch)
        sampler = None
        shuffle = train if shuffle is None else shuffle
        shard = self.dist is not None and train
        workers = self.num_workers
        keep = workers > 0 and not self.training.deterministic and dataset is None
        key = (split, train, bs, shuffle, self.training.class_balance)
        if keep and key in self._loaders:
            dl = self._loaders[key]
            if hasattr(dl.sampler, "set_epoch"):
                dl.sampler.set_epoch(epoch)
            if dl.generator is not None:
                dl.generator.manual_seed(self.training.seed * 7919 + epoch)
            return dl
        y = self._sampler_labels(split, dataset) if train and self.training.class_balance == "balanced_sampler" else None
        if y is not None:
            w = 1.0 / torch.bincount(y, minlength=self.num_classes).clamp(min=1).float()
            sampler = torch.utils.data.WeightedRandomSampler(w[y], num_samples=len(y), replacement=True, generator=g)
            shuffle = False
            if shard:  # the same draw on every process, each takes its share
                idx = list(sampler)
                per = math.ceil(len(idx) / self.dist.world)
                idx = (idx * 2)[:per * self.dist.world]
                sampler = idx[self.dist.rank::self.dist.world]
                keep = False
        elif shard:
            sampler = torch.utils.data.DistributedSampler(ds, num_replicas=self.dist.world, rank=self.dist.rank,
                                                          shuffle=shuffle, seed=self.training.seed * 7919)
            sampler.set_epoch(epoch)
            shuffle = False
        if shard:
            bs = max(1, bs // self.dist.world)
        n = len(sampler) if sampler is not None else len(ds)
        drop_last = bool(train and n > bs and n % bs == 1)
        from .data.device_loader import device_loader

        fast = device_loader(self, ds, sampler, shuffle, bs, drop_last, g)  # on a GPU: whole batches, augmented there
        if fast is not None:
            return fast
        extra = {"persistent_workers": True, "prefetch_factor": 4} if keep else {}
        dl = torch.utils.data.DataLoader(
            ds, batch_size=bs, shuffle=shuffle if sampler is None else False, sampler=sampler, generator=g,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            collate_fn=getattr(self.data, "collate", None), **extra,
        )
        if keep:
            self._loaders[key] = dl
        return dl

    def close_loaders(self) -> None:
        """End the persistent loader workers of this run."""
        self._loaders.clear()

    def _sampler_labels(self, split: str, dataset) -> torch.Tensor | None:
        """Labels for the balanced sampler: the split's, or those of a dataset of tensors
        whose last tensor is the labels (cached features of the split)."""
        if dataset is None:
            return torch.as_tensor(self.data.labels(split)) if hasattr(self.data, "labels") else None
        tensors = getattr(dataset, "tensors", None)
        if tensors and tensors[-1].dim() == 1 and not tensors[-1].is_floating_point():
            return tensors[-1].long()
        return None

    def to_device(self, batch: Any) -> Any:
        return _to_device(batch, self.device, self.channels_last)

    @property
    def channels_last(self) -> bool:
        """Images travel in channels-last memory order on CUDA, and on the CPU for image
        classifiers, whose convolutions run 1.5x faster that way there (bench/engine_overhead.py).
        Detection and captioning models keep the CPU's usual order (not measured for them)."""
        if self.device.type == "cuda":
            return True
        from .models.classifier import ClassifierModel

        return self.device.type == "cpu" and isinstance(getattr(self, "model", None), ClassifierModel)

    # models
    def build_classifier(self, head: str = "linear", dropout: float = 0.0, hidden: int = 256):
        """The project's architecture with its pretrained weights and a new head for this
        data's classes (random weights when only predicting: the checkpoint follows)."""
        m = self.project.model
        from_run = bool(m.from_run) and not self.for_inference
        weights = "none" if self.for_inference or from_run else m.weights
        model, info = self.library.build(m.architecture, self.num_classes, weights=weights,
                                         head=head, dropout=dropout, hidden=hidden)
        self.model_info = info
        model.flip_average = self.project.augmentation.flips_at_test
        if from_run:  # sequential transfer: the earlier run's trained model (see core.sequential)
            from .sequential import start_from_run

            start_from_run(self, model)
        elif not self.for_inference and m.weights != "none":
            self.log(f"Pretrained weights: {info.get('weights_path') or info.get('weights')} ({info.get('weights_source', '')})")
        return model

    def criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        w = self.state.get("_class_weights")
        if w is None and self.training.class_balance == "weighted_loss" and hasattr(self.data, "labels"):
            y = torch.as_tensor(self.data.labels("train"))
            counts = torch.bincount(y, minlength=self.num_classes).clamp(min=1).float()
            w = (counts.sum() / (len(counts) * counts)).to(self.device)
            self.state["_class_weights"] = w
        return torch.nn.functional.cross_entropy(logits.float(), targets, weight=w,
                                                 label_smoothing=self.training.label_smoothing)

    # optimizer
    def set_param_groups(self, groups: list[dict]) -> None:
        """(Re)build the optimizer from parameter groups, keeping the state of parameters
        that were already training (used by progressive unfreezing)."""
        old = self.optimizer
        self.optimizer = blocks.make_optimizer(groups, self.training)
        blocks.carry_optimizer_state(old, self.optimizer)

    def lr_by_group(self) -> dict[str, float]:
        if self.optimizer is None:
            return {}
        return {g.get("name", str(i)): float(g["lr"]) for i, g in enumerate(self.optimizer.param_groups)}

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


# --- the loop ---------------------------------------------------------------------------
def _monitor(project: Project, technique) -> tuple[str, str]:
    name = project.training.monitor
    if name == "auto":
        name = getattr(technique, "default_monitor", "val_loss")
    if name == "last":  # keep the last epoch (small validation sets make "best" a coin toss)
        return "last", "max"
    if not name.startswith("val_"):
        name = "val_" + name
    return name, ("min" if name.endswith("loss") else "max")


def _technique_for(project: Project, plugins):
    from .config import format_validation_error
    from .errors import ProjectError
    from pydantic import ValidationError

    proto = plugins.technique(project.technique.id)
    if proto.task != project.task:
        raise ProjectError(f"Technique '{proto.id}' is for {proto.task}, but the project's task is {project.task}.")
    tech = proto.fresh()
    try:
        cfg = tech.make_config(project.technique.settings)
    except ValidationError as e:
        where = str(project.path) if project.path else "project"
        raise ProjectError(format_validation_error(e, where, prefix="technique.settings")) from None
    return tech, cfg


class Trainer:
    """Runs one project (fresh or resumed) and reports through events."""

    def __init__(self, project: Project, *, on_event: EventCallback | None = None, control: RunControl | None = None,
                 runs_dir: str | Path | None = None, plugins=None, resume_run: Run | None = None,
                 into_run: Run | None = None, evaluate_test: bool = True):
        from .plugins import get_plugin_manager

        self.plugins = plugins or get_plugin_manager()
        self.project = project
        self.on_event = on_event
        self.control = control or RunControl()
        self.runs_dir = Path(runs_dir) if runs_dir else load_settings().runs_path()
        self.run: Run | None = resume_run or into_run  # into_run: a new run in a folder made beforehand
        self._resuming = resume_run is not None
        self.ctx: RunContext | None = None
        self.result: dict = {}
        self.dist = None  # tlstudio.core.distributed.Distributed when torchrun started this process
        self._main = True  # rank 0 (or the only process): the one that writes, logs and evaluates
        self._t_start = time.time()
        # False: the test split is held back (a recipe search chooses on validation only and
        # evaluates its winner's test split once, at the end); final.json says test_held_back
        self.evaluate_test = evaluate_test
        # training time of earlier sessions of this run, added to train_seconds: set by the caller
        # (a recipe search's segments) or else read from the checkpoint a resumed run starts from
        self.seconds_before = 0.0

    # events go to the caller, the run store and observer plugins
    def _emit(self, event: dict) -> None:
        if not self._main:
            return
        event.setdefault("time", time.time())
        if self.run is not None:
            try:
                self.run.append_event(event)
            except OSError:
                pass
        if self.plugins.has_observers():
            self.plugins.notify(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken listener must not kill the run
                traceback.print_exc()

    def fit(self) -> dict:
        t_start = self._t_start = time.time()
        resuming = self._resuming
        dist = threads = None
        early_logs: list[str] = []  # said once the run has started
        try:
            tech, cfg = _technique_for(self.project, self.plugins)
            tr = self.project.training
            if tr.threads:
                torch.set_num_threads(tr.threads)
            elif select_device(tr.device).type == "cpu":  # 0: as many as the free cores (cpu.TorchThreads)
                from .cpu import TorchThreads

                threads = TorchThreads(early_logs.append)
            if tr.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.use_deterministic_algorithms(True, warn_only=True)
                torch.backends.cudnn.benchmark = False
            from . import distributed as _dist

            if _dist.in_torchrun():  # one of several processes: DDP, rank 0 writes the run store
                self._main = _dist.is_main_process()
                dist = self.dist = _dist.Distributed.setup(tr.device)
                self._main = dist.is_main
                self.control = _dist.make_control(dist, self.control)
                device = dist.device
            else:
                device = select_device(tr.device)
            if device.type == "cuda" and not tr.deterministic:
                torch.backends.cudnn.benchmark = True
            if self.run is None and self._main:
                self.run = Run.create(self.runs_dir, self.project)
            if dist is not None:  # every process follows rank 0: its folder, whether it resumes
                from .nodes import hand_over_run_dir

                hand_over_run_dir(dist, str(self.run.dir) if self._main else None)
                resuming = self._resuming = bool(dist.broadcast(resuming))
            run = self.run
            # a run killed from here on can be resumed or restarted: its project is on disk first
            fresh = self._main and (not resuming or not ckpt.has_checkpoint(run))
            if fresh and not resuming:
                run.save_project(self.project.with_absolute_paths())
            if run is not None:
                self.control.watch(run.dir / _dist.STOP_FILE)
            ctx = self.ctx = RunContext(self.project, tech, cfg, device, run=run, plugins=self.plugins,
                                        control=self.control, emit=self._emit)
            ctx.dist = dist
            mon_name, mon_mode = _monitor(self.project, tech)
            if self._main:
                self._emit({"kind": "start", "run_dir": str(run.dir), "run_id": run.id, "technique": tech.id,
                            "model": self.project.model.architecture, "device": self._device_text(device),
                            "epochs": tr.epochs, "resumed": resuming, "monitor": mon_name,
                            "series": dict(getattr(tech, "series", {})), "processes": dist.world if dist else 1})
            for message in early_logs:
                ctx.log(message)
            if threads is not None:
                threads.log = ctx.log
            seed_everything(tr.seed)
            self._rank0_first(ctx, lambda: tech.prepare_data(ctx))  # caches filled once, by rank 0
            if fresh:
                self._write_run_files(ctx)
            torch.manual_seed(tr.seed)
            ctx.model = tech.build(ctx).to(device)
            if ctx.channels_last:
                ctx.model = ctx.model.to(memory_format=torch.channels_last)
            state = self._load_checkpoint(ctx) if resuming else None
            start_epoch = state["epoch"] if state else 0
            best = state["best"] if state else {"value": None, "epoch": None, "loss": float("inf")}
            bad_epochs = state["bad_epochs"] if state else 0
            ctx.epoch = max(0, start_epoch - 1)
            self._rank0_first(ctx, lambda: tech.on_fit_start(ctx))
            ctx.set_param_groups(tech.param_groups(ctx))
            if state:
                ctx.optimizer.load_state_dict(state["optimizer"])
            if ctx.amp_dtype == torch.float16:
                ctx.scaler = torch.amp.GradScaler("cuda")
                if state and state.get("scaler"):
                    ctx.scaler.load_state_dict(state["scaler"])
            if self._main:
                run.set_status(RUNNING, monitor=mon_name)
            has_val = self._has_split(ctx, "val")
            ctx.steps_per_epoch = self._steps_per_epoch(tech, ctx)
            total_steps = ctx.steps_per_epoch * tr.epochs
            self._restore_scale(ctx, state, start_epoch)

            for epoch in range(start_epoch, tr.epochs):
                ctx.epoch = epoch
                if threads is not None and epoch > start_epoch:
                    threads.epoch()
                seed_everything(tr.seed + (7_777_777 * dist.rank if dist else 0), epoch + 1)
                tech.on_epoch_start(ctx, epoch)
                t0 = time.time()
                train_stats = self._train_epoch(tech, ctx, epoch, total_steps)
                val = tech.evaluate(ctx, "val") if has_val and self._main else {}
                if dist is not None:  # every process sees rank 0's validation
                    val = dist.broadcast(val)
                from .metrics import scalar_metrics

                val_scalars = {f"val_{k}": v for k, v in scalar_metrics(val).items() if v is not None}
                extra = tech.on_epoch_end(ctx, epoch, val) or {}
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
                        self._save_best(ctx, epoch, value, mon_name)
                else:
                    bad_epochs += 1
                if self._main:
                    self._save_last(ctx, epoch + 1, best, bad_epochs)
                self._emit({"kind": "epoch", "epoch": epoch + 1, "epochs": tr.epochs, **train_stats, **val_scalars,
                            "lr": ctx.lr_by_group(), "series": {k: float(v) for k, v in extra.items()},
                            "seconds": time.time() - t0, "best": improved, "monitor": mon_name})
                if self._main:
                    run.set_status(RUNNING, epoch=epoch + 1, best_value=best["value"], best_epoch=best["epoch"])
                if tr.early_stopping and bad_epochs >= tr.early_stopping:
                    ctx.log(f"Early stopping: {mon_name} did not improve for {bad_epochs} epochs.")
                    break

            if self._main:
                self.result = self._finish(tech, ctx, best, mon_name, t_start)
            else:
                self.result = {"status": DONE, "rank": dist.rank}
            return self.result
        except RunStopped:
            if self.run is not None and self._main:
                self.run.set_status(STOPPED)
                _clear_stop(self.run)
            self._emit({"kind": "stopped", "run_dir": str(self.run.dir) if self.run else None,
                        "message": "Stopped. The run can be resumed from its last completed epoch."})
            self.result = {"status": STOPPED, "run_dir": str(self.run.dir) if self.run else None}
            return self.result
        except BaseException as e:  # noqa: BLE001 - every failure becomes a readable event
            if isinstance(e, KeyboardInterrupt):
                if self.run is not None and self._main:
                    self.run.set_status(STOPPED)
                raise
            if dist is not None and isinstance(e, torch.OutOfMemoryError):
                self._oom_restart(e)  # raises: the launcher restarts the job smaller
            from .failures import describe

            failure = describe(e)
            msg = failure.message
            if self.run is not None and self._main:
                self.run.set_status(FAILED, message=msg)
                _clear_stop(self.run)
            if not self._main:
                traceback.print_exc()  # a non-zero rank has no run store: its error goes to the job's output
            self._emit({"kind": "failed", "message": msg, "details": failure.details,
                        "advice": failure.advice, "run_dir": str(self.run.dir) if self.run else None})
            self.result = {"status": FAILED, "message": msg, "run_dir": str(self.run.dir) if self.run else None}
            return self.result
        finally:
            if self.ctx is not None:
                self.ctx.close_loaders()
            if dist is not None:
                dist.close()
            if threads is not None:
                threads.restore()

    # --- pieces -----------------------------------------------------------------------
    def _device_text(self, device: torch.device) -> str:
        text = describe_device(device)
        return f"{text} x {self.dist.world} processes ({self.dist.backend})" if self.dist else text

    def _rank0_first(self, ctx: RunContext, fn: Callable[[], Any]) -> None:
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
            ctx.step = start_epoch * ctx.steps_per_epoch
            ctx.log(f"Resuming a run trained with {state.get('world_size', 1)} process(es) on {world}: "
                    f"the learning-rate schedule continues at epoch {start_epoch + 1}.")
        oom = read_oom(self.run.dir if self.run is not None else None) if self.dist else {}
        known = [int(m) for m in ((state or {}).get("micro_batch"), oom.get("micro_batch")) if m]
        micro = min(known) if known else 0
        if self.dist is not None:
            micro = self.dist.min(micro or 1 << 30)
            micro = 0 if micro == 1 << 30 else micro
        if micro:
            ctx.micro_batch = micro
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
        per_proc = ctx.micro_batch or max(1, ctx.training.batch_size // self.dist.world)
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
    def _steps_per_epoch(tech, ctx: RunContext) -> int:
        try:
            return max(1, len(tech.train_batches(ctx, 0)))
        except TypeError:
            return max(1, math.ceil(len(ctx.data.dataset("train", train=True)) / ctx.training.batch_size))

    @staticmethod
    def _improved(value, best, mode: str) -> bool:
        if value is None:
            return best is None
        if best is None:
            return True
        return value < best if mode == "min" else value > best

    def _train_epoch(self, tech, ctx: RunContext, epoch: int, total_steps: int) -> dict:
        plain = ctx.model
        model = ctx.model = self.dist.wrap(plain, tech) if self.dist is not None else plain
        try:  # DistributedDataParallel only inside the training loop; hooks and checkpoints see the plain model
            return self._epoch_loop(tech, ctx, model, epoch, total_steps)
        finally:
            ctx.model = plain

    def _epoch_loop(self, tech, ctx: RunContext, model, epoch: int, total_steps: int) -> dict:
        model.train()
        blocks.keep_frozen_bn_in_eval(model)
        tr = ctx.training
        # on a GPU the loop never waits for the device: losses are read when they are shown
        lazy = ctx.device.type == "cuda"
        world = self.dist.world if self.dist else 1
        sums: dict[str, Any] = {}
        n = 0
        seen = 0
        waited = 0.0
        t0 = time.time()
        last_shown = 0.0
        batches = tech.train_batches(ctx, epoch)
        nb = len(batches) if hasattr(batches, "__len__") else ctx.steps_per_epoch
        it = iter(batches)
        i = 0
        while True:
            tw = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            waited += time.perf_counter() - tw
            ctx.control.sync()
            batch = ctx.to_device(batch)
            blocks.apply_lr(ctx.optimizer, blocks.lr_factor(ctx.step, total_steps, ctx.steps_per_epoch, tr))
            out = self._step(tech, ctx, model, batch, epoch, i, lazy)
            ctx.step += 1
            bs = _batch_size(batch)
            seen += bs
            n += 1
            now = time.time()
            show = not lazy or now - last_shown >= 0.25 or i + 1 == nb
            if lazy:
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + (v.detach().float() if torch.is_tensor(v) else float(v))
            if show:
                scalars = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
                if lazy:
                    _check_loss(scalars["loss"], epoch, i)
                else:
                    for k, v in scalars.items():
                        sums[k] = sums.get(k, 0.0) + v
                last_shown = now
                el = now - t0
                self._emit({"kind": "batch", "epoch": epoch + 1, "batch": i + 1, "batches": nb, "step": ctx.step,
                            "loss": scalars["loss"], "values": {k: v for k, v in scalars.items() if k != "loss"},
                            "lr": ctx.lr_by_group(), "images_per_s": seen * world / el if el > 0 else 0.0})
            i += 1
        elapsed = max(1e-9, time.time() - t0)
        keys = sorted(sums)
        totals = [float(sums[k]) for k in keys] + [n, seen, waited, elapsed]
        if self.dist is not None:  # the epoch's figures over all processes
            totals = self.dist.sum(totals)
        *vals, n_all, seen_all, waited_all, elapsed_all = totals
        stats = {f"train_{k}": v / max(1, n_all) for k, v in zip(keys, vals)}
        stats["train_images_per_s"] = seen_all / (elapsed_all / world)
        stats["data_wait_share"] = waited_all / elapsed_all  # share of the epoch spent waiting for the loader
        return stats

    def _step(self, tech, ctx: RunContext, model, batch, epoch: int, i: int, lazy: bool) -> dict:
        """Forward, backward and optimizer step of one batch.  After an out-of-memory on the
        device the batch goes through in halves (gradient accumulation: the optimizer sees the
        same batch) and the run carries on, and says so."""
        while True:
            try:
                return self._apply_batch(tech, ctx, model, batch, epoch, i, lazy)
            except torch.OutOfMemoryError:
                if self.dist is not None:
                    raise  # several processes: the job restarts smaller (see fit)
            # outside the except block, so that the failed attempt's tensors are freed
            self._halve_micro_batch(ctx, batch)

    def _halve_micro_batch(self, ctx: RunContext, batch) -> None:
        n = _batch_size(batch)
        cur = min(ctx.micro_batch or n, n)
        new = cur // 2
        ctx.optimizer.zero_grad(set_to_none=True)
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        if new < 1 or _split_batch(batch, new) is None:
            raise StudioError(f"Out of GPU memory even with {cur} image(s) at a time. Choose a smaller image size "
                              "or a smaller model, or close other programs that use the graphics card.")
        ctx.micro_batch = new
        ctx.emit("log", level="warning", oom={"from": cur, "to": new, "batch": n},
                 message=f"Out of GPU memory with {cur} images at a time: continuing with {new} at a time "
                         f"(gradient accumulation keeps the batch of {n}, so the results do not change).")
        if self.run is not None and self._main:
            self.run.set_status(RUNNING, micro_batch=new)

    def _apply_batch(self, tech, ctx: RunContext, model, batch, epoch: int, i: int, lazy: bool) -> dict:
        tr = ctx.training
        n = _batch_size(batch)
        micro = ctx.micro_batch
        parts = _split_batch(batch, micro) if micro and micro < n else None
        ddp = model is not unwrap_model(model)
        if ddp:
            model._tl_used = False
        if parts is None:
            with ctx.autocast():
                out = tech.training_step(ctx, batch)
            loss = out["loss"]
            if not lazy:
                _check_loss(loss, epoch, i)
            ctx.optimizer.zero_grad(set_to_none=True)
            self._backward(ctx, loss)
        else:
            ctx.optimizer.zero_grad(set_to_none=True)
            out = {}
            for k, part in enumerate(parts):
                w = _batch_size(part) / n
                last = k == len(parts) - 1
                with (model.no_sync() if ddp and not last else contextlib.nullcontext()):
                    with ctx.autocast():
                        o = tech.training_step(ctx, part)
                    if not lazy:
                        _check_loss(o["loss"], epoch, i)
                    self._backward(ctx, o["loss"] * w)
                for key, v in o.items():
                    out[key] = out.get(key, 0.0) + (v.detach() if torch.is_tensor(v) else float(v)) * w
                del o
        if ddp and not model._tl_used:  # the step did not go through the DDP forward (ctx.model.head(f))
            self.dist.average_gradients(p for g in ctx.optimizer.param_groups for p in g["params"])
        if ctx.scaler is not None:
            if tr.grad_clip:
                ctx.scaler.unscale_(ctx.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        else:
            if tr.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
            ctx.optimizer.step()
        return out

    @staticmethod
    def _backward(ctx: RunContext, loss: torch.Tensor) -> None:
        if ctx.scaler is not None:
            ctx.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _write_run_files(self, ctx: RunContext) -> None:
        run = self.run
        proj = self.project.with_absolute_paths()
        split_file = getattr(ctx.data, "split_file", None)
        if split_file and Path(split_file).exists():
            import shutil

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
            from .io import atomic_write_json

            atomic_write_json(run.dir / "data.json", ctx.data.describe())

    def _checkpoint_meta(self, ctx: RunContext) -> dict:
        # "technique" holds the technique's own state (state_dict); its id goes under "technique_id"
        return {"technique_id": ctx.technique.id, "architecture": self.project.model.architecture,
                "class_names": list(getattr(ctx.data, "class_names", []) or []),
                "model_info": {k: str(v) for k, v in ctx.model_info.items()}}

    def _save_best(self, ctx: RunContext, epoch: int, value, name: str) -> None:
        ckpt.save_best(self.run, {"model": ctx.model.state_dict(), "technique": ctx.technique.state_dict(),
                                  "epoch": epoch + 1, "monitor": name, "value": value, **self._checkpoint_meta(ctx)})

    def _save_last(self, ctx: RunContext, epochs_done: int, best: dict, bad_epochs: int) -> None:
        ckpt.save_last(self.run, {
            "model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
            "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
            "technique": ctx.technique.state_dict(), "epoch": epochs_done, "step": ctx.step,
            "best": best, "bad_epochs": bad_epochs, **self._checkpoint_meta(ctx),
            "world_size": self.dist.world if self.dist else 1, "micro_batch": ctx.micro_batch,
            "train_seconds": self.seconds_before + (time.time() - self._t_start),
        })

    def _load_checkpoint(self, ctx: RunContext) -> dict | None:
        state = ckpt.restore(self.run, ctx, self.dist, self._main)
        if not self.seconds_before:
            self.seconds_before = float((state or {}).get("train_seconds") or 0.0)
        return state

    def _finish(self, tech, ctx: RunContext, best: dict, mon_name: str, t_start: float) -> dict:
        run = self.run
        train_seconds = self.seconds_before + (time.time() - t_start)
        st = ckpt.load_best_model(run, ctx.log)
        if st is not None:
            ctx.model.load_state_dict(st["model"])
            tech.load_state_dict(st.get("technique") or {})
        tech.before_test(ctx)  # classifiers: calibration, operating point, prediction sets (on validation)
        test: dict = {}
        held_back = not self.evaluate_test and self._has_split(ctx, "test")
        if self.evaluate_test and self._has_split(ctx, "test"):
            test = tech.evaluate(ctx, "test")
            tech.write_evaluation(ctx, "test", test)
        from .metrics import scalar_metrics

        final = {
            "status": DONE, "run_dir": str(run.dir), "run_id": run.id, "technique": tech.id,
            "model": self.project.model.architecture, "monitor": mon_name, "best_value": best["value"],
            "best_epoch": best["epoch"], "train_seconds": train_seconds, "device": self._device_text(ctx.device),
            "processes": self.dist.world if self.dist else 1, "test": test, **{f"test_{k}": v for k, v in scalar_metrics(test).items()},
            **({"test_held_back": True} if held_back else {}),
        }
        if ctx.state.get("source_task") is not None:  # started from an earlier run: what it kept of that task
            final.update(ctx.state["source_task"].final_metrics(ctx))
        run.write_final(final)
        tech.write_report(ctx, final)
        run.set_status(DONE, best_value=best["value"], best_epoch=best["epoch"])
        _clear_stop(run)
        self._emit({"kind": "done", **{k: v for k, v in final.items() if k != "test"}, "test": scalar_metrics(test)})
        return final


def _check_loss(loss, epoch: int, i: int) -> None:
    v = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
    if not math.isfinite(v):
        raise StudioError(f"The loss became {v} at epoch {epoch + 1}, batch {i + 1}: the learning "
                          "rate is probably too high. Lower it (for example by 10x) and train again.")


def _clear_stop(run: Run) -> None:
    from .distributed import clear_stop_request

    clear_stop_request(run.dir)


def unwrap_model(model):
    """The plain model inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _split_batch(batch: Any, size: int) -> list | None:
    """``batch`` cut into parts of at most ``size`` samples (tensors along their first
    dimension, lists of per-sample items, recursively); None when it cannot be cut."""
    n = _batch_size(batch)
    if n <= size:
        return [batch]
    found = []

    def cut(x, a: int, b: int):
        if torch.is_tensor(x):
            if x.dim() and x.shape[0] == n:
                found.append(True)
                return x[a:b]
            return x
        if isinstance(x, dict):
            return {k: cut(v, a, b) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            if len(x) == n and not any(isinstance(v, (torch.Tensor, list, tuple, dict)) for v in x):
                found.append(True)
                return type(x)(x[a:b])
            return type(x)(cut(v, a, b) for v in x)
        return x

    parts = [cut(batch, a, min(n, a + size)) for a in range(0, n, size)]
    return parts if found else None


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 1


# --- public entry points ------------------------------------------------------------------
def train(project: Project, *, on_event: EventCallback | None = None, control: RunControl | None = None,
          runs_dir: str | Path | None = None, plugins=None) -> dict:
    """Train ``project`` to the end (or until stopped); returns the final summary."""
    return Trainer(project, on_event=on_event, control=control, runs_dir=runs_dir, plugins=plugins).fit()


def resume(run_ref: str | Path, *, on_event: EventCallback | None = None, control: RunControl | None = None,
           runs_dir: str | Path | None = None, plugins=None, epochs: int | None = None) -> dict:
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
        return ckpt.finished_summary(run, project, on_event)
    if epochs:
        project.training.epochs = epochs
        run.save_project(project)
    return Trainer(project, on_event=on_event, control=control, runs_dir=run.dir.parent, plugins=plugins,
                   resume_run=run).fit()
