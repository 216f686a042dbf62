"""Honest comparisons: a recipe against the strongest plain alternative, over seeds.

Two questions, one machinery (every arm trained once per seed on the same data, the same split
and the same budget: epochs, batch size, image size, seeds; each arm gets a mean, a standard
deviation and a 95% confidence interval (Student's t), the difference paired by seed its own):

- :func:`compare_with_baseline` — *does the technique help?*  The project as it stands against
  :func:`baseline_project`, the technique without its own idea: the recommended plain recipe
  (``fine-tuning`` with its defaults and ``RECOMMENDED_TRAINING``, see
  ``tlstudio_plugins.finetune``), or for DANN and EWC their own arm without it (source only,
  strength 0), which is that same plain recipe measured on the technique's own yardstick
  (target accuracy, the earlier task kept).  When the technique does not beat it, the verdict
  says so plainly.
- :func:`compare_with_scratch` — *does the pretrained model help?*  The project against the
  plain recipe from random initialisation (:func:`scratch_project`): every layer trains, no
  pretrained weights (and no pull towards them), same budget.  When scratch does as well as or
  better than transfer, the result says so plainly: negative transfer.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..config import Project, TrainingConfig
from ..errors import StudioError
from ..tasks.traits import task_traits

EventCallback = Callable[[dict], None]

#: what "the same budget" keeps from the project whatever the recipe (data, model and image size travel too)
BUDGET = ("epochs", "batch_size", "seed", "device", "threads", "deterministic", "amp", "num_workers")
#: the other results every arm records per seed, to show beside the compared one
ALSO = ("accuracy", "auc", "target_accuracy", "source_accuracy_after", "train_seconds")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """The ``level`` confidence interval of the mean (Student's t); (None, None) for one value."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None, None
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean() - half), float(v.mean() + half)


@dataclass
class Arm:
    """One side of the comparison: its test metric over the seeds."""

    name: str  # "transfer" / "scratch", or "technique" / "baseline"
    weights: str
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    recipe: str = ""  # the arm in words: "dann (as set)", "fine-tuning with its defaults (the plain recipe)"
    also: dict[str, list[float]] = field(default_factory=dict)  # other results per seed (see ALSO)

    def also_mean(self, key: str) -> float | None:
        v = [x for x in self.also.get(key, []) if x is not None]
        return float(np.mean(v)) if v else None

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def sd(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    @property
    def ci95(self) -> tuple[float | None, float | None]:
        return t_interval(self.values)

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": self.mean, "sd": self.sd, "ci95": list(self.ci95)}


@dataclass
class PairedComparison:
    """Two arms trained with the same seeds; the difference first − second is paired by seed."""

    metric: str
    first: Arm
    second: Arm

    @property
    def difference(self) -> float | None:
        """Mean of the per-seed differences first − second."""
        d = self._paired()
        return float(np.mean(d)) if d else None

    @property
    def difference_ci95(self) -> tuple[float | None, float | None]:
        return t_interval(self._paired())

    def _paired(self) -> list[float]:
        s = dict(zip(self.second.seeds, self.second.values))
        return [v - s[k] for k, v in zip(self.first.seeds, self.first.values) if k in s]

    @property
    def complete(self) -> bool:
        return self.first.mean is not None and self.second.mean is not None

    def _incomplete(self) -> str:
        return "The comparison is incomplete: " + "; ".join(self.first.failures + self.second.failures)

    def _interval_text(self) -> str:
        lo, hi = self.difference_ci95
        return "" if lo is None else f", 95% CI of the difference {100 * lo:+.1f} to {100 * hi:+.1f}"


class ScratchComparison(PairedComparison):
    """Transfer (first) against the plain recipe from random initialisation (second)."""

    @property
    def transfer(self) -> Arm:
        return self.first

    @property
    def scratch(self) -> Arm:
        return self.second

    @property
    def negative_transfer(self) -> bool:
        """True when training from scratch did as well as or better than transfer."""
        t, s = self.transfer.mean, self.scratch.mean
        return t is not None and s is not None and s >= t

    @property
    def verdict(self) -> str:
        t, s = self.transfer, self.scratch
        if not self.complete:
            return self._incomplete()
        m = self.metric.replace("_", " ")
        lo, _hi = self.difference_ci95
        if self.negative_transfer:
            return (f"WARNING — negative transfer: training from random initialisation reached {m} "
                    f"{s.mean:.3f} against {t.mean:.3f} with the pretrained model ({len(s.values)} seeds each). The "
                    "pretrained features do not help on these images: they may even hurt. Try a model pretrained on "
                    "images closer to yours, unfreeze more layers, or train from scratch.")
        text = (f"Transfer helps: {m} {t.mean:.3f} with the pretrained model against {s.mean:.3f} from scratch "
                f"(+{100 * (t.mean - s.mean):.1f} points{self._interval_text()}).")
        if lo is None or lo <= 0:
            text += " The interval includes zero: with these seeds the gain is not certain; add seeds to be sure."
        return text

    def to_dict(self) -> dict:
        lo, hi = self.difference_ci95
        return {"kind": "scratch", "metric": self.metric, "transfer": self.transfer.to_dict(),
                "scratch": self.scratch.to_dict(), "difference": self.difference, "difference_ci95": [lo, hi],
                "negative_transfer": self.negative_transfer, "verdict": self.verdict}


class BaselineComparison(PairedComparison):
    """The technique as set (first) against its baseline, the plain recipe (second)."""

    @property
    def technique(self) -> Arm:
        return self.first

    @property
    def baseline(self) -> Arm:
        return self.second

    @property
    def helps(self) -> bool:
        """The technique is ahead and the 95% interval of the paired difference excludes zero."""
        lo, _hi = self.difference_ci95
        return self.complete and lo is not None and lo > 0

    @property
    def does_not_help(self) -> bool:
        """The plain recipe did as well as the technique or better (on the mean over the seeds)."""
        return self.complete and self.baseline.mean >= self.technique.mean

    @property
    def verdict(self) -> str:
        t, b = self.technique, self.baseline
        if not self.complete:
            return self._incomplete()
        m = self.metric.replace("_", " ")
        n = f"{len(t.values)} seed{'s' if len(t.values) != 1 else ''} each"
        if self.does_not_help:
            text = (f"WARNING — it does not help: the plain recipe ({b.recipe}) reached {m} {b.mean:.3f} against "
                    f"{t.mean:.3f} with {t.recipe} on the same budget ({n}{self._interval_text()}). Keep the plain "
                    "recipe: it is simpler and did at least as well here.")
        elif self.helps:
            text = (f"It helps: {m} {t.mean:.3f} with {t.recipe} against {b.mean:.3f} with the plain recipe "
                    f"({b.recipe}) on the same budget (+{100 * (t.mean - b.mean):.1f} points{self._interval_text()}; "
                    f"{n}).")
        else:
            text = (f"Not shown to help: {m} {t.mean:.3f} with {t.recipe} against {b.mean:.3f} with the plain recipe "
                    f"({b.recipe}), +{100 * (t.mean - b.mean):.1f} points{self._interval_text()} ({n}): the interval "
                    "includes zero, so with these seeds the gain may be chance. Add seeds to be sure, or keep the "
                    "simpler plain recipe.")
        if self.metric != "accuracy" and t.also_mean("accuracy") is not None and b.also_mean("accuracy") is not None:
            text += (f" Test accuracy on the project's own test images: {t.also_mean('accuracy'):.3f} against "
                     f"{b.also_mean('accuracy'):.3f}.")
        return text

    def to_dict(self) -> dict:
        lo, hi = self.difference_ci95
        return {"kind": "baseline", "metric": self.metric, "technique": self.technique.to_dict(),
                "baseline": self.baseline.to_dict(), "difference": self.difference, "difference_ci95": [lo, hi],
                "helps": self.helps, "does_not_help": self.does_not_help, "verdict": self.verdict}


def _budget_training(project: Project, recommended: dict) -> TrainingConfig:
    """A recipe's own training settings, on the project's budget (epochs, batch, seed, device ...)."""
    values = {**TrainingConfig().model_dump(), **recommended}
    values.update({k: getattr(project.training, k) for k in BUDGET})
    return TrainingConfig.model_validate(values)


def baseline_project(project: Project, plugins=None) -> Project:
    """The technique without its own idea, on the same budget: the recommended plain recipe.

    - A technique with ``baseline_settings`` (DANN, EWC: built on the plain recipe) keeps its id
      and its settings that are not the recipe's (target test share, Fisher images ...); the
      recipe's own settings return to their defaults and ``baseline_settings`` switch the idea off.
    - Any other image-classification technique: ``fine-tuning`` with its defaults.
    - Other tasks: the same technique with its defaults and recommended training.

    Training: the recipe's recommended settings on the project's budget (:data:`BUDGET`); data,
    split, model, image size, weights, earlier run and augmentation stay as they are.
    """
    from ..techniques.base import PLAIN_TECHNIQUE
    from ..plugins import get_plugin_manager

    plugins = plugins or get_plugin_manager()
    tech = plugins.technique(project.technique.id)
    p = project.model_copy(deep=True)
    p._path = project.path
    plain_id = task_traits(project.task, plugins).plain_technique
    if tech.baseline_settings is not None:
        plain = plugins.technique(plain_id or PLAIN_TECHNIQUE)
        recipe_fields = set(plain.Config.model_fields)
        tid = tech.id
        settings = {k: v for k, v in project.technique.settings.items() if k not in recipe_fields}
        settings.update(tech.baseline_settings)
        recommended = plain.recommended_training()
    elif plain_id:
        tid, settings = plain_id, {}
        recommended = plugins.technique(plain_id).recommended_training()
    else:
        tid, settings, recommended = tech.id, {}, tech.recommended_training()
    p.technique.id, p.technique.settings = tid, settings
    p.training = _budget_training(project, recommended)
    p.name = f"{project.name} (baseline)"
    return p


def _same_recipe(a: Project, b: Project, plugins) -> bool:
    if a.technique.id != b.technique.id:
        return False
    tech = plugins.technique(a.technique.id)
    return (tech.make_config(a.technique.settings).model_dump() == tech.make_config(b.technique.settings).model_dump()
            and a.training.model_dump() == b.training.model_dump())


def scratch_project(project: Project, plugins=None) -> Project:
    """The plain recipe from random initialisation, on the same budget: a task with a plain
    recipe (an image classifier: ``fine-tuning``) trains every layer with its defaults, L2-SP
    off (there is no pretrained point to stay near, weight decay instead), from no pretrained
    weights and no earlier run.  A frozen random network would be a straw man.  Other tasks
    keep their technique and settings and only lose the pretrained weights."""
    from ..plugins import get_plugin_manager

    p = project.model_copy(deep=True)
    p._path = project.path
    plugins = plugins or get_plugin_manager()
    plain_id = task_traits(project.task, plugins).plain_technique
    if plain_id:
        plain = plugins.technique(plain_id)
        p.technique.id, p.technique.settings = plain_id, ({"l2sp": 0.0} if "l2sp" in plain.Config.model_fields else {})
        p.training = _budget_training(project, plain.recommended_training())
    p.model.weights = "none"
    p.model.from_run = ""
    p.name = f"{project.name} (from scratch)"
    return p


def _seed_list(project: Project, seeds: int | Sequence[int]) -> list[int]:
    out = list(range(project.training.seed, project.training.seed + seeds)) if isinstance(seeds, int) else list(seeds)
    if not out:
        raise StudioError("A comparison needs at least one seed.")
    return out


def _value(res: dict, metric: str):
    v = res.get(f"test_{metric}")
    return res.get(metric) if v is None else v


def _train_arms(arms: list[tuple[Arm, Project]], seed_list: list[int], metric: str, what: str, on_event, control,
                runs_dir, plugins) -> None:
    """Each arm once per seed, every run on the first run's stored split."""
    from ..engine import RunControl, train

    control = control or RunControl()
    emit = on_event or (lambda e: None)
    split_file: str | None = None
    total = len(arms) * len(seed_list)
    k = 0
    for seed in seed_list:
        for arm, base in arms:
            if control.stopped:
                return
            k += 1
            p = base.model_copy(deep=True)
            p._path = base.path
            p.training.seed = seed
            if split_file:
                p.data.split.file = split_file
            emit({"kind": "stage", "message": f"{what}: {arm.name}, seed {seed} ({k}/{total})",
                  "arm": arm.name, "seed": seed, "index": k, "total": total})
            res = train(p, on_event=on_event, control=control, runs_dir=runs_dir, plugins=plugins)
            if res.get("status") != "done":
                arm.failures.append(f"{arm.name} seed {seed}: {res.get('status')} {res.get('message', '')}".strip())
                continue
            value = _value(res, metric)
            if value is None:
                arm.failures.append(f"{arm.name} seed {seed}: no test {metric} (is there a test split?)")
                continue
            arm.values.append(float(value))
            arm.seeds.append(seed)
            arm.run_dirs.append(res["run_dir"])
            for key in ALSO:
                arm.also.setdefault(key, []).append(_value(res, key))
            run_split = Path(res["run_dir"]) / "split.json"
            if split_file is None and run_split.exists():
                split_file = str(run_split)


def compare_with_baseline(project: Project, seeds: int | Sequence[int] = 3, metric: str | None = None, *,
                          on_event: EventCallback | None = None, control=None, runs_dir: str | Path | None = None,
                          plugins=None) -> BaselineComparison:
    """Train ``project`` (the technique as set) and :func:`baseline_project` (the plain recipe on
    the same budget) for each seed and compare their test ``metric`` (None: the technique's
    ``baseline_metric``, else accuracy).  ``on_event`` receives every run's events plus a
    ``stage`` event before each run; ``control`` stops them all."""
    from ..plugins import get_plugin_manager

    plugins = plugins or get_plugin_manager()
    tech = plugins.technique(project.technique.id)
    metric = metric or tech.baseline_metric or "accuracy"
    base = baseline_project(project, plugins)
    if _same_recipe(project, base, plugins):
        raise StudioError(f"This project already trains the recommended plain recipe ({base.technique.id} with its "
                          "defaults): there is nothing to compare it with. To see whether the pretrained model helps, "
                          "compare with training from scratch instead (--compare-scratch).")
    seed_list = _seed_list(project, seeds)
    first = Arm("technique", project.model.weights, recipe=f"{project.technique.id} as set")
    if tech.baseline_settings:
        off = ", ".join(f"{k} = {v}" for k, v in tech.baseline_settings.items())
        recipe = f"{base.technique.id} with {off}: the plain fine-tuning recipe"
    else:
        recipe = f"{base.technique.id} with its defaults"
    second = Arm("baseline", base.model.weights, recipe=recipe)
    _train_arms([(first, project), (second, base)], seed_list, metric, "Baseline comparison", on_event, control,
                runs_dir, plugins)
    return BaselineComparison(metric, first, second)


def compare_with_scratch(project: Project, seeds: int | Sequence[int] = 3, metric: str = "accuracy", *,
                         on_event: EventCallback | None = None, control=None, runs_dir: str | Path | None = None,
                         plugins=None) -> ScratchComparison:
    """Train ``project`` (transfer) and :func:`scratch_project` (the plain recipe from random
    initialisation, same budget) for each seed and compare their test ``metric`` (accuracy,
    balanced_accuracy, auc ...).  Both arms share the split: the first run's stored split is
    used by every later run.  ``on_event`` receives every run's events plus a ``stage`` event
    before each run; ``control`` stops them all.
    """
    if project.model.weights == "none" and not project.model.from_run:
        raise StudioError("The negative-transfer check compares a pretrained model with random initialisation, but "
                          "this project already starts from random weights (weights = none).")
    seed_list = _seed_list(project, seeds)
    scratch_p = scratch_project(project, plugins)
    transfer = Arm("transfer", f"run:{project.model.from_run}" if project.model.from_run else project.model.weights,
                   recipe=f"{project.technique.id} as set")
    scratch = Arm("scratch", "none", recipe=f"{scratch_p.technique.id} "
                  + ("with its defaults, L2-SP off" if task_traits(project.task, plugins).plain_technique else "as set"))
    _train_arms([(transfer, project), (scratch, scratch_p)], seed_list, metric, "Negative-transfer check", on_event,
                control, runs_dir, plugins)
    return ScratchComparison(metric, transfer, scratch)
