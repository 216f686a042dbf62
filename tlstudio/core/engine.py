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
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import blocks
from .config import Project
from .errors import RunStopped, StudioError, advice_for
from .io import atomic_torch_save
from .runs import DONE, FAILED, RUNNING, STOPPED, Run, open_run
from .settings import load_settings

EventCallback = Callable[[dict], None]


class RunControl:
    """Stop and pause flags; the engine checks them before every batch."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set()

    def check(self) -> None:
        """Block while paused; raise :class:`RunStopped` once Stop was pressed."""
        while not self._go.wait(0.2):
            pass
        if self._stop.is_set():
            raise RunStopped()


# --- devices and seeds ------------------------------------------------------------------
def select_device(pref: str = "auto") -> torch.device:
    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(pref)
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
    def loader(self, split: str, train: bool = False, epoch: int = 0, batch_size: int | None = None,
               dataset=None, shuffle: bool | None = None) -> torch.utils.data.DataLoader:
        """A DataLoader over ``split`` (or ``dataset``), seeded per epoch so that a resumed
        run sees exactly the batches an uninterrupted one would have seen."""
        ds = dataset if dataset is not None else self.data.dataset(split, train=train)
        bs = batch_size or self.training.batch_size
        g = torch.Generator().manual_seed(self.training.seed * 7919 + epoch)
        sampler = None
        shuffle = train if shuffle is None else shuffle
        y = self._sampler_labels(split, dataset) if train and self.training.class_balance == "balanced_sampler" else None
        if y is not None:
            w = 1.0 / torch.bincount(y, minlength=self.num_classes).clamp(min=1).float()
            sampler = torch.utils.data.WeightedRandomSampler(w[y], num_samples=len(y), replacement=True, generator=g)
            shuffle = False
        workers = self.training.num_workers
        return torch.utils.data.DataLoader(
            ds, batch_size=bs, shuffle=shuffle if sampler is None else False, sampler=sampler, generator=g,
            num_workers=workers, persistent_workers=False, pin_memory=self.device.type == "cuda",
            drop_last=bool(train and len(ds) > bs and len(ds) % bs == 1),
            collate_fn=getattr(self.data, "collate", None),
        )

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
        return _to_device(batch, self.device, self.device.type == "cuda")

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
                 runs_dir: str | Path | None = None, plugins=None, resume_run: Run | None = None):
        from .plugins import get_plugin_manager

        self.plugins = plugins or get_plugin_manager()
        self.project = project
        self.on_event = on_event
        self.control = control or RunControl()
        self.runs_dir = Path(runs_dir) if runs_dir else load_settings().runs_path()
        self.run: Run | None = resume_run
        self.ctx: RunContext | None = None
        self.result: dict = {}

    # events go to the caller, the run store and observer plugins
    def _emit(self, event: dict) -> None:
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
        t_start = time.time()
        resuming = self.run is not None
        try:
            tech, cfg = _technique_for(self.project, self.plugins)
            tr = self.project.training
            if tr.threads:
                torch.set_num_threads(tr.threads)
            if tr.deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.use_deterministic_algorithms(True, warn_only=True)
                torch.backends.cudnn.benchmark = False
            device = select_device(tr.device)
            if device.type == "cuda" and not tr.deterministic:
                torch.backends.cudnn.benchmark = True
            if self.run is None:
                self.run = Run.create(self.runs_dir, self.project)
            run = self.run
            ctx = self.ctx = RunContext(self.project, tech, cfg, device, run=run, plugins=self.plugins,
                                        control=self.control, emit=self._emit)
            mon_name, mon_mode = _monitor(self.project, tech)
            self._emit({"kind": "start", "run_dir": str(run.dir), "run_id": run.id, "technique": tech.id,
                        "model": self.project.model.architecture, "device": describe_device(device),
                        "epochs": tr.epochs, "resumed": resuming, "monitor": mon_name,
                        "series": dict(getattr(tech, "series", {}))})
            seed_everything(tr.seed)
            tech.prepare_data(ctx)
            if not resuming:
                self._write_run_files(ctx)
            torch.manual_seed(tr.seed)
            ctx.model = tech.build(ctx).to(device)
            if device.type == "cuda":
                ctx.model = ctx.model.to(memory_format=torch.channels_last)
            state = self._load_checkpoint(ctx) if resuming else None
            start_epoch = state["epoch"] if state else 0
            best = state["best"] if state else {"value": None, "epoch": None, "loss": float("inf")}
            bad_epochs = state["bad_epochs"] if state else 0
            ctx.epoch = max(0, start_epoch - 1)
            tech.on_fit_start(ctx)
            ctx.set_param_groups(tech.param_groups(ctx))
            if state:
                ctx.optimizer.load_state_dict(state["optimizer"])
            if ctx.amp_dtype == torch.float16:
                ctx.scaler = torch.amp.GradScaler("cuda")
                if state and state.get("scaler"):
                    ctx.scaler.load_state_dict(state["scaler"])
            run.set_status(RUNNING, monitor=mon_name)
            has_val = self._has_split(ctx, "val")
            ctx.steps_per_epoch = self._steps_per_epoch(tech, ctx)
            total_steps = ctx.steps_per_epoch * tr.epochs

            for epoch in range(start_epoch, tr.epochs):
                ctx.epoch = epoch
                seed_everything(tr.seed, epoch + 1)
                tech.on_epoch_start(ctx, epoch)
                t0 = time.time()
                train_stats = self._train_epoch(tech, ctx, epoch, total_steps)
                val = tech.evaluate(ctx, "val") if has_val else {}
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
                    self._save_best(ctx, epoch, value, mon_name)
                else:
                    bad_epochs += 1
                self._save_last(ctx, epoch + 1, best, bad_epochs)
                self._emit({"kind": "epoch", "epoch": epoch + 1, "epochs": tr.epochs, **train_stats, **val_scalars,
                            "lr": ctx.lr_by_group(), "series": {k: float(v) for k, v in extra.items()},
                            "seconds": time.time() - t0, "best": improved, "monitor": mon_name})
                run.set_status(RUNNING, epoch=epoch + 1, best_value=best["value"], best_epoch=best["epoch"])
                if tr.early_stopping and bad_epochs >= tr.early_stopping:
                    ctx.log(f"Early stopping: {mon_name} did not improve for {bad_epochs} epochs.")
                    break

            self.result = self._finish(tech, ctx, best, mon_name, t_start)
            return self.result
        except RunStopped:
            if self.run is not None:
                self.run.set_status(STOPPED)
            self._emit({"kind": "stopped", "run_dir": str(self.run.dir) if self.run else None,
                        "message": "Stopped. The run can be resumed from its last completed epoch."})
            self.result = {"status": STOPPED, "run_dir": str(self.run.dir) if self.run else None}
            return self.result
        except BaseException as e:  # noqa: BLE001 - every failure becomes a readable event
            if isinstance(e, KeyboardInterrupt):
                if self.run is not None:
                    self.run.set_status(STOPPED)
                raise
            msg = str(e) if isinstance(e, StudioError) else f"{type(e).__name__}: {e}"
            if self.run is not None:
                self.run.set_status(FAILED, message=msg)
            self._emit({"kind": "failed", "message": msg, "details": traceback.format_exc(),
                        "advice": advice_for(e), "run_dir": str(self.run.dir) if self.run else None})
            self.result = {"status": FAILED, "message": msg, "run_dir": str(self.run.dir) if self.run else None}
            return self.result

    # --- pieces -----------------------------------------------------------------------
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
        model = ctx.model
        model.train()
        blocks.keep_frozen_bn_in_eval(model)
        tr = ctx.training
        sums: dict[str, float] = {}
        n = 0
        seen = 0
        t0 = time.time()
        batches = tech.train_batches(ctx, epoch)
        nb = len(batches) if hasattr(batches, "__len__") else ctx.steps_per_epoch
        for i, batch in enumerate(batches):
            ctx.control.check()
            batch = ctx.to_device(batch)
            blocks.apply_lr(ctx.optimizer, blocks.lr_factor(ctx.step, total_steps, ctx.steps_per_epoch, tr))
            with ctx.autocast():
                out = tech.training_step(ctx, batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise StudioError(f"The loss became {float(loss)} at epoch {epoch + 1}, batch {i + 1}: the learning "
                                  "rate is probably too high. Lower it (for example by 10x) and train again.")
            ctx.optimizer.zero_grad(set_to_none=True)
            if ctx.scaler is not None:
                ctx.scaler.scale(loss).backward()
                if tr.grad_clip:
                    ctx.scaler.unscale_(ctx.optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
                ctx.scaler.step(ctx.optimizer)
                ctx.scaler.update()
            else:
                loss.backward()
                if tr.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
                ctx.optimizer.step()
            ctx.step += 1
            bs = _batch_size(batch)
            seen += bs
            n += 1
            scalars = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items()}
            for k, v in scalars.items():
                sums[k] = sums.get(k, 0.0) + v
            el = time.time() - t0
            self._emit({"kind": "batch", "epoch": epoch + 1, "batch": i + 1, "batches": nb, "step": ctx.step,
                        "loss": scalars["loss"], "values": {k: v for k, v in scalars.items() if k != "loss"},
                        "lr": ctx.lr_by_group(), "images_per_s": seen / el if el > 0 else 0.0})
        stats = {f"train_{k}": v / max(1, n) for k, v in sums.items()}
        stats["train_images_per_s"] = seen / max(1e-9, time.time() - t0)
        return stats

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
        run.write_env(device=describe_device(ctx.device), seed=ctx.training.seed,
                      data_fingerprint=getattr(ctx.data, "fingerprint", ""),
                      deterministic=ctx.training.deterministic)
        if hasattr(ctx.data, "describe"):
            from .io import atomic_write_json

            atomic_write_json(run.dir / "data.json", ctx.data.describe())

    def _checkpoint_meta(self, ctx: RunContext) -> dict:
        # "technique" holds the technique's own state (state_dict); its id goes under "technique_id"
        return {"technique_id": ctx.technique.id, "architecture": self.project.model.architecture,
                "class_names": list(getattr(ctx.data, "class_names", []) or []),
                "model_info": {k: str(v) for k, v in ctx.model_info.items()}}

    def _save_best(self, ctx: RunContext, epoch: int, value, name: str) -> None:
        atomic_torch_save({"model": ctx.model.state_dict(), "technique": ctx.technique.state_dict(),
                           "epoch": epoch + 1, "monitor": name, "value": value, **self._checkpoint_meta(ctx)},
                          self.run.best_checkpoint)

    def _save_last(self, ctx: RunContext, epochs_done: int, best: dict, bad_epochs: int) -> None:
        atomic_torch_save({
            "model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
            "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
            "technique": ctx.technique.state_dict(), "epoch": epochs_done, "step": ctx.step,
            "best": best, "bad_epochs": bad_epochs, **self._checkpoint_meta(ctx),
        }, self.run.last_checkpoint)

    def _load_checkpoint(self, ctx: RunContext) -> dict | None:
        path = self.run.last_checkpoint
        if not path.exists():
            ctx.log("No checkpoint yet: the run starts again from its first epoch.", "warning")
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        ctx.model.load_state_dict(state["model"])
        ctx.technique.load_state_dict(state.get("technique") or {})
        ctx.step = int(state.get("step", 0))
        ctx.log(f"Resuming after epoch {state['epoch']} of {ctx.training.epochs}.")
        return state

    def _finish(self, tech, ctx: RunContext, best: dict, mon_name: str, t_start: float) -> dict:
        run = self.run
        train_seconds = time.time() - t_start
        if run.best_checkpoint.exists():
            st = torch.load(run.best_checkpoint, map_location="cpu", weights_only=True)
            ctx.model.load_state_dict(st["model"])
            tech.load_state_dict(st.get("technique") or {})
        test: dict = {}
        if self._has_split(ctx, "test"):
            test = tech.evaluate(ctx, "test")
            tech.write_evaluation(ctx, "test", test)
        from .metrics import scalar_metrics

        final = {
            "status": DONE, "run_dir": str(run.dir), "run_id": run.id, "technique": tech.id,
            "model": self.project.model.architecture, "monitor": mon_name, "best_value": best["value"],
            "best_epoch": best["epoch"], "train_seconds": train_seconds, "device": describe_device(ctx.device),
            "test": test, **{f"test_{k}": v for k, v in scalar_metrics(test).items()},
        }
        if ctx.state.get("source_task") is not None:  # started from an earlier run: what it kept of that task
            final.update(ctx.state["source_task"].final_metrics(ctx))
        run.write_final(final)
        tech.write_report(ctx, final)
        run.set_status(DONE, best_value=best["value"], best_epoch=best["epoch"])
        self._emit({"kind": "done", **{k: v for k, v in final.items() if k != "test"}, "test": scalar_metrics(test)})
        return final


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
    """Continue a stopped or interrupted run in its own folder."""
    root = Path(runs_dir) if runs_dir else load_settings().runs_path()
    run = open_run(run_ref, root)
    project = run.project()
    if epochs:
        project.training.epochs = epochs
        run.save_project(project)
    return Trainer(project, on_event=on_event, control=control, runs_dir=run.dir.parent, plugins=plugins,
                   resume_run=run).fit()
