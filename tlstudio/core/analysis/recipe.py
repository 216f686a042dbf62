"""Find the best recipe for a data set, on its validation split, within a time budget.

"The best recipe" measured on one data set is not the best on the next (docs/results.md):
:func:`find_recipe` tries a small set of candidates on the project's own data and keeps the
one that does best on **validation**:

- the candidates (:func:`candidates`): frozen features, fine-tuning and progressive
  unfreezing, each with its Config defaults and recommended training, at two learning rates
  (the recommended one and a third of it): six arms on the project's data, split, model, image
  size, augmentation and seed;
- successive halving (Jamieson & Talwalkar 2016, Hyperband's inner loop): every arm trains to
  its first rung, a small share of its epochs; the best third on the validation metric carry
  on to the next rung, and so on until one arm has run its whole schedule.  An arm is stopped
  and later resumed from its checkpoint, never shortened: the learning-rate schedule of the
  arm that finishes is exactly that of an ordinary run.  With a time budget, an arm carries on
  only while its expected time (extrapolated from its own epochs so far) fits what is left;
  the best one always finishes;
- every run holds the test split back (the engine does not evaluate it): the choice sees the
  validation split only.  The winner's test split is evaluated once, at the end.

Each arm is shown with its validation metric at the epoch its own best-model rule keeps, the
metric's 95% interval (Wilson for accuracy, Hanley & McNeil for a two-class AUC), its epochs
and its time.  :func:`apply_recipe` makes the winner the project's recipe.  Optuna was not
used: six fixed arms with successive halving need no sampler, and the engine's stop/resume
already gives the pruning.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..config import Project, TrainingConfig
from ..errors import StudioError
from ..tasks.traits import task_traits

EventCallback = Callable[[dict], None]

#: the candidate techniques (each with its Config defaults and recommended training)
TECHNIQUES = ("frozen-features", "fine-tuning", "progressive-unfreezing")
#: the two learning rates of each: the recommended rate times these
LR_FACTORS = (1.0, 1.0 / 3.0)
#: what every arm keeps from the project's training settings (the recipe brings the rest)
KEEP = ("seed", "device", "threads", "deterministic", "amp", "num_workers")
#: the shortest rung, in epochs (progressive unfreezing trains only its head in epoch 1)
MIN_RUNG = 2


@dataclass
class Arm:
    """One candidate recipe and how far it got."""

    technique: str
    lr: float
    epochs: int
    name: str = ""
    run_dir: str = ""
    epochs_done: int = 0
    score: float | None = None  # the validation metric of the epoch its best-model rule keeps
    score_epoch: int | None = None
    ci95: tuple[float | None, float | None] = (None, None)
    val: dict = field(default_factory=dict)
    seconds: float = 0.0
    rung: int = -1  # the last rung it completed
    status: str = "waiting"

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.technique}, lr {self.lr:.2g}"

    def to_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95)}


@dataclass
class RecipeSearch:
    """The search's outcome: every arm, the winner, and the winner's test metrics."""

    metric: str
    arms: list[Arm]
    rungs: dict[str, list[int]]
    budget_s: float | None
    wall_s: float = 0.0
    winner: int | None = None
    test: dict = field(default_factory=dict)
    stopped: bool = False
    notes: list[str] = field(default_factory=list)
    default_name: str = ""

    @property
    def best(self) -> Arm | None:
        return self.arms[self.winner] if self.winner is not None else None

    @property
    def verdict(self) -> str:
        b = self.best
        if b is None:
            why = "it was stopped" if self.stopped else "no recipe finished"
            return f"No recipe chosen: {why}. " + " ".join(self.notes)
        m = self.metric.replace("_", " ")
        lo, hi = b.ci95
        text = (f"Best on validation: {b.name} (validation {m} {b.score:.3f}"
                + (f", 95% CI {lo:.3f}–{hi:.3f}" if lo is not None else "") + f", epoch {b.score_epoch} of {b.epochs}).")
        if self.test:
            parts = [f"{k.replace('_', ' ')} {self.test[k]:.3f}" for k in ("auc", "accuracy", "balanced_accuracy")
                     if self.test.get(k) is not None]
            text += " On the test split, used once now: " + ", ".join(parts) + "."
        if b.name == self.default_name:
            text += " It is the recipe a new project already proposes."
        minutes = self.wall_s / 60
        text += f" {len(self.arms)} recipes searched in {minutes:.1f} min" + (
            f" (budget {self.budget_s / 60:.1f} min)." if self.budget_s else ".")
        return text + ("" if not self.notes else " " + " ".join(self.notes))

    def to_dict(self) -> dict:
        return {"metric": self.metric, "arms": [a.to_dict() for a in self.arms], "rungs": self.rungs,
                "budget_s": self.budget_s, "wall_s": self.wall_s, "winner": self.winner,
                "winner_name": self.best.name if self.best else None, "test": self.test, "stopped": self.stopped,
                "notes": self.notes, "verdict": self.verdict}


# --- candidates and rungs ------------------------------------------------------------------------
def _training(project: Project, recommended: dict, lr: float, epochs: int) -> TrainingConfig:
    values = {**TrainingConfig().model_dump(), **recommended, "lr": lr, "epochs": epochs}
    values.update({k: getattr(project.training, k) for k in KEEP})
    return TrainingConfig.model_validate(values)


def candidates(project: Project, plugins, epochs: int | None = None) -> list[Arm]:
    """The six arms: each candidate technique at its recommended rate and a third of it, for
    its recommended epochs (or ``epochs`` for all)."""
    out = []
    for tid in TECHNIQUES:
        rec = plugins.technique(tid).recommended_training()
        lr = rec.get("lr", TrainingConfig().lr)
        n = epochs or rec.get("epochs", TrainingConfig().epochs)
        out += [Arm(tid, lr * f, n) for f in LR_FACTORS]
    return out


def rung_epochs(epochs: int, n_arms: int, eta: int = 3) -> list[int]:
    """The epochs at which arms are compared: ``epochs`` / eta^k for the cuts that take
    ``n_arms`` down to one (at least :data:`MIN_RUNG`, rising, the last = all epochs)."""
    cuts = max(1, math.ceil(math.log(max(n_arms, 2), eta) - 1e-9))
    rungs = [min(epochs, max(MIN_RUNG, round(epochs / eta ** (cuts - k)))) for k in range(cuts)] + [epochs]
    return sorted(set(rungs))


def arm_project(project: Project, arm: Arm, plugins) -> Project:
    p = project.model_copy(deep=True)
    p._path = project.path
    p.technique.id, p.technique.settings = arm.technique, {}
    p.training = _training(project, plugins.technique(arm.technique).recommended_training(), arm.lr, arm.epochs)
    p.name = f"{project.name} · recipe {arm.name}"
    return p


def apply_recipe(project: Project, arm: Arm, plugins=None) -> Project:
    """A copy of ``project`` with ``arm``'s recipe: its technique with default settings and its
    training (recommended settings, the arm's learning rate and epochs)."""
    from ..plugins import get_plugin_manager

    p = arm_project(project, arm, plugins or get_plugin_manager())
    p.name = project.name
    return p


# --- intervals -------------------------------------------------------------------------------------
def hanley_mcneil(auc: float, n_pos: int, n_neg: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of an AUC from its value and the class sizes (Hanley & McNeil 1982)."""
    if n_pos < 1 or n_neg < 1:
        return (0.0, 1.0)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return (max(0.0, auc - z * se), min(1.0, auc + z * se))


def _interval(metric: str, value: float, val_counts: list[int]) -> tuple[float | None, float | None]:
    n = sum(val_counts)
    if not n:
        return (None, None)
    if metric == "auc" and len(val_counts) == 2:
        return hanley_mcneil(value, val_counts[1], val_counts[0])
    from .metrics import wilson_interval

    return wilson_interval(round(value * n), n)


# --- the search ------------------------------------------------------------------------------------
class _SegmentControl:
    """The engine's control for one segment of an arm: stops at the rung, or when the
    caller's control stops (or pauses while it pauses)."""

    def __init__(self, outer) -> None:
        from ..engine import RunControl

        self.own, self.outer = RunControl(), outer

    def watch(self, path) -> None:
        self.own.watch(path)

    def stop(self) -> None:
        self.own.stop()

    @property
    def stopped(self) -> bool:
        return self.own.stopped or self.outer.stopped

    @property
    def paused(self) -> bool:
        return self.outer.paused

    def check(self) -> None:
        self.outer.check()
        self.own.check()

    def sync(self) -> None:
        self.check()


class _Search:
    def __init__(self, project: Project, budget_s, metric: str, eta: int, on_event, control, runs_dir, plugins):
        from ..engine import RunControl

        self.project, self.budget_s, self.metric, self.eta = project, budget_s, metric, eta
        self.emit = on_event or (lambda e: None)
        self.control = control or RunControl()
        self.runs_dir, self.plugins = runs_dir, plugins
        self.split_file: str | None = None
        self.val_counts: list[int] = []
        self.t0 = time.time()

    def elapsed(self) -> float:
        return time.time() - self.t0

    def segment(self, arm: Arm, stop_at: int) -> str:
        """Train ``arm`` up to epoch ``stop_at`` (a new run, or its run resumed); the status."""
        from ..engine import Trainer
        from ..runs import Run

        ctl = _SegmentControl(self.control)
        seen: dict = {}

        def on_event(e: dict) -> None:
            if e.get("kind") == "epoch":
                arm.epochs_done = int(e["epoch"])
                if e.get("best"):
                    seen.update(epoch=int(e["epoch"]), val={k: v for k, v in e.items() if k.startswith("val_")})
                if arm.epochs_done >= stop_at and stop_at < arm.epochs:
                    ctl.stop()
            if e.get("kind") == "done" or (e.get("kind") == "stopped" and not self.control.stopped):
                return  # a rung reached (the search goes on) or a finished run: the search reports itself
            self.emit(e)

        t = time.time()
        if arm.run_dir:
            run = Run(arm.run_dir)
            trainer = Trainer(run.project(), on_event=on_event, control=ctl, runs_dir=run.dir.parent,
                              plugins=self.plugins, resume_run=run, evaluate_test=False)
        else:
            p = arm_project(self.project, arm, self.plugins)
            if self.split_file:
                p.data.split.file = self.split_file
            trainer = Trainer(p, on_event=on_event, control=ctl, runs_dir=self.runs_dir, plugins=self.plugins,
                              evaluate_test=False)
        trainer.seconds_before = arm.seconds
        res = trainer.fit()
        arm.seconds += time.time() - t
        arm.run_dir = arm.run_dir or res.get("run_dir") or ""
        if seen:
            self._score(arm, seen)
        if arm.run_dir and self.split_file is None and (Path(arm.run_dir) / "split.json").exists():
            self.split_file = str(Path(arm.run_dir) / "split.json")
        if self.control.stopped:
            arm.status = "stopped by you"
            return "stopped"
        if res.get("status") == "failed":
            arm.status = f"failed: {res.get('message', '')}"
            return "failed"
        return "ok"

    def _score(self, arm: Arm, seen: dict) -> None:
        if not self.val_counts:
            self._read_counts(arm)
        if self.metric == "auto":
            self.metric = "auc" if len(self.val_counts) == 2 and seen["val"].get("val_auc") is not None else "accuracy"
        value = seen["val"].get(f"val_{self.metric}")
        if value is None:
            return
        arm.score, arm.score_epoch, arm.val = float(value), seen["epoch"], seen["val"]
        arm.ci95 = _interval(self.metric, arm.score, self.val_counts)

    def _read_counts(self, arm: Arm) -> None:
        import json

        try:
            data = json.loads((Path(arm.run_dir) / "data.json").read_text(encoding="utf-8"))
            names, val = data["class_names"], data["split_counts"]["val"]
            self.val_counts = [int(val.get(c, 0)) for c in names]
        except (OSError, ValueError, KeyError):
            self.val_counts = []

    def progress(self, arms: list[Arm], message: str) -> None:
        self.emit({"kind": "recipe", "message": message, "metric": self.metric, "elapsed": self.elapsed(),
                   "arms": [a.to_dict() for a in arms]})


def find_recipe(project: Project, budget_minutes: float | None = None, metric: str = "auto", *,
                epochs: int | None = None, eta: int = 3, on_event: EventCallback | None = None, control=None,
                runs_dir: str | Path | None = None, plugins=None) -> RecipeSearch:
    """Search the candidate recipes on ``project``'s data (see the module docstring).

    ``metric``: "auto" (AUC for two classes, else accuracy), "auc" or "accuracy", on the
    validation split.  ``epochs``: every arm's epochs (default: each recipe's recommended).
    ``on_event`` gets every run's events, a ``stage`` event before each segment and a
    ``recipe`` event (``arms``: every arm as a dict) after each; ``control`` stops the search.
    """
    from ..plugins import get_plugin_manager

    plugins = plugins or get_plugin_manager()
    if not task_traits(project.task, plugins).can("recipe-search"):
        raise StudioError("The recipe search compares image-classification recipes (frozen features, fine-tuning, "
                          f"progressive unfreezing); this project's task is {project.task}.")
    if metric not in ("auto", "auc", "accuracy"):
        raise StudioError(f"The recipe search chooses on validation auc or accuracy, not {metric!r}.")
    arms = candidates(project, plugins, epochs)
    budget_s = budget_minutes * 60 if budget_minutes else None
    s = _Search(project, budget_s, metric, eta, on_event, control, runs_dir, plugins)
    rungs = {a.name: rung_epochs(a.epochs, len(arms), eta) for a in arms}
    default = Arm(Project().technique.id, plugins.technique(Project().technique.id).recommended_training()["lr"],
                  epochs or plugins.technique(Project().technique.id).recommended_training()["epochs"])
    out = RecipeSearch(s.metric, arms, rungs, budget_s, default_name=default.name)
    alive = list(arms)
    n_rungs = max(len(r) for r in rungs.values())
    for k in range(n_rungs):
        for i, arm in enumerate(alive):
            stop_at = rungs[arm.name][min(k, len(rungs[arm.name]) - 1)]
            if arm.epochs_done >= stop_at:
                continue
            s.emit({"kind": "stage", "message": f"Recipe search, rung {k + 1} of {n_rungs}: {arm.name} to epoch "
                    f"{stop_at} of {arm.epochs} ({i + 1}/{len(alive)})", "index": i + 1, "total": len(alive),
                    "rung": k + 1})
            arm.status = "training"
            if s.segment(arm, stop_at) == "stopped":
                out.stopped = True
                break
            if not arm.status.startswith("failed"):
                arm.rung, arm.status = k, ("finished" if arm.epochs_done >= arm.epochs else f"rung {k + 1} done")
            s.progress(arms, f"{arm.name}: epoch {arm.epochs_done} of {arm.epochs}")
        if out.stopped:
            break
        scored = sorted((a for a in alive if a.score is not None and not a.status.startswith("failed")),
                        key=lambda a: a.score, reverse=True)
        if k == n_rungs - 1 or not scored:
            alive = scored
            break
        keep = max(1, math.ceil(len(scored) / eta))
        alive = _within_budget(s, scored[:keep], rungs, k)
        for a in scored:
            if a not in alive:
                a.status = (f"stopped after epoch {a.epochs_done}: weaker on validation" if a in scored[keep:]
                            else f"stopped after epoch {a.epochs_done}: the time budget")
    s.metric = out.metric = s.metric if s.metric != "auto" else "accuracy"
    finished = [a for a in arms if a.status == "finished" and a.score is not None]
    if finished and not out.stopped:
        best = max(finished, key=lambda a: a.score)
        out.winner = arms.index(best)
        best.status = "chosen"
        out.test = _test_once(s, best)
    elif not out.stopped:
        out.notes.append("No arm finished its schedule (failed runs are listed with their reason).")
    out.wall_s = s.elapsed()
    s.progress(arms, out.verdict)
    if out.best is not None:
        from ..io import atomic_write_json

        atomic_write_json(Path(out.best.run_dir) / "recipe_search.json", out.to_dict())
    return out


def _within_budget(s: _Search, ranked: list[Arm], rungs: dict, k: int) -> list[Arm]:
    """The arms that carry on to rung ``k + 1``: the best always; the others while their
    extrapolated time fits what is left of the budget."""
    keep, left = [], (s.budget_s - s.elapsed()) if s.budget_s else None
    for a in ranked:
        nxt = rungs[a.name][min(k + 1, len(rungs[a.name]) - 1)]
        cost = a.seconds / max(1, a.epochs_done) * max(0, nxt - a.epochs_done)
        if keep and left is not None and cost > left:
            continue
        keep.append(a)
        if left is not None:
            left -= cost
    return keep


def _test_once(s: _Search, arm: Arm) -> dict:
    """The winner's test split, evaluated once: its run finishes with the test evaluation."""
    from ..engine import Trainer
    from .metrics import scalar_metrics
    from ..runs import Run

    run = Run(arm.run_dir)
    s.emit({"kind": "stage", "message": f"Recipe search: the test split, once, for {arm.name}"})
    trainer = Trainer(run.project(), on_event=lambda e: s.emit(e) if e.get("kind") != "done" else None,
                      control=_SegmentControl(s.control), runs_dir=run.dir.parent, plugins=s.plugins,
                      resume_run=run, evaluate_test=True)
    trainer.seconds_before = arm.seconds  # final.json and the report count all its segments
    res = trainer.fit()
    if res.get("status") != "done":
        arm.status = "chosen (test not evaluated)"
        return {"error": f"The test evaluation of {arm.name} did not finish: {res.get('message', res.get('status'))}"}
    return scalar_metrics(res.get("test", {}))
