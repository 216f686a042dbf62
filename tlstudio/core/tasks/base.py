"""What a task is: a kind of problem (image classification, detection, captioning, text
classification ...) and everything it needs whatever the recipe.

A task owns its data (readers, reading, splitting, preprocessing), the loss a technique uses
unless it makes its own, evaluation and the files it writes, prediction on new inputs, the
export spec of a package, and the window's words and result view.  The window and the command
line ask the task; they never compare task names.  Tasks are plugins (hook
``tlstudio_tasks``): the built-in ones are registered exactly as a third party's would be.

================================  ===============================================================
method                            what the task does there
================================  ===============================================================
prepare_data(ctx)                 read, check, split and cache the project's data -> ``ctx.data``
train_batches(ctx, epoch)         what an epoch iterates over (default: the training loader)
forward(ctx, x)                   the model's outputs for a batch's inputs
training_step(ctx, batch)         the usual loss: ``{"loss": tensor, ...}``
predict_step(ctx, batch)          (outputs, targets) for evaluation
evaluate(ctx, split)              metrics of ``split`` ({"loss", ...}); details kept for writing
on_epoch_end(ctx, epoch, m)       chart series the task adds (mAP, CIDEr)
before_test(ctx)                  with the best model, before the test: fit what is fitted on
                                  validation (classifiers: calibration, operating point, sets)
write_evaluation(ctx, split, m)   result files in the run folder (predictions, evaluation_*.json)
report(ctx, final)                the run's report.md (technique sections are appended)
load_for_inference(ctx, run, ck)  what predicting needs (classes, preprocessing) -> ``ctx.data``
inference_model(ctx)              preprocessed inputs -> outputs (predict, export, Grad-CAM)
expand_inputs(inputs)             what the user named (files, folders, texts) -> predict's inputs
predict_inputs(ctx, inputs)       raw inputs -> one dict per input (a bad one gets {"error"})
export_inputs / export_spec       real example inputs and the package description
predict_package(package, inputs)  predict with an exported package alone
result_view(run_dir, parent)      the window's view of a finished run (Qt imported inside)
================================  ===============================================================
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from .traits import TaskTraits


class Task:
    """Base class of tasks (see the module docstring).

    A task says what it is like in ``traits`` (:class:`~.traits.TaskTraits`: its data, the
    window's words, the studio's tools that apply to it); ``id``, ``title``, ``description``,
    ``item`` and ``inputs`` are read from there.  A subclass may instead set those attributes
    (and ``annotation``/``abilities``): its traits are then made from them."""

    traits: ClassVar[TaskTraits] = TaskTraits(id="")

    #: id used in project files ("image-classification")
    id: ClassVar[str] = ""
    #: title for the window ("Image classification")
    title: ClassVar[str] = ""
    #: what the data are, in plain words, for the Data page
    description: ClassVar[str] = ""
    #: what one item is called ("image", "text") and what prediction takes ("images" or "texts")
    item: ClassVar[str] = "image"
    inputs: ClassVar[str] = "images"
    #: validation metric that picks the best epoch when the project says "auto"
    default_monitor: ClassVar[str] = "val_loss"
    #: the test figures a finished run is summed up by: (metric, label), in order
    headline: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: chart series the task adds in on_epoch_end (name -> title)
    series: ClassVar[dict[str, str]] = {}
    #: the export formats (exporter ids) its packages can be made in; None: every installed exporter
    export_formats: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "traits" in cls.__dict__:
            for name in ("id", "title", "description", "item", "inputs"):
                setattr(cls, name, getattr(cls.traits, name))
        elif "id" in cls.__dict__:
            base = cls.traits if cls.traits.id else TaskTraits(id="")
            own = {name: getattr(cls, name) for name in ("id", "title", "description", "item", "inputs")}
            extra = {name: cls.__dict__[name] for name in ("annotation", "abilities", "noun", "sources")
                     if name in cls.__dict__}
            cls.traits = dataclasses.replace(base, **own, **extra)

    def fresh(self) -> "Task":
        """A new instance for one run."""
        return type(self)()

    # --- data -----------------------------------------------------------------------------------
    def readers(self, plugins) -> list:
        """The data readers of this task (a reader says its task with ``reader.task``)."""
        return [r for r in (plugins.readers() if plugins is not None else [])
                if getattr(r, "task", "image-classification") == self.id]

    def prepare_data(self, ctx) -> Any:
        raise NotImplementedError(f"the task '{self.id}' does not define prepare_data(ctx)")

    # --- training -------------------------------------------------------------------------------
    def train_batches(self, ctx, epoch: int):
        """What a training epoch iterates over unless a callback says otherwise."""
        return ctx.loader("train", train=True, epoch=epoch)

    def forward(self, ctx, x) -> Any:
        return ctx.model(x)

    def training_step(self, ctx, batch) -> dict:
        raise NotImplementedError(f"the task '{self.id}' has no usual loss: the technique must define training_step")

    def predict_step(self, ctx, batch) -> tuple:
        x, y = batch
        return ctx.forward(x), y

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {}

    # --- results --------------------------------------------------------------------------------
    def evaluate(self, ctx, split: str) -> dict:
        raise NotImplementedError(f"the task '{self.id}' does not define evaluate(ctx, split)")

    def before_test(self, ctx) -> None:
        """After the last epoch, with the best model loaded, before the test evaluation: fit
        what is fitted on the validation split (classifiers: calibration, the operating point
        and prediction sets; see :func:`tlstudio.core.tasks.classification.fit_run_decision`)."""

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        """Write the detailed results of ``split`` into the run folder."""

    def report(self, ctx, final: dict) -> str:
        """The run's report.md (Markdown); techniques and callbacks append their sections."""
        return ""

    def summary(self, test: dict) -> list[str]:
        """The headline test figures in words ("AUC 0.912"), for the end of a run."""
        return [f"{label} {test[key]:.3f}" for key, label in self.headline if test.get(key) is not None]

    def result_view(self, run_dir: Any, parent: Any = None) -> Any:
        """A Qt widget for a finished run's results in this task's own way, or None for the
        studio's standard views.  Import Qt *inside* this method."""
        return None

    # --- prediction and export ------------------------------------------------------------------
    def load_for_inference(self, ctx, run_dir: Any, checkpoint: dict) -> Any:
        raise NotImplementedError(f"the task '{self.id}' cannot predict (load_for_inference)")

    def inference_model(self, ctx) -> Any:
        return ctx.model

    def expand_inputs(self, inputs: list) -> list:
        """What the user named (files, folders; or texts) as the inputs ``predict_inputs`` takes:
        image files as given and folders expanded to the image files inside them."""
        from ..data.table import expand_paths

        return [str(p) for p in expand_paths(inputs)]

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        raise NotImplementedError(f"the task '{self.id}' cannot predict (predict_inputs)")

    def export_inputs(self, ctx, n: int) -> tuple:
        """Up to ``n`` REAL preprocessed inputs from the run's validation data (a tuple of
        tensors batched on dim 0, one per argument of ``inference_model``)."""
        raise NotImplementedError(f"the task '{self.id}' does not provide example inputs for export")

    def export_spec(self, ctx) -> dict:
        """What a package needs besides the weights: ``inputs``/``outputs`` names, optional
        ``dynamic_axes`` ({"input_ids": {0: "batch", 1: "sequence"}}), ``labels``,
        ``preprocessing`` (JSON a third party can reproduce), ``postprocess``, and ``files``
        ({name in the package: path}: files that go with the model, such as a tokenizer's)."""
        return {"task": self.id, "inputs": ["input"], "outputs": ["output"], "labels": [],
                "preprocessing": {}, "postprocess": "none"}

    def predict_package(self, package, inputs: list) -> list[dict]:
        """Raw inputs -> one dict per input with an exported package alone (no run, no project):
        ``package.spec`` is its package.json, ``package.folder`` its folder (files the spec
        named, such as a tokenizer), ``package.run_model(list[np.ndarray]) -> list[np.ndarray]``
        runs the exported model."""
        raise NotImplementedError(f"the task '{self.id}' cannot predict from an exported package")

    # --- state a run keeps ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Task {self.id}>"
