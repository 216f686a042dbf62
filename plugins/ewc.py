"""Elastic weight consolidation (EWC): learn a new task from an earlier run's model while
holding the weights that mattered for the earlier task near their old values."""
from __future__ import annotations

from pydantic import Field

from tlstudio.api import ElasticWeightConsolidation, HeadSettings, LayerSettings, hookimpl

from .finetune import FineTuning


class EWCConfig(HeadSettings, LayerSettings):
    strength: float = Field(
        10000.0, ge=0.0, le=1e12, title="EWC strength λ",
        description="Weight of the penalty (λ/2)·Σ F_i (θ_i − θ*_i)². Larger keeps more of the earlier task and "
                    "learns the new one less freely; 0 is plain fine-tuning from the earlier run. The right value "
                    "depends on the data: on MNIST digits 0–4 then 5–9, 10000 kept the earlier task within a few "
                    "points for a few points on the new one (docs/results.md).")
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
        "weights learn freely and important ones stay near their old values. The earlier run's test set travels "
        "with the run: the studio reports its accuracy before and after, the forgetting in points; compare with "
        "plain fine-tuning from the same run (or λ = 0) to see what EWC bought and what it cost on the new task. "
        "It protects weights, not BatchNorm statistics, and it cannot make room where both tasks need the same "
        "weights to differ."
    )
    Config = EWCConfig

    def recommended_training(self) -> dict:
        return {"epochs": 5, "lr": 1e-3, "batch_size": 32, "schedule": "cosine", "weight_decay": 0.0,
                "optimizer": "adamw"}

    def callbacks(self, c):
        # the EWC penalty holds the earlier task's weights (L2-SP would pull toward ImageNet's instead)
        return [ElasticWeightConsolidation(c.strength, c.fisher_samples, c.track_earlier_task)]


@hookimpl
def tlstudio_techniques():
    return [EWC()]
