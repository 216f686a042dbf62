"""What to propose to a domain expert who has not chosen yet: the technique that fits their
data, and how long training takes on this computer (quick, standard or thorough).

``recommend_technique`` applies a few rules, each with the sentence the window shows:

- a task without the ``technique-advice`` ability (texts, boxes, captions): the technique of
  that task (text classification, Faster R-CNN, captioning);
- images and a target domain (images from another scanner or hospital): domain-adversarial
  training (DANN), which learns from the target images without their labels;
- images with fewer than ``FEW_PER_CLASS`` training images in the smallest class: frozen
  features (only a new head learns: the safest with very few images);
- otherwise progressive unfreezing with its defaults, the best recipe measured on breast
  ultrasound (docs/results.md).

``training_plan`` turns the technique's recommended epochs into three durations and, from the
model's training speed measured on this computer (``tlstudio.core.analysis.recommend.speed_of``), into
the expected time of each.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..tasks.traits import task_traits

#: fewer training images than this in the smallest class: propose frozen features
FEW_PER_CLASS = 20
#: quick / standard / thorough as shares of the technique's recommended epochs
DURATIONS = {"quick": 0.4, "standard": 1.0, "thorough": 2.0}
#: evaluating one image (forward pass only) costs about this share of training on it
EVAL_COST = 0.35
#: the best measured recipe (docs/results.md, BreastMNIST, 3 seeds, 128 px, 2 CPU threads)
MEASURED = ("test AUC 0.923 ± 0.013, accuracy 0.893 ± 0.024 over 3 seeds on BreastMNIST (breast ultrasound), "
            "MobileNetV2 at 128 px: docs/results.md")


@dataclass
class TechniqueAdvice:
    id: str
    reason: str  # one plain sentence
    detail: str = ""  # the numbers behind it (a tooltip)


def recommend_technique(techniques: dict, task: str, n_train: int | None = None, smallest_class: int | None = None,
                        has_target: bool = False, plugins=None) -> TechniqueAdvice | None:
    """The technique to propose for data of ``task`` (see the module docstring); None when no
    technique of the task is available.  ``techniques``: id -> Technique (the plugins')."""
    of_task = {tid: t for tid, t in techniques.items() if getattr(t, "task", "") == task}
    if not of_task:
        return None
    traits = task_traits(task, plugins)
    if not traits.can("technique-advice"):
        tid = next(iter(of_task))
        return TechniqueAdvice(tid, f"{of_task[tid].title or tid} is the technique for {traits.noun}.")
    if has_target and "dann" in of_task:
        return TechniqueAdvice("dann", "Your project names images from another scanner or hospital (the target "
                                       "domain): domain-adversarial training learns to treat both alike, without "
                                       "needing labels for the target images.")
    if smallest_class is not None and smallest_class < FEW_PER_CLASS and "frozen-features" in of_task:
        return TechniqueAdvice("frozen-features",
                               f"Your smallest class has only {smallest_class} training image"
                               f"{'s' if smallest_class != 1 else ''}: with so few, only a new final layer should "
                               "learn, on top of the unchanged pretrained network.",
                               f"fewer than {FEW_PER_CLASS} training images in the smallest class")
    for tid in ("progressive-unfreezing", "fine-tuning"):
        if tid in of_task:
            n = f"With {n_train:,} training images" if n_train else "With a few hundred images or more"
            return TechniqueAdvice(tid, f"{n}, the pretrained network can adapt to your images step by step: the "
                                        "best recipe measured on breast ultrasound images.", MEASURED)
    tid = next(iter(of_task))
    return TechniqueAdvice(tid, f"{of_task[tid].title or tid} fits your data.")


@dataclass
class Duration:
    key: str  # quick, standard, thorough
    epochs: int
    seconds: float | None  # None: the speed is not measured yet


@dataclass
class TrainingPlan:
    durations: list[Duration] = field(default_factory=list)
    images_per_s: float | None = None
    counts: dict = field(default_factory=dict)  # train / val / test images

    def matching(self, epochs: int) -> str | None:
        """The duration whose epochs the project has (None: a custom number)."""
        return next((d.key for d in self.durations if d.epochs == epochs), None)


def duration_epochs(recommended_epochs: int) -> dict[str, int]:
    e = max(1, int(recommended_epochs))
    out = {k: max(2, round(e * f)) if k == "quick" else max(1, round(e * f)) for k, f in DURATIONS.items()}
    if out["quick"] >= out["standard"]:
        out["quick"] = max(1, out["standard"] - 1)
    return out


def estimate_seconds(epochs: int, counts: dict, images_per_s: float, frozen: bool = False,
                     flip_at_test: bool = False) -> float:
    """Expected training time from a measured training speed: every epoch trains on the
    training images and evaluates the validation images, then the test images are evaluated
    once.  With frozen (cached) features, the network runs once over every image and the
    epochs cost next to nothing.  An upper bound for progressive unfreezing, whose first
    stages train fewer layers."""
    speed = max(float(images_per_s), 1e-9)
    n_train, n_val, n_test = (int(counts.get(s, 0)) for s in ("train", "val", "test"))
    look = EVAL_COST * (2 if flip_at_test else 1)
    if frozen:
        return (n_train + n_val + n_test) * EVAL_COST / speed
    return epochs * (n_train + n_val * look) / speed + n_test * look / speed


def training_plan(recommended_epochs: int, counts: dict, images_per_s: float | None, frozen: bool = False,
                  flip_at_test: bool = False) -> TrainingPlan:
    eps = duration_epochs(recommended_epochs)
    durs = [Duration(k, e, estimate_seconds(e, counts, images_per_s, frozen, flip_at_test) if images_per_s else None)
            for k, e in eps.items()]
    return TrainingPlan(durs, images_per_s, dict(counts))


def split_sizes(table, split_config) -> dict[str, int]:
    """Training, validation and test images of a read data table under the project's split."""
    from collections import Counter

    from ..data import make_split

    sp = split_config
    c = Counter(make_split(table, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed))
    return {s: int(c.get(s, 0)) for s in ("train", "val", "test")}


def smallest_training_class(table, split_config) -> int | None:
    from ..data import make_split, split_counts

    if not getattr(table, "class_names", None):
        return None
    sp = split_config
    counts = split_counts(table, make_split(table, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed))
    train = counts.get("train") or {}
    return min((int(train.get(c, 0)) for c in table.class_names), default=None)
