"""Domain-adversarial training (DANN): learn from labelled source images so that the
features cannot tell source from target images, and the classifier carries over.

DANN is the plain recipe (``tlstudio.core.finetuning``: fine-tuning with its defaults, L2-SP,
mixup, class-weighted loss) plus the domain discriminator behind the gradient reversal layer;
with ``adversarial = false`` it is the plain recipe itself, measured on the same target images:
the source-only arm that ``tlstudio train --compare-baseline`` trains beside it."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from tlstudio.core import hookimpl
from tlstudio.core.adaptation import DomainDiscriminator, GradientReversal, domain_adversarial_loss, grl_lambda
from tlstudio.core.blocks import freeze_all_but_top
from tlstudio.core.diagnostics import run_shift
from tlstudio.core.finetuning import FineTuningBase, PlainRecipeSettings
from tlstudio.core.io import atomic_write_json, atomic_write_text
from tlstudio.core.target import prepare_target, target_metrics


class DANNConfig(PlainRecipeSettings):
    """The plain recipe's settings (fine-tuning's, same defaults) and the adversarial ones."""

    adversarial: bool = Field(
        True, title="Align the domains",
        description="Train the domain discriminator behind the gradient reversal layer. Off: the source-only "
                    "baseline, the plain fine-tuning recipe on the same data, measured on the same target images.")
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


class DANN(FineTuningBase):
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
        "occur in different proportions, forcing the feature distributions together can hurt."
    )
    Config = DANNConfig
    series = {**FineTuningBase.series, "class_loss": "Class loss", "domain_loss": "Domain loss",
              "discriminator_accuracy": "Domain discriminator accuracy", "grl_lambda": "Reversal weight λ",
              "target_accuracy": "Target accuracy"}
    default_monitor = "val_accuracy"
    baseline_settings = {"adversarial": False}
    baseline_metric = "target_accuracy"

    def __init__(self) -> None:
        super().__init__()
        self.discriminator: DomainDiscriminator | None = None
        self.reversal = GradientReversal(0.0)
        self._sums: dict[str, float] = {}
        self._n = 0
        self.shift: dict = {}

    # --- data and model ---------------------------------------------------------------------
    def prepare_data(self, ctx) -> None:
        super().prepare_data(ctx)
        prepare_target(ctx, ctx.config.target_test_share)

    def build(self, ctx):
        model = self.build_model(ctx)
        freeze_all_but_top(model, ctx.config.trainable_groups)
        if ctx.config.adversarial:  # source-only: no discriminator (and the plain recipe's random draws)
            self.discriminator = DomainDiscriminator(model.feature_dim, ctx.config.discriminator_hidden).to(ctx.device)
        return model

    def param_groups(self, ctx) -> list[dict]:
        groups = self.group_lrs(ctx, ctx.training.lr)
        if ctx.config.adversarial:
            groups.append({"params": list(self.discriminator.parameters()), "name": "discriminator",
                           "lr": ctx.training.lr * ctx.config.discriminator_lr})
        return groups

    def on_fit_start(self, ctx) -> None:
        super().on_fit_start(ctx)
        if ctx.config.measure_shift and "before" not in self.shift and ctx.step == 0:
            rep = run_shift(ctx, ctx.model.backbone, ctx.config.shift_images, seed=ctx.training.seed)
            self.shift["before"] = rep.to_dict()
            ctx.log(f"Domain shift before adaptation: MMD² {rep.mmd.mmd2:.4f}, p = {rep.mmd.p_value:.3g}.")

    # --- training ---------------------------------------------------------------------------
    def train_batches(self, ctx, epoch: int):
        source = super().train_batches(ctx, epoch)
        if not ctx.config.adversarial:
            return source
        return _WithTarget(ctx, source, epoch)

    def on_epoch_start(self, ctx, epoch: int) -> None:
        super().on_epoch_start(ctx, epoch)
        self._sums, self._n = {}, 0
        if self.discriminator is not None:
            self.discriminator.train()

    def training_step(self, ctx, batch) -> dict:
        if not ctx.config.adversarial:  # the plain recipe, step for step
            out = super().training_step(ctx, batch)
            class_loss = out["loss"] - out["l2sp"] if "l2sp" in out else out["loss"]
            self._add({"class_loss": class_loss})
            return {**out, "class_loss": class_loss}
        xs, ys, xt = batch
        c = ctx.config
        if c.mixup > 0:  # blends in both domains, so that blending is no clue to the domain
            xs, ys = self._mix(ctx, (xs, ys))
            xt = _blend(xt, c.mixup)
        progress = ctx.step / max(1, ctx.steps_per_epoch * ctx.training.epochs)
        self.reversal.lambda_ = grl_lambda(progress, c.lambda_schedule, c.lambda_max)
        features = ctx.model.backbone(torch.cat([xs, xt]))
        fs, ft = features[: len(xs)], features[len(xs):]
        class_loss = ctx.criterion(ctx.model.head(fs), ys)
        domain_loss, accuracy = domain_adversarial_loss(self.discriminator, self.reversal, fs, ft)
        out = {"loss": class_loss + domain_loss, "class_loss": class_loss, "domain_loss": domain_loss,
               "discriminator_accuracy": accuracy, "grl_lambda": self.reversal.lambda_}
        if self.l2sp is not None:
            pen = self.l2sp.penalty()
            out["loss"] = out["loss"] + pen
            out["l2sp"] = pen.detach()
        self._add({k: v for k, v in out.items() if k != "l2sp"})
        return out

    def _add(self, values: dict) -> None:
        for k, v in values.items():
            if k != "loss":
                self._sums[k] = self._sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
        self._n += 1

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        series = dict(super().on_epoch_end(ctx, epoch, metrics) or {})
        series.update({k: v / max(1, self._n) for k, v in self._sums.items()})
        target = ctx.data.target
        if target.has_labels:
            series["target_accuracy"] = target_metrics(ctx, ctx.model, target)["accuracy"]
        return series

    # --- results ----------------------------------------------------------------------------
    def evaluate(self, ctx, split: str) -> dict:
        m = super().evaluate(ctx, split)
        if split != "test":
            return m
        target = ctx.data.target
        t = target_metrics(ctx, ctx.model, target)
        if t.get("n"):
            m["target"] = t
            m.update({f"target_{k}": t[k] for k in ("accuracy", "balanced_accuracy", "f1_macro", "auc")})
            m["target_n"] = t["n"]
        if ctx.config.measure_shift:
            rep = run_shift(ctx, ctx.model.backbone, ctx.config.shift_images, seed=ctx.training.seed)
            self.shift["after"] = rep.to_dict()
            m["mmd2_after"], m["mmd_p_after"] = rep.mmd.mmd2, rep.mmd.p_value
            if "before" in self.shift:
                m["mmd2_before"], m["mmd_p_before"] = self.shift["before"]["mmd2"], self.shift["before"]["p_value"]
            ctx.log(f"Domain shift after adaptation: MMD² {rep.mmd.mmd2:.4f}, p = {rep.mmd.p_value:.3g}.")
        return m

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        super().write_evaluation(ctx, split, metrics)
        if split == "test" and self.shift:
            atomic_write_json(ctx.run.dir / "domain_shift.json", self.shift)

    def write_report(self, ctx, final: dict) -> None:
        super().write_report(ctx, final)
        t = final.get("test", {})
        arm = ("the domains aligned (DANN)" if ctx.config.adversarial
               else "source only: the plain fine-tuning recipe, no alignment")
        lines = ["", "## Target domain", "", f"- Trained with {arm}."]
        if t.get("target_accuracy") is not None:
            ci = t["target"].get("accuracy_ci95", [None, None])
            lines.append(f"- Target accuracy: {t['target_accuracy']:.3f} (95% CI {ci[0]:.3f}–{ci[1]:.3f}) on "
                         f"{t['target_n']} labelled target images held out (never trained on).")
        else:
            lines.append("- The target images carry no labels: target accuracy cannot be measured.")
        for when in ("before", "after"):
            s = self.shift.get(when)
            if s:
                lines.append(f"- Shift {when} adaptation: MMD² {s['mmd2']:.4f}, p = {s['p_value']:.3g}.")
        path = ctx.run.dir / "report.md"
        atomic_write_text(path, path.read_text(encoding="utf-8") + "\n".join(lines) + "\n")

    def state_dict(self) -> dict:
        return {**super().state_dict(),
                "discriminator": self.discriminator.state_dict() if self.discriminator is not None else {},
                "shift_before": self.shift.get("before")}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("discriminator") and self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
        if state.get("shift_before"):
            self.shift["before"] = state["shift_before"]


def _blend(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mixup of images without labels: each image blended with another of the batch, one
    Beta(α, α) weight per batch (as torchvision's MixUp does for the labelled ones)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return x.roll(1, 0).mul_(1.0 - lam).add_(x, alpha=lam)


class _WithTarget:
    """One epoch of (source images, source labels, target images) batches: the source
    loader sets the length; the target loader (shuffled, seeded per epoch) cycles."""

    def __init__(self, ctx, source, epoch: int):
        self.ctx, self.source, self.epoch = ctx, source, epoch
        data = ctx.data
        self.dataset = data.target.dataset("adapt", train=True, source=data)

    def __len__(self) -> int:
        return len(self.source)

    def _target_loader(self, k: int):
        return self.ctx.loader("train", train=True, epoch=self.epoch * 1000 + k, dataset=self.dataset, shuffle=True)

    def __iter__(self):
        k = 0
        it = iter(self._target_loader(k))
        for xs, ys in self.source:
            try:
                xt, _ = next(it)
            except StopIteration:
                k += 1
                it = iter(self._target_loader(k))
                xt, _ = next(it)
            yield xs, ys, xt


@hookimpl
def tlstudio_techniques():
    return [DANN()]
