"""Elastic weight consolidation (EWC): learn a new task from an earlier run's model while
holding the weights that mattered for the earlier task near their old values.

EWC is the plain recipe (``fine-tuning`` with its defaults; its L2-SP anchor is the earlier
run's weights) plus the EWC penalty; with ``strength = 0`` it is plain fine-tuning from the
earlier run, step for step: the arm without EWC that ``tlstudio train --compare-baseline``
trains beside it."""
from __future__ import annotations

from pydantic import Field

from tlstudio.api import ElasticWeightConsolidation, hookimpl

from .finetune import FineTuneConfig, FineTuning, recipe_callbacks


class EWCConfig(FineTuneConfig):
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


class EWC(FineTuning):
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
    baseline_settings = {"strength": 0.0}  # plain fine-tuning from the same earlier run
    baseline_metric = "source_accuracy_after"

    def callbacks(self, c):
        # first: the penalty joins the new task's loss before the recipe's L2-SP (anchored at the earlier run)
        return [ElasticWeightConsolidation(c.strength, c.fisher_samples, c.track_earlier_task), *recipe_callbacks(c)]


@hookimpl
def tlstudio_techniques():
    return [EWC()]
