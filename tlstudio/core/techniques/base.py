"""What a technique is: a training recipe on a task, plus the callbacks recipes share.

A **technique** (fine-tuning, DANN ...) says what is trained and how: it builds the model,
chooses the parameter groups and their learning rates, and may define the training step.
Everything that does not depend on the recipe (reading the data, the loss a task usually
uses, evaluation, results, prediction, export) belongs to its **task** (see
:mod:`tlstudio.core.tasks`), and what recipes share (L2-SP, mixup, weight averaging, a stage
schedule, the EWC penalty, gradient reversal, the feature cache) comes as **callbacks** the
technique lists.  A plugin therefore reads like the recipe::

    class FineTuning(Technique):
        id, title, task = "fine-tuning", "Fine-tuning", "image-classification"
        Config = FineTuneConfig            # pydantic: the settings panel

        def callbacks(self, c):
            return [L2SP(c.l2sp), Mixup(c.mixup), WeightAveraging(c.average_last)]

        def build(self, ctx):
            model = ctx.build_classifier(head=ctx.config.head, dropout=ctx.config.dropout)
            freeze_all_but_top(model, ctx.config.trainable_groups)
            return model

        def param_groups(self, ctx):
            return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.lr_decay)

The engine calls, in this order (each hook on the technique first, then on its callbacks):

======================  =======================================================================
hook                    when, and what it may do
======================  =======================================================================
on_data(ctx)            after the task prepared ``ctx.data`` (a target domain joins here)
build(ctx)              technique only: the model (also when only predicting)
on_build(ctx, model)    right after build, before a checkpoint is loaded (L2-SP's snapshot)
setup(ctx)              before the first epoch, after a resume's checkpoint (caches, Fisher)
param_groups(ctx)       technique only: ``[{"params", "lr", "name"}]``
adjust_param_groups     callbacks reshape the groups (no weight decay under L2-SP, a discriminator)
on_epoch_start          per epoch (the next stage unfreezes)
train_batches           what an epoch iterates over (None: the task's training loader)
before_batch            change a batch before the step (mixup)
training_step           technique only: a batch -> ``{"loss": tensor, scalars to chart}``
forward(ctx, x)         who turns inputs into outputs (None: the model; cached features: the head)
after_loss(ctx, out)    add to the loss (a penalty), add scalars to chart
on_epoch_end            after validation -> chart series ``{"name": value}``
eval_batches            what evaluation iterates over (None: the task's loader)
after_evaluate          add figures to a split's metrics (target accuracy, MMD)
write_results           write files of a split's results into the run folder
report(ctx, final)      a Markdown section for report.md (or None)
state_dict / load_...   what a resumed run needs back
======================  =======================================================================

Every hook is optional but ``build``.  ``ctx`` is the run's context (a
:class:`tlstudio.core.engine.RunContext`); when only predicting, ``build`` gets an
inference context with the same building services and no training state.
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

Batches = Iterable | None


#: the technique of the recommended plain recipe (``fine-tuning`` with its Config defaults and its
#: recommended training): the "without it" arm of every comparison (tlstudio.core.analysis.compare)
PLAIN_TECHNIQUE = "fine-tuning"


class TechniqueConfig(BaseModel):
    """Base class of a technique's settings.

    Each field becomes a control in the window's config panel: give it a ``title``, a
    ``description`` (shown as the tooltip) and bounds (``ge``/``le``); a ``Literal`` becomes
    a combo box, a ``bool`` a check box.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


# --- settings recipes share: declared once, one default each ----------------------------------
class HeadSettings(TechniqueConfig):
    """The new head on top of the pretrained network."""

    head: Literal["linear", "bn_dropout"] = Field(
        "linear", title="Head",
        description="linear: one new layer; bn_dropout: BatchNorm + dropout + a hidden layer (more capacity, "
                    "more regularisation).")
    dropout: float = Field(0.2, ge=0.0, le=0.9, title="Dropout",
                           description="Dropout before the new layer(s): randomly silences this share of the features "
                                       "while training, so that the head cannot rely on any single one (0 = off).")
    hidden: int = Field(256, ge=8, le=4096, title="Hidden units",
                        description="Width of the hidden layer of the bn_dropout head.",
                        json_schema_extra={"shown_when": {"head": ["bn_dropout"]}})


class LayerSettings(TechniqueConfig):
    """Which pretrained layer groups learn, and how fast."""

    trainable_groups: int = Field(
        -1, ge=-1, le=64, title="Layer groups to train",
        description="How many layer groups, counted from the top, learn (the new head counts as one); all = the whole "
                    "network.", json_schema_extra={"labels": {-1: "all"}})
    lr_decay: float = Field(
        1.0, gt=0.0, le=1.0, title="Learning-rate decay per group",
        description="Each group learns at this times the rate of the group above it: the general early layers "
                    "change least. 1 = the same rate everywhere.")


class RegularisationSettings(TechniqueConfig):
    """The regularisers of the recommended plain recipe (measured: docs/results.md)."""

    l2sp: float = Field(
        0.01, ge=0.0, le=10.0, title="L2-SP strength (λ)",
        description="Pull the pretrained layers back toward what they learned from everyday photos, so that a small "
                    "data set cannot drag them far (0 = off; 0.01 recommended). λ·‖θ − θ_pretrained‖² is added to "
                    "the loss, and replaces weight decay on those layers.")
    mixup: float = Field(
        0.2, ge=0.0, le=2.0, title="Mixup (α)",
        description="Train on blends of two images and of their labels (mixup): a regulariser for small data sets. "
                    "0 = off; 0.2 is a usual value.")
    average_last: int = Field(
        0, ge=0, le=50, title="Average the last epochs",
        description="The final model is the average of the weights at the end of the last N epochs (stochastic "
                    "weight averaging): steadier than any single epoch on small data. 0 = off. Pair it with the "
                    "best-model metric 'last'.")


class Callback:
    """A piece of a recipe that any technique can list (see the table in this module's
    docstring).  Override only the hooks you need; ``series`` names the chart series the
    callback adds (name -> title)."""

    series: ClassVar[dict[str, str]] = {}

    def on_data(self, ctx) -> None:
        pass

    def on_build(self, ctx, model) -> None:
        pass

    def setup(self, ctx) -> None:
        pass

    def adjust_param_groups(self, ctx, groups: list[dict]) -> list[dict]:
        return groups

    def on_epoch_start(self, ctx, epoch: int) -> None:
        pass

    def train_batches(self, ctx, epoch: int) -> Batches:
        return None

    def before_batch(self, ctx, batch):
        return batch

    def forward(self, ctx, x) -> Any:
        return None

    def after_loss(self, ctx, out: dict) -> None:
        pass

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {}

    def eval_batches(self, ctx, split: str) -> Batches:
        return None

    def after_evaluate(self, ctx, split: str, metrics: dict) -> None:
        pass

    def write_results(self, ctx, split: str, metrics: dict) -> None:
        pass

    def report(self, ctx, final: dict) -> str | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<{type(self).__name__}>"


class Technique(Callback):
    """Base class of every technique: a recipe on a task (see the module docstring)."""

    #: unique id used in project files and on the command line ("fine-tuning")
    id: ClassVar[str] = ""
    #: short title for menus ("Fine-tuning")
    title: ClassVar[str] = ""
    #: the id of the task it trains for (see tlstudio.core.tasks): "image-classification" ...
    task: ClassVar[str] = "image-classification"
    #: one paragraph for the domain expert: what it does, when to use it
    explanation: ClassVar[str] = ""
    #: the technique's settings (a pydantic model)
    Config: ClassVar[type[TechniqueConfig]] = TechniqueConfig
    #: validation metric that picks the best epoch when the project says "auto" (None: the task's)
    default_monitor: ClassVar[str | None] = None
    #: the technique's "without it" arm for ``--compare-baseline``: settings that switch its own
    #: idea off and leave the plain recipe (DANN: ``{"adversarial": False}``); None: the arm is
    #: the recommended plain recipe itself (``tlstudio.core.analysis.compare.baseline_project``)
    baseline_settings: ClassVar[dict | None] = None
    #: the result that shows what the technique is for, compared by ``--compare-baseline``
    #: (a test metric such as "target_accuracy", or a key of final.json); None: accuracy
    baseline_metric: ClassVar[str | None] = None

    def fresh(self) -> "Technique":
        """A new instance for one run (a run's state never leaks into the next)."""
        return type(self)()

    def make_config(self, settings: dict | None = None) -> TechniqueConfig:
        return self.Config.model_validate(settings or {})

    def recommended_training(self) -> dict:
        """Training settings this technique works best with (proposed by the window)."""
        return {}

    def callbacks(self, config: TechniqueConfig) -> list[Callback]:
        """The shared pieces of this recipe, in the order they act."""
        return []

    def config_panel(self, config: TechniqueConfig, parent: Any = None) -> Any:
        """A Qt widget to edit ``config`` instead of the generated panel, or None.  Import Qt
        *inside* this method: the core never imports Qt."""
        return None

    # --- the recipe -----------------------------------------------------------------------------
    def build(self, ctx) -> Any:
        raise NotImplementedError(f"the technique '{self.id or type(self).__name__}' does not define build(ctx), "
                                  "which must return the model to train")

    def param_groups(self, ctx) -> list[dict]:
        """Parameter groups for the optimizer: ``[{"params": [...], "lr": x, "name": "head"}]``.
        Default: every parameter that requires grad, at ``ctx.training.lr``."""
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        return [{"params": params, "lr": ctx.training.lr, "name": "all"}]

    def training_step(self, ctx, batch) -> dict:
        """One batch -> ``{"loss": tensor, ...}``; default: the task's usual loss."""
        return ctx.task.training_step(ctx, batch)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Technique {self.id}>"


class Recipe:
    """A run's technique and its callbacks, called in order (the technique first)."""

    def __init__(self, technique: Technique, callbacks: list[Callback] | None = None):
        self.technique = technique
        self.callbacks = list(callbacks or [])
        self.parts: list[Callback] = [technique, *self.callbacks]

    @classmethod
    def of(cls, technique: Technique, config: TechniqueConfig) -> "Recipe":
        return cls(technique, [c for c in technique.callbacks(config) if c is not None])

    def find(self, kind: type) -> Callback | None:
        """The first part that is a ``kind`` (a callback class), or None."""
        return next((p for p in self.parts if isinstance(p, kind)), None)

    @property
    def series(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for p in self.parts:
            out.update(getattr(p, "series", {}) or {})
        return out

    def call(self, hook: str, *args) -> None:
        for p in self.parts:
            getattr(p, hook)(*args)

    def first(self, hook: str, *args) -> Any:
        """The first part's answer that is not None (batches, a forward pass)."""
        for p in self.parts:
            out = getattr(p, hook)(*args)
            if out is not None:
                return out
        return None

    def pipe(self, hook: str, ctx, value) -> Any:
        """``value`` through every part's ``hook(ctx, value)`` in turn (a batch, parameter groups)."""
        for p in self.parts:
            value = getattr(p, hook)(ctx, value)
        return value

    def merged(self, hook: str, *args) -> dict:
        out: dict = {}
        for p in self.parts:
            out.update(getattr(p, hook)(*args) or {})
        return out

    def reports(self, ctx, final: dict) -> list[str]:
        return [s for s in (p.report(ctx, final) for p in self.parts) if s]

    def _keys(self) -> list[str]:
        names = [type(c).__name__ for c in self.callbacks]
        return [n if names.count(n) == 1 else f"{n}.{i}" for i, n in enumerate(names)]

    def state_dict(self) -> dict:
        """The technique's own state at the top level (as checkpoints have always had it), the
        callbacks' under ``callbacks`` by class name."""
        state = dict(self.technique.state_dict())
        cbs = {k: c.state_dict() for k, c in zip(self._keys(), self.callbacks)}
        if any(cbs.values()):
            state["callbacks"] = {k: v for k, v in cbs.items() if v}
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state or {})
        cbs = state.pop("callbacks", None)
        self.technique.load_state_dict(state)
        for k, c in zip(self._keys(), self.callbacks):
            # a checkpoint from before callbacks kept everything at the top level: each takes its own keys
            c.load_state_dict((cbs or {}).get(k) or {} if cbs is not None else state)
