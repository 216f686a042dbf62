"""What a technique and its task get from the studio during a run: the services of a run
(``RunContext``: the run folder, events, loaders, the optimizer, the recipe) and where the
loop stands (``TrainState``).  What building a model needs, for a run and for a prediction
alike, is :class:`tlstudio.core.engine.services.ModelContext`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..config import Project
from ..events import StageChanged
from ..techniques import blocks
from ..techniques.base import Recipe
from .control import RunControl
from .services import EventCallback, ModelContext


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


class RunContext(ModelContext):
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
        drop_last = bool(train and n > bs and n % bs == 1)
        from ..data.device_loader import device_loader

        fast = device_loader(self, ds, sampler, shuffle, bs, drop_last, g)  # on a GPU: whole batches, augmented there
        if fast is not None:
            return fast
        extra = {"persistent_workers": True, "prefetch_factor": 4} if keep else {}
        dl = torch.utils.data.DataLoader(
            ds, batch_size=bs, shuffle=shuffle if sampler is None else False, sampler=sampler, generator=g,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            drop_last=drop_last, collate_fn=getattr(self.data, "collate", None), **extra,
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
