"""What a technique and its task get from the studio: the services of a run (``RunContext``)
or of a prediction (``InferenceContext``), and the training state (``TrainState``).

Both contexts offer what building a model needs (the project, the technique's settings, the
task, the device, the model library, ``build_classifier``, ``forward``, ``autocast``); only a
run has a run folder, events, loaders, an optimizer and the loop's state.  A prediction's
context loads no pretrained weights (``weights`` is "none": the checkpoint brings them).
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import Project
from ..events import Event, Log, Progress, StageChanged
from ..techniques import blocks
from ..techniques.base import Recipe
from .control import RunControl

EventCallback = Callable[[Event], None]


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors (in lists, tuples and dicts, recursively) onto ``device``; 4-D float images in
    channels-last memory order when asked."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


@dataclass
class TrainState:
    """Where the loop stands: what a checkpoint saves besides the weights."""

    epoch: int = 0  # the epoch being trained (0-based); after a resume, the last completed one until it starts
    step: int = 0  # optimizer steps so far
    steps_per_epoch: int = 1
    epochs: int = 1
    optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    micro_batch: int | None = None  # images at a time after an out-of-memory (None: whole batches)

    @property
    def progress(self) -> float:
        """Share of the planned training done, 0..1 (schedules of techniques use it)."""
        return min(1.0, self.step / max(1, self.steps_per_epoch * self.epochs))


class _Context:
    """What building and running a model needs, for a run and for a prediction alike."""

    weights = "imagenet"

    def __init__(self, project: Project, technique, config, task, device: torch.device, plugins=None,
                 emit: EventCallback | None = None):
        from ..models import ModelLibrary

        self.project = project
        self.technique = technique
        self.config = config
        self.task = task
        self.device = device
        self.plugins = plugins
        self.library = ModelLibrary(
            sources=(plugins.model_sources() if plugins else None) or None,
            extra_architectures=(plugins.architectures() if plugins else None) or None,
        )
        self.data: Any = None
        self.model: Any = None
        self.model_info: dict = {}
        self.scratch: dict = {}  # what the task keeps for itself during this run or prediction
        self.control = RunControl()  # reading data checks it (a run's Stop)
        self._emit = emit or (lambda e: None)
        self.amp_dtype = None
        if device.type == "cuda" and project.training.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

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
        from ..settings import cache_dir

        return cache_dir()

    # --- events ---------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        self._emit(event)

    def log(self, message: str, level: str = "info", **data: Any) -> None:
        self.emit(Log(message=message, level=level, data=data))

    def progress(self, task: str, done: int, total: int) -> None:
        self.emit(Progress(task=task, done=done, total=total))
        self.control.check()

    def to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device, self.channels_last)

    @property
    def channels_last(self) -> bool:
        """Images travel in channels-last memory order on CUDA, and on the CPU for image
        classifiers, whose convolutions run 1.5x faster that way there (bench/engine_overhead.py).
        Detection and captioning models keep the CPU's usual order (not measured for them)."""
        if self.device.type == "cuda":
            return True
        from ..models.classifier import ClassifierModel

        return self.device.type == "cpu" and isinstance(getattr(self, "model", None), ClassifierModel)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def forward(self, x) -> Any:
        """The model's outputs for a batch's inputs, the way the task runs its model."""
        return self.task.forward(self, x)

    def build_classifier(self, head: str = "linear", dropout: float = 0.0, hidden: int = 256):
        """The project's architecture with a new head for this data's classes, with the
        pretrained weights of ``self.weights`` ("none" when predicting: the checkpoint follows)."""
        model, info = self.library.build(self.project.model.architecture, self.num_classes, weights=self.weights,
                                         head=head, dropout=dropout, hidden=hidden)
        self.model_info = info
        model.flip_average = self.project.augmentation.flips_at_test
        return model


class InferenceContext(_Context):
    """A trained run's model for prediction, export and Grad-CAM (no run folder, no events)."""

    weights = "none"


class RunContext(_Context):
    """Everything a technique needs from the studio during one run."""

    def __init__(self, project: Project, technique, config, device: torch.device, *, run=None, task=None,
                 plugins=None, control: RunControl | None = None, emit: EventCallback | None = None):
        if task is None:
            task = (plugins.task(technique.task) if plugins is not None else _builtin_task(technique.task)).fresh()
        super().__init__(project, technique, config, task, device, plugins, emit)
        self.run = run
        self.control = control or RunControl()
        self.recipe = Recipe.of(technique, config)
        self.train = TrainState(epochs=project.training.epochs)
        self.source_task = None  # the earlier run's task when the run starts from one (see engine.sequential)
        self.eval_details: dict = {}
        self.dist = None  # a tlstudio.core.engine.distributed.Distributed under torchrun
        self._loaders: dict = {}
        self._class_weights: torch.Tensor | None = None

    @property
    def weights(self) -> str:
        m = self.project.model
        return "none" if m.from_run else m.weights

    def stage(self, **fields: Any) -> None:
        """A technique changed what trains (see StageChanged); the charts mark it."""
        self.emit(StageChanged(**fields))

    # --- models ---------------------------------------------------------------------------------
    def build_classifier(self, head: str = "linear", dropout: float = 0.0, hidden: int = 256):
        """As for a prediction, then: the project's pretrained weights, or the trained model of
        an earlier run (sequential transfer, see :mod:`tlstudio.core.engine.sequential`)."""
        model = super().build_classifier(head, dropout, hidden)
        m = self.project.model
        if m.from_run:
            from .sequential import start_from_run

            start_from_run(self, model)
        elif m.weights != "none":
            info = self.model_info
            self.log(f"Pretrained weights: {info.get('weights_path') or info.get('weights')} "
                     f"({info.get('weights_source', '')})")
        return model

    def forward(self, x) -> Any:
        out = self.recipe.first("forward", self, x)
        return self.task.forward(self, x) if out is None else out

    def training_step(self, batch) -> dict:
        """One batch through the recipe: callbacks may change the batch (mixup), the
        technique makes the loss, callbacks add to it (penalties)."""
        batch = self.recipe.pipe("before_batch", self, batch)
        out = self.technique.training_step(self, batch)
        self.recipe.call("after_loss", self, out)
        return out

    def class_weights(self) -> torch.Tensor | None:
        """Inverse class frequencies of the training split when the project asks for a
        class-weighted loss (None otherwise)."""
        if self._class_weights is None and self.training.class_balance == "weighted_loss" and hasattr(self.data, "labels"):
            y = torch.as_tensor(self.data.labels("train"))
            counts = torch.bincount(y, minlength=self.num_classes).clamp(min=1).float()
            self._class_weights = (counts.sum() / (len(counts) * counts)).to(self.device)
        return self._class_weights

    def criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with the project's label smoothing and class balance (hard or soft targets)."""
        return torch.nn.functional.cross_entropy(logits.float(), targets, weight=self.class_weights(),
                                                 label_smoothing=self.training.label_smoothing)

    def evaluate(self, split: str) -> dict:
        """Metrics of the current model on ``split``: the task's, with what callbacks add."""
        metrics = self.task.evaluate(self, split)
        self.recipe.call("after_evaluate", self, split, metrics)
        return metrics

    def eval_batches(self, split: str):
        """What evaluation iterates over: a callback's (cached features) or the split's loader."""
        out = self.recipe.first("eval_batches", self, split)
        return self.loader(split, train=False) if out is None else out

    def train_batches(self, epoch: int):
        """What a training epoch iterates over: a callback's, or the task's training loader."""
        out = self.recipe.first("train_batches", self, epoch)
        return self.task.train_batches(self, epoch) if out is None else out

    # --- optimizer ------------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """The technique's parameter groups, reshaped by its callbacks."""
        return self.recipe.pipe("adjust_param_groups", self, self.technique.param_groups(self))

    def set_param_groups(self, groups: list[dict]) -> None:
        """(Re)build the optimizer from parameter groups, keeping the state of parameters
        that were already training (used by progressive unfreezing)."""
        old = self.train.optimizer
        self.train.optimizer = blocks.make_optimizer(groups, self.training)
        blocks.carry_optimizer_state(old, self.train.optimizer)

    def rebuild_optimizer(self) -> None:
        """After what trains changed (a new stage): the groups asked again, the state kept."""
        self.set_param_groups(self.param_groups())

    def lr_by_group(self) -> dict[str, float]:
        opt = self.train.optimizer
        if opt is None:
            return {}
        return {g.get("name", str(i)): float(g["lr"]) for i, g in enumerate(opt.param_groups)}

    # --- data -----------------------------------------------------------------------------------
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
        extra = {"persistent_workers": True, "prefetch_factor": 4} if keep else {}
        dl = torch.utils.data.DataLoader(
            ds, batch_size=bs, shuffle=shuffle if sampler is None else False, sampler=sampler, generator=g,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            drop_last=bool(train and n > bs and n % bs == 1),
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


def _builtin_task(task_id: str):
    from ..plugins import get_plugin_manager

    return get_plugin_manager().task(task_id)
