"""What a technique is: a recipe the engine runs through its training hooks.

The engine owns the loop (device, data loaders, optimizer steps, mixed precision,
checkpoints, events, evaluation).  A technique decides *what* is trained and *how the
loss is made*:

==================  ========================================================================
hook                what the technique does there
==================  ========================================================================
build(ctx)          build and return the model (pretrained backbone + new head ...)
param_groups(ctx)   which parameters train, at which learning rate (per layer group)
on_fit_start(ctx)   one-off preparation (a feature cache, a target-domain loader, Fisher ...)
on_epoch_start      per-epoch changes (unfreeze the next stage, a schedule of its own ...)
train_batches       what one epoch iterates over (default: the training loader)
training_step       one batch -> {"loss": tensor, other scalars to chart}
eval_batches        what evaluation iterates over (default: the split's loader)
predict_step        one batch -> (outputs, targets) for the metrics
on_epoch_end        after validation -> extra series to chart {"name": value}
before_test         after training, with the best model: fit what is fitted on validation
                    (classifiers: calibration, operating point, prediction sets)
state_dict          technique state to checkpoint (and load_state_dict to resume it)
==================  ========================================================================

Everything a technique needs from the studio comes through ``ctx`` (a
:class:`tlstudio.core.engine.RunContext`): the project, the technique's validated
settings, the device, the prepared data, the model library helpers and ``ctx.emit``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict


class TechniqueConfig(BaseModel):
    """Base class of a technique's settings.

    Each field becomes a control in the window's config panel: give it a ``title``, a
    ``description`` (shown as the tooltip) and bounds (``ge``/``le``); a ``Literal`` becomes
    a combo box, a ``bool`` a check box.  Defaults are validated too: a default that breaks
    its own bounds is reported the same way on the command line and in the window.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class Technique:
    """Base class of every technique (see the table in this module's docstring)."""

    #: unique id used in project files and on the command line ("fine-tuning")
    id: ClassVar[str] = ""
    #: short title for menus ("Fine-tuning")
    title: ClassVar[str] = ""
    #: image-classification, detection, captioning or text-classification
    task: ClassVar[str] = "image-classification"
    #: one paragraph for the domain expert: what it does, when to use it
    explanation: ClassVar[str] = ""
    #: the technique's settings (a pydantic model)
    Config: ClassVar[type[TechniqueConfig]] = TechniqueConfig
    #: extra chart series this technique emits in on_epoch_end / training_step
    series: ClassVar[dict[str, str]] = {}
    #: validation metric that picks the best epoch when the project says "auto"
    default_monitor: ClassVar[str] = "val_loss"
    #: the technique's "without it" arm for ``--compare-baseline``: settings that switch its own
    #: idea off and leave the plain recipe (DANN: ``{"adversarial": False}``); None: the arm is
    #: the recommended plain recipe itself (``tlstudio.core.compare.baseline_project``)
    baseline_settings: ClassVar[dict | None] = None
    #: the result that shows what the technique is for, compared by ``--compare-baseline``
    #: (a test metric such as "target_accuracy", or a key of final.json); None: accuracy
    baseline_metric: ClassVar[str | None] = None

    def fresh(self) -> "Technique":
        """A new instance for one run (a run's state never leaks into the next)."""
        return type(self)()

    # --- settings ---------------------------------------------------------------------
    def make_config(self, settings: dict | None = None) -> TechniqueConfig:
        return self.Config.model_validate(settings or {})

    def config_panel(self, config: TechniqueConfig, parent: Any = None) -> Any:
        """Return a Qt widget to edit ``config`` instead of the generated panel, or None.

        Import Qt *inside* this method: the core never imports Qt.
        """
        return None

    def result_view(self, run_dir: Any, parent: Any = None) -> Any:
        """Return a Qt widget showing a finished run's results in this technique's own way
        (detection boxes, captions, a sentence box ...), or None for the studio's standard
        views.  Import Qt *inside* this method."""
        return None

    def recommended_training(self) -> dict:
        """Training settings this technique works best with (proposed by the window)."""
        return {}

    # --- training hooks ---------------------------------------------------------------
    def prepare_data(self, ctx) -> None:
        """Read, check and split the project's data; set ``ctx.data`` (task base classes
        implement this, techniques rarely override it)."""
        raise NotImplementedError

    def build(self, ctx) -> Any:
        raise NotImplementedError

    def param_groups(self, ctx) -> list[dict]:
        """Parameter groups for the optimizer: ``[{"params": [...], "lr": x, "name": "head"}]``.

        Default: every parameter that requires grad, at ``ctx.training.lr``.
        """
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        return [{"params": params, "lr": ctx.training.lr, "name": "all"}]

    def on_fit_start(self, ctx) -> None:
        pass

    def on_epoch_start(self, ctx, epoch: int) -> None:
        pass

    def train_batches(self, ctx, epoch: int) -> Iterable:
        return ctx.loader("train", train=True, epoch=epoch)

    def training_step(self, ctx, batch) -> dict:
        raise NotImplementedError

    def eval_batches(self, ctx, split: str) -> Iterable:
        return ctx.loader(split, train=False)

    def predict_step(self, ctx, batch) -> tuple:
        raise NotImplementedError

    def evaluate(self, ctx, split: str) -> dict:
        """Metrics of the current model on ``split`` ("val" or "test"): {"loss": .., ...}."""
        raise NotImplementedError

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {}

    def before_test(self, ctx) -> None:
        """After the last epoch, with the best model loaded, before the test evaluation: fit
        what is fitted on the validation split (the classifiers' calibration, operating point
        and prediction sets: :func:`tlstudio.core.classification.fit_run_decision`)."""

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        """Write detailed results of ``split`` into the run folder (predictions, tables)."""

    def write_report(self, ctx, final: dict) -> None:
        """Write the run's short report (report.md) from the final summary."""

    def load_for_inference(self, ctx, run_dir: Any, checkpoint: dict) -> None:
        """Set ``ctx.data`` to what ``build`` and ``predict_inputs`` need when only predicting
        (class names, preprocessing ...), from the run folder and its checkpoint."""
        raise NotImplementedError

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Predict raw inputs (image paths, sentences ...) with ``ctx.model``: one dict per
        input, {"ref", "predicted", ...} or {"ref", "error"} (a bad input never stops the rest)."""
        raise NotImplementedError

    def inference_model(self, ctx) -> Any:
        """The model that maps preprocessed inputs to outputs (predict, export, Grad-CAM)."""
        return ctx.model

    # --- export (see tlstudio.core.export) ------------------------------------------------
    def export_inputs(self, ctx, n: int) -> tuple:
        """Up to ``n`` REAL preprocessed inputs from the run's validation data, as a tuple of
        tensors batched on dim 0 (one per argument of ``inference_model(ctx)``).  The exporters
        trace with the first two and check parity on all of them.  Image classification
        implements it; other tasks override it (token ids + mask, image batches ...)."""
        raise NotImplementedError(f"The technique '{self.id}' does not provide example inputs for export "
                                  "(Technique.export_inputs).")

    def export_spec(self, ctx) -> dict:
        """What an exported package needs to know besides the weights: ``inputs`` and
        ``outputs`` (names; dim 0 is the dynamic batch), optionally ``dynamic_axes`` for more
        dynamic dims ({"input_ids": {0: "batch", 1: "sequence"}}), ``labels``, ``preprocessing``
        (a JSON-able spec a third party can reproduce) and ``postprocess``."""
        return {"task": self.task, "inputs": ["input"], "outputs": ["output"], "labels": [],
                "preprocessing": {}, "postprocess": "none"}

    def predict_package(self, spec: dict, run_model, inputs: list) -> list[dict]:
        """Predict raw inputs with an exported package, without the run or the project:
        ``spec`` is the package's package.json, ``run_model(list[np.ndarray]) -> list[np.ndarray]``
        runs the exported model.  One dict per input, like :meth:`predict_inputs`."""
        raise NotImplementedError(f"The technique '{self.id}' cannot predict from an exported package.")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Technique {self.id}>"
