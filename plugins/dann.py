"""Domain-adversarial training (DANN): learn from labelled source images so that the
features cannot tell source from target images, and the classifier carries over.

DANN is the plain recipe (``fine-tuning`` with its defaults, L2-SP,
mixup, class-weighted loss) plus the domain discriminator behind the gradient reversal layer;
with ``adversarial = false`` it is the plain recipe itself, measured on the same target images:
the source-only arm that ``tlstudio train --compare-baseline`` trains beside it."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from tlstudio.api import DomainAdversarial, TargetDomain, hookimpl

from .finetune import FineTuneConfig, FineTuning, recipe_callbacks


class DANNConfig(FineTuneConfig):
    adversarial: bool = Field(
        True, title="Align the domains",
        description="Train the domain discriminator behind the gradient reversal layer. Off: the source-only "
                    "baseline — the plain recipe on the same data, measured on the same target images.")
    lambda_schedule: Literal["ganin", "fixed"] = Field(
        "ganin", title="Reversal weight schedule",
        description="ganin: λ rises from 0 to its maximum as 2/(1+exp(−10·p))−1 of the training progress p "
                    "(Ganin & Lempitsky); fixed: the maximum throughout.")
    lambda_max: float = Field(1.0, ge=0.0, le=10.0, title="Reversal weight λ (maximum)",
                              description="How strongly the features are pushed to confuse the domain discriminator.")
    discriminator_hidden: int = Field(256, ge=8, le=4096, title="Discriminator width",
                                      description="Units in each of the discriminator's two hidden layers.")
    discriminator_lr: float = Field(1.0, gt=0.0, le=100.0, title="Discriminator learning-rate factor",
                                    description="The discriminator learns at this times the head's learning rate.")
    target_test_share: float = Field(
        0.3, ge=0.0, le=0.9, title="Target test share",
        description="Share of the labelled target images held out to measure target accuracy (never trained on; "
                    "their labels are never used for training either way).")
    measure_shift: bool = Field(True, title="Measure the shift (MMD)",
                                description="MMD between source and target features before and after adaptation.")
    shift_images: int = Field(300, ge=10, le=5000, title="Images per side for the MMD",
                              description="How many source and target images the domain-shift measure compares.")


class DANN(FineTuning):
    id = "dann"
    title = "Domain-adversarial training (DANN)"
    explanation = (
        "DANN (Ganin & Lempitsky, 2015) adapts a model trained on labelled source images to an unlabelled target "
        "domain, such as another scanner or hospital. A shared feature extractor feeds two heads: the label "
        "classifier, trained on source labels, and a domain discriminator that tries to tell source from target "
        "features. Between the features and the discriminator sits a gradient reversal layer: the identity going "
        "forward, a multiplication by −λ going back, so the single objective L_y + L_d trains the discriminator "
        "to separate the domains while driving the features to make them indistinguishable (the saddle point of "
        "L_y − λ·L_d). λ rises from 0 as 2/(1+exp(−10·p))−1 with the training progress p, so the early, noisy "
        "discriminator does not disturb the features. Everything else is the plain fine-tuning recipe, so "
        "switching the alignment off gives the honest baseline: Compare (or --compare-baseline) trains both over "
        "seeds and says whether the adaptation helped. Watch the discriminator's accuracy drift towards 0.5 as the "
        "features align, and the target accuracy (on labelled target images held out, if you have any). It helps "
        "when the label-relevant content is shared and only the appearance shifts; when the classes themselves "
        "occur in different proportions, forcing the feature distributions together can hurt. Switch 'Align the "
        "domains' off for the source-only baseline: the same plain recipe without the adaptation."
    )
    Config = DANNConfig
    series = {"class_loss": "Class loss"}
    default_monitor = "val_accuracy"
    baseline_settings = {"adversarial": False}  # the source-only arm: the plain recipe itself
    baseline_metric = "target_accuracy"

    def callbacks(self, c):
        arm = "the domains aligned (DANN)" if c.adversarial else "source only: the plain fine-tuning recipe, no alignment"
        target = TargetDomain(c.target_test_share, measure_shift=c.measure_shift, shift_images=c.shift_images,
                              trained_with=arm)
        adversarial = [DomainAdversarial(c.lambda_schedule, c.lambda_max, c.discriminator_hidden, c.discriminator_lr,
                                         blend_target=c.mixup) if c.adversarial else None]
        return [target, *adversarial, *recipe_callbacks(c)]

    def after_loss(self, ctx, out: dict) -> None:
        out.setdefault("class_loss", out["loss"].detach())  # before the callbacks add to the loss


@hookimpl
def tlstudio_techniques():
    return [DANN()]
