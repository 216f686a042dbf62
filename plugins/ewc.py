"""Elastic weight consolidation (EWC): learn a new task from an earlier run's model while
holding the weights that mattered for the earlier task near their old values.

EWC is the plain recipe (``tlstudio.core.finetuning``: fine-tuning with its defaults) plus the
EWC penalty; with ``strength = 0`` it is plain fine-tuning from the earlier run, step for step:
the arm without EWC that ``tlstudio train --compare-baseline`` trains beside it."""
from __future__ import annotations

from pydantic import Field

from tlstudio.core import StudioError, hookimpl
from tlstudio.core.blocks import freeze_all_but_top
from tlstudio.core.continual import EWCPenalty, diagonal_fisher
from tlstudio.core.finetuning import FineTuningBase, PlainRecipeSettings
from tlstudio.core.io import atomic_write_text
from tlstudio.core.sequential import source_task_loader


class EWCConfig(PlainRecipeSettings):
    """The plain recipe's settings (fine-tuning's, same defaults) and EWC's own."""

    strength: float = Field(
        10000.0, ge=0.0, le=1e12, title="EWC strength λ",
        description="Weight of the penalty (λ/2)·Σ F_i (θ_i − θ*_i)². Larger keeps more of the earlier task and "
                    "learns the new one less freely; 0 is plain fine-tuning from the earlier run. The right value "
                    "depends on the data: measure it against λ = 0 with Compare (docs/results.md).")
    fisher_samples: int = Field(
        500, ge=10, le=100_000, title="Images for the Fisher information",
        description="Earlier-task training images used to estimate how much each weight mattered.")
    track_earlier_task: bool = Field(True, title="Chart the earlier task",
                                     description="Measure the earlier task's validation accuracy after every epoch.")


class EWC(FineTuningBase):
    id = "ewc"
    title = "Elastic weight consolidation (EWC)"
    explanation = (
        "EWC (Kirkpatrick et al., 2017) continues from an earlier run's model and learns a new task without "
        "forgetting the old one, for example a model tuned at one hospital adapted to another's images. After the "
        "earlier task, the weights θ* are kept with the diagonal of the empirical Fisher information F, the mean "
        "squared gradient of the log-likelihood of the earlier task's own labelled images: a large F_i means the "
        "earlier task's predictions hinge on weight i. Training on the new task then adds the penalty "
        "(λ/2)·Σ F_i (θ_i − θ*_i)², a spring on each weight whose stiffness is its importance, so unimportant "
        "weights learn freely and important ones stay near their old values. Everything else is the plain "
        "fine-tuning recipe. The earlier run's test set travels with the run: the studio reports its accuracy "
        "before and after, the forgetting in points; Compare (or --compare-baseline) trains λ = 0, plain "
        "fine-tuning from the same run, beside it over seeds to show what EWC bought and what it cost on the new "
        "task. It protects weights, not BatchNorm statistics, and it cannot make room where both tasks need the "
        "same weights to differ."
    )
    Config = EWCConfig
    series = {**FineTuningBase.series, "task_loss": "New-task loss", "ewc_penalty": "EWC penalty",
              "earlier_task_accuracy": "Earlier task accuracy (validation)"}
    baseline_settings = {"strength": 0.0}
    baseline_metric = "source_accuracy_after"

    def __init__(self) -> None:
        super().__init__()
        self.penalty: EWCPenalty | None = None
        self._sums: dict[str, float] = {}
        self._n = 0

    def build(self, ctx):
        if not ctx.project.model.from_run and not ctx.for_inference:
            raise StudioError("EWC continues from an earlier run: choose 'Start from run' on the Model page "
                              "(or give --from-run RUN on the command line).")
        model = self.build_model(ctx)  # the L2-SP anchor: the earlier run's weights
        freeze_all_but_top(model, ctx.config.trainable_groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return self.group_lrs(ctx, ctx.training.lr)

    def on_fit_start(self, ctx) -> None:
        super().on_fit_start(ctx)
        c = ctx.config
        if c.strength <= 0:  # plain fine-tuning from the earlier run: nothing to estimate
            ctx.log("EWC strength 0: plain fine-tuning from the earlier run (no penalty).")
            return
        task = ctx.state["source_task"]
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
        super().on_epoch_start(ctx, epoch)
        self._sums, self._n = {}, 0

    def training_step(self, ctx, batch) -> dict:
        out = super().training_step(ctx, batch)  # the plain recipe's loss (mixup, L2-SP)
        task_loss = out["loss"] - out["l2sp"] if "l2sp" in out else out["loss"]
        penalty = self.penalty(ctx.model) if self.penalty is not None else task_loss.new_zeros(())
        out = {**out, "loss": out["loss"] + penalty, "task_loss": task_loss, "ewc_penalty": penalty}
        for k in ("task_loss", "ewc_penalty"):
            self._sums[k] = self._sums.get(k, 0.0) + float(out[k].detach())
        self._n += 1
        return out

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        series = dict(super().on_epoch_end(ctx, epoch, metrics) or {})
        series.update({k: v / max(1, self._n) for k, v in self._sums.items()})
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
