"""The negative-transfer check: does the pretrained model actually help?

:func:`compare_with_scratch` trains the project's recipe twice per seed: as it stands
(transfer: pretrained weights, or an earlier run's model) and from random initialisation
(``model.weights = "none"``), on the same data and the same split, with the same budget
(epochs, batch size, schedule, technique settings).  Several seeds give each arm a mean,
a standard deviation and a 95% confidence interval (Student's t), and the difference its
own interval.  When scratch does as well as or better than transfer, the result says so
plainly: the pretrained features do not help on these images (negative transfer).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import Project
from .errors import StudioError

EventCallback = Callable[[dict], None]


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

    name: str  # "transfer" or "scratch"
    weights: str
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

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
class ScratchComparison:
    metric: str
    transfer: Arm
    scratch: Arm

    @property
    def difference(self) -> float | None:
        """Mean of the per-seed differences transfer − scratch."""
        d = self._paired()
        return float(np.mean(d)) if d else None

    @property
    def difference_ci95(self) -> tuple[float | None, float | None]:
        return t_interval(self._paired())

    def _paired(self) -> list[float]:
        s = dict(zip(self.scratch.seeds, self.scratch.values))
        return [v - s[k] for k, v in zip(self.transfer.seeds, self.transfer.values) if k in s]

    @property
    def negative_transfer(self) -> bool:
        """True when training from scratch did as well as or better than transfer."""
        t, s = self.transfer.mean, self.scratch.mean
        return t is not None and s is not None and s >= t

    @property
    def verdict(self) -> str:
        t, s = self.transfer, self.scratch
        if t.mean is None or s.mean is None:
            return "The comparison is incomplete: " + "; ".join(t.failures + s.failures)
        m = self.metric.replace("_", " ")
        lo, hi = self.difference_ci95
        if self.negative_transfer:
            return (f"WARNING — negative transfer: training from random initialisation reached {m} "
                    f"{s.mean:.3f} against {t.mean:.3f} with the pretrained model ({len(s.values)} seeds each). The "
                    "pretrained features do not help on these images: they may even hurt. Try a model pretrained on "
                    "images closer to yours, unfreeze more layers, or train from scratch.")
        sure = lo is not None and lo > 0
        text = (f"Transfer helps: {m} {t.mean:.3f} with the pretrained model against {s.mean:.3f} from scratch "
                f"(+{100 * (t.mean - s.mean):.1f} points")
        if lo is not None:
            text += f", 95% CI of the difference {100 * lo:+.1f} to {100 * hi:+.1f}"
        text += ")."
        if not sure:
            text += " The interval includes zero: with these seeds the gain is not certain; add seeds to be sure."
        return text

    def to_dict(self) -> dict:
        lo, hi = self.difference_ci95
        return {"metric": self.metric, "transfer": self.transfer.to_dict(), "scratch": self.scratch.to_dict(),
                "difference": self.difference, "difference_ci95": [lo, hi],
                "negative_transfer": self.negative_transfer, "verdict": self.verdict}


def scratch_project(project: Project) -> Project:
    """The same recipe from random initialisation: no pretrained weights, no earlier run."""
    p = project.model_copy(deep=True)
    p._path = project.path
    p.model.weights = "none"
    p.model.from_run = ""
    p.name = f"{project.name} (from scratch)"
    return p


def compare_with_scratch(project: Project, seeds: int | Sequence[int] = 3, metric: str = "accuracy", *,
                         on_event: EventCallback | None = None, control=None, runs_dir: str | Path | None = None,
                         plugins=None) -> ScratchComparison:
    """Train ``project`` (transfer) and its from-scratch twin for each seed and compare their
    test ``metric`` (accuracy, balanced_accuracy, auc ...).  Both arms share the split: the
    first run's stored split is used by every later run.  ``on_event`` receives every run's
    events plus a ``stage`` event before each run; ``control`` stops them all.
    """
    from .engine import RunControl, train

    if project.model.weights == "none" and not project.model.from_run:
        raise StudioError("The negative-transfer check compares a pretrained model with random initialisation, but "
                          "this project already starts from random weights (weights = none).")
    seed_list = list(range(project.training.seed, project.training.seed + seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise StudioError("The negative-transfer check needs at least one seed.")
    control = control or RunControl()
    emit = on_event or (lambda e: None)
    transfer = Arm("transfer", f"run:{project.model.from_run}" if project.model.from_run else project.model.weights)
    scratch = Arm("scratch", "none")
    split_file: str | None = None
    total = 2 * len(seed_list)
    k = 0
    for seed in seed_list:
        for arm, base in ((transfer, project), (scratch, scratch_project(project))):
            if control.stopped:
                break
            k += 1
            p = base.model_copy(deep=True)
            p._path = base.path
            p.training.seed = seed
            if split_file:
                p.data.split.file = split_file
            emit({"kind": "stage", "message": f"Negative-transfer check: {arm.name}, seed {seed} ({k}/{total})",
                  "arm": arm.name, "seed": seed, "index": k, "total": total})
            res = train(p, on_event=on_event, control=control, runs_dir=runs_dir, plugins=plugins)
            if res.get("status") != "done":
                arm.failures.append(f"{arm.name} seed {seed}: {res.get('status')} {res.get('message', '')}".strip())
                continue
            value = res.get(f"test_{metric}")
            if value is None:
                arm.failures.append(f"{arm.name} seed {seed}: no test {metric} (is there a test split?)")
                continue
            arm.values.append(float(value))
            arm.seeds.append(seed)
            arm.run_dirs.append(res["run_dir"])
            run_split = Path(res["run_dir"]) / "split.json"
            if split_file is None and run_split.exists():
                split_file = str(run_split)
    return ScratchComparison(metric, transfer, scratch)
