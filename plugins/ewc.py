"""Elastic weight consolidation (EWC): learn a new task from an earlier run's model while
holding the weights that mattered for the earlier task near their old values."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from tlstudio.core import ImageClassificationTechnique, StudioError, TechniqueConfig, hookimpl
from tlstudio.core.blocks import discriminative_param_groups, freeze_all_but_top
from tlstudio.core.continual import EWCPenalty, diagonal_fisher
from tlstudio.core.io import atomic_write_text
from tlstudio.core.sequential import source_task_loader


class EWCConfig(TechniqueConfig):
    strength: float = Field(
        10000.0, ge=0.0, le=1e12, title="EWC strength λ",
        description="Weight of the penalty (λ/2)·Σ F_i (θ_i − θ*_i)². Larger keeps more of the earlier task and "
                    "learns the new one less freely; 0 is plain fine-tuning from the earlier run. The right value "
                    "depends on the data: on MNIST digits 0–4 then 5–9, 10000 kept the earlier task within a few "
                    "points for a few points on the new one (docs/results.md).")
    fisher_samples: int = Field(
        500, ge=10, le=100_000, title="Images for the Fisher information",
        description="Earlier-task training images used to estimate how much each weight mattered.")
    trainable_groups: int = Field(-1, ge=-1, le=64, title="Layer groups to train",
                                  description="How many layer groups, counted from the top, learn (all = the whole network).",
                                  json_schema_extra={"labels": {-1: "all"}})
    lr_decay: float = Field(0.5, gt=0.0, le=1.0, title="Learning-rate decay per group",
                            description="Each group learns at this times the rate of the group above it.")
    head: Literal["linear", "bn_dropout"] = Field("linear", title="Head",
                                                  description="The new task's head (kept from the earlier run when the classes are the same).")
    dropout: float = Field(0.0, ge=0.0, le=0.9, title="Dropout",
                           description="Dropout before the new layer(s): randomly silences this share of the features "
                                       "while training (0 = off).")
    hidden: int = Field(256, ge=8, le=4096, title="Hidden units",
                        description="Width of the hidden layer of the bn_dropout head.")
    track_earlier_task: bool = Field(True, title="Chart the earlier task",
                                     description="Measure the earlier task's validation accuracy after every epoch.")


class EWC(ImageClassificationTechnique):
    id = "ewc"
    title = "Elastic weight consolidation (EWC)"
    explanation = (
        "EWC (Kirkpatrick et al., 2017) continues from an earlier run's model and learns a new task without "
        "forgetting the old one, for example a model tuned at one hospital adapted to another's images. After the "
        "earlier task, the weights θ* are kept with the diagonal of the empirical Fisher information F, the mean "
        "squared gradient of the log-likelihood of the earlier task's own labelled images: a large F_i means the "
        "earlier task's predictions hinge on weight i. Training on the new task then adds the penalty "
        "(λ/2)·Σ F_i (θ_i − θ*_i)², a spring on each weight whose stiffness is its importance, so unimportant "
        "weights learn freely and important ones stay near their old values. The earlier run's test set travels "
        "with the run: the studio reports its accuracy before and after, the forgetting in points; compare with "
        "plain fine-tuning from the same run (or λ = 0) to see what EWC bought and what it cost on the new task. "
        "It protects weights, not BatchNorm statistics, and it cannot make room where both tasks need the same "
        "weights to differ."
    )
    Config = EWCConfig
    series = {"task_loss": "New-task loss", "ewc_penalty": "EWC penalty",
              "earlier_task_accuracy": "Earlier task accuracy (validation)"}

    def __init__(self) -> None:
        self.penalty: EWCPenalty | None = None
        self._sums: dict[str, float] = {}
        self._n = 0

    def recommended_training(self) -> dict:
        return {"epochs": 5, "lr": 1e-3, "batch_size": 32, "schedule": "cosine", "weight_decay": 0.0,
                "optimizer": "adamw"}

    def build(self, ctx):
        if not ctx.project.model.from_run and not ctx.for_inference:
            raise StudioError("EWC continues from an earlier run: choose 'Start from run' on the Model page "
                              "(or give --from-run RUN on the command line).")
        c = ctx.config
        model = ctx.build_classifier(head=c.head, dropout=c.dropout, hidden=c.hidden)
        freeze_all_but_top(model, c.trainable_groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.lr_decay)

    def on_fit_start(self, ctx) -> None:
        task = ctx.state["source_task"]
        c = ctx.config
        # the weights the two tasks share: the backbone, and the head when the classes are the same
        shared = [k for k, p in ctx.model.named_parameters()
                  if p.requires_grad and (k.startswith("backbone.") or task.shared_head)]
        loader = source_task_loader(ctx, task, "train", c.fisher_samples, batch_size=32, seed=ctx.training.seed)
        fisher = diagonal_fisher(task.model, loader, shared, ctx.device, c.fisher_samples, progress=ctx.progress,
                                 should_stop=ctx.control.check)
        anchor = {k: p for k, p in task.model.named_parameters() if k in fisher}
        self.penalty = EWCPenalty(fisher, anchor, c.strength).to(ctx.device)
        s = self.penalty.fisher_summary()
        ctx.log(f"EWC: Fisher information of {s['parameters']:,} weights from {min(c.fisher_samples, len(loader.dataset))} "
                f"earlier-task images (mean {s['mean']:.3g}, max {s['max']:.3g}); λ = {c.strength:g}.")

    def on_epoch_start(self, ctx, epoch: int) -> None:
        self._sums, self._n = {}, 0

    def training_step(self, ctx, batch) -> dict:
        x, y = batch
        task_loss = ctx.criterion(ctx.model(x), y)
        penalty = self.penalty(ctx.model) if ctx.config.strength > 0 else task_loss.new_zeros(())
        out = {"loss": task_loss + penalty, "task_loss": task_loss, "ewc_penalty": penalty}
        for k in ("task_loss", "ewc_penalty"):
            self._sums[k] = self._sums.get(k, 0.0) + float(out[k].detach())
        self._n += 1
        return out

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        series = {k: v / max(1, self._n) for k, v in self._sums.items()}
        task = ctx.state["source_task"]
        if ctx.config.track_earlier_task:
            split = "val" if task.data.has_split("val") else task.split
            series["earlier_task_accuracy"] = task.evaluate(ctx, split, model=ctx.model)["accuracy"]
        return series

    def write_report(self, ctx, final: dict) -> None:
        super().write_report(ctx, final)
        s = final.get("source_task")
        if not s:
            return
        new_acc = final.get("test_accuracy")
        lines = ["", "## The earlier task", "",
                 f"Started from run `{s['run_id']}`; its {s['split']} set ({s['n']} images) was kept with this run.", "",
                 f"- Accuracy on the earlier task before learning the new one: {s['before']['accuracy']:.3f}",
                 f"- After: {s['after']['accuracy']:.3f} — forgetting {s['forgetting_points']:.1f} points "
                 f"(EWC λ = {ctx.config.strength:g})"]
        if new_acc is not None:
            lines.append(f"- New task test accuracy: {new_acc:.3f}")
        path = ctx.run.dir / "report.md"
        atomic_write_text(path, path.read_text(encoding="utf-8") + "\n".join(lines) + "\n")


@hookimpl
def tlstudio_techniques():
    return [EWC()]
