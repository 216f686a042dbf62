"""What building and running a model needs, for a run and for a prediction alike: the
project, the technique's settings, the task, the device, the model library,
``build_classifier``, ``forward``, ``autocast``.  A prediction's context
(``InferenceContext``) loads no pretrained weights: the checkpoint brings them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import Project
from ..events import Event, Log, Progress
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


class ModelContext:
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



class InferenceContext(ModelContext):
    """A trained run's model for prediction, export and Grad-CAM (no training; ``run_dir`` is
    the folder of the run it comes from, read only)."""

    weights = "none"
    run_dir = None
    checkpoint: dict = {}  # the checkpoint's meta: epoch, monitor, classes (set by open_run_model)
