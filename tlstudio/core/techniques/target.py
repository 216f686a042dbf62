"""The target domain of a run: a second image set, unlabelled for training.

``Project.data.target_source`` names it (``--target-data`` on the command line).  It is
read and validated like the source, decoded into the image cache at the same size and
normalised with the same mean and std.  Labels are optional; where present they are used
only to measure accuracy on the target, never to train: labelled target images are split
into an adaptation part (whose labels are ignored) and a held-out test part.  Target
classes are matched to the source classes by name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Callback

PARTS = ("adapt", "test")


def _key(name: str) -> str:
    return str(name).strip().lower()


class TargetData:
    """The prepared target images: ``indices["adapt"]`` (used unlabelled while training)
    and ``indices["test"]`` (labelled, held out, only for evaluation)."""

    def __init__(self, table, images: np.ndarray, valid: np.ndarray, source, test_fraction: float, seed: int):
        self.table = table
        self.images = images
        self.size, self.mean, self.std = source.size, source.mean, source.std
        self.class_names = list(source.class_names)  # the source's classes: the model's outputs
        self.fingerprint = table.fingerprint()
        index = {_key(c): k for k, c in enumerate(self.class_names)}
        raw = [it.label for it in table.items]
        self.unknown_classes = sorted({str(lab) for lab in raw if lab is not None and _key(lab) not in index})
        self._labels = np.array([index.get(_key(lab), -1) if lab is not None else -1 for lab in raw], dtype=np.int64)
        ok = np.asarray(valid, dtype=bool)
        labelled = np.flatnonzero(ok & (self._labels >= 0))
        test = _held_out(table, labelled, self._labels, test_fraction, seed)
        is_test = np.zeros(len(table), dtype=bool)
        is_test[test] = True
        self.indices = {"adapt": np.flatnonzero(ok & ~is_test), "test": np.sort(test)}
        self.test_fraction, self.seed = test_fraction, seed
        self._transforms: dict = {}

    def __len__(self) -> int:
        return int(sum(len(v) for v in self.indices.values()))

    @property
    def has_labels(self) -> bool:
        """True when target accuracy can be measured (a labelled held-out part exists)."""
        return len(self.indices["test"]) > 0

    def labels(self, part: str) -> np.ndarray:
        return self._labels[self.indices[part]]

    def refs(self, part: str) -> list[str]:
        return [self.table.items[i].ref for i in self.indices[part]]

    def transform(self, train: bool, source=None):
        if source is not None:
            return source.transform(train)
        if train not in self._transforms:
            from ..data import make_transforms

            self._transforms[train] = make_transforms(None, self.mean, self.std, self.size, False)
        return self._transforms[train]

    def dataset(self, part: str, train: bool = False, source=None):
        """(image, label) pairs of ``part`` ("adapt" or "test"); label -1 = unlabelled.
        ``train`` applies the source's augmentation (pass the source ImageData)."""
        from ..data import ImageDataset

        return ImageDataset(self.images, self._labels, self.indices[part], self.transform(train, source))

    def describe(self) -> dict:
        return {"source": str(self.table.source), "reader": self.table.reader_id, "fingerprint": self.fingerprint,
                "images": len(self), "adapt": int(len(self.indices["adapt"])), "test": int(len(self.indices["test"])),
                "labelled_test": self.has_labels, "test_fraction": self.test_fraction, "seed": self.seed,
                "unknown_classes": self.unknown_classes, "report": self.table.report.to_dict()}

    def split_record(self) -> dict:
        """Which target item went where (stored in the run folder)."""
        where = {int(i): p for p in PARTS for i in self.indices[p]}
        return {"fingerprint": self.fingerprint, "test_fraction": self.test_fraction, "seed": self.seed,
                "refs": {it.ref: where.get(i, "skipped") for i, it in enumerate(self.table.items)}}


def _held_out(table, labelled: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The labelled items kept for evaluation: the source's own test split where it has
    one, else a stratified ``fraction`` of each class."""
    if not len(labelled) or fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    given = np.array([table.items[i].split == "test" for i in labelled])
    if given.any():
        return labelled[given]
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels[labelled]):
        members = labelled[labels[labelled] == c]
        k = int(round(len(members) * fraction))
        if k:
            out.append(rng.choice(members, min(k, len(members)), replace=False))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def prepare_target(ctx, test_fraction: float = 0.3, seed: int | None = None, required: bool = True) -> TargetData | None:
    """Read, check and decode ``ctx.project.data.target_source`` for the run whose source
    data are ``ctx.data`` (same image size and normalisation); also sets ``ctx.data.target``.

    Returns None when the project has no target and ``required`` is False.
    """
    from ..data import build_image_cache, read_data

    proj = ctx.project
    if not proj.data.target_source:
        if required:
            raise DataError("This technique needs target-domain images: choose them as 'Target domain data' on the "
                            "Data page (or give --target-data on the command line).")
        return None
    path = proj.resolve(proj.data.target_source)
    readers = (ctx.plugins.readers() if ctx.plugins else None) or None
    ctx.log(f"Reading the target domain {path} ...")
    table = read_data(path, "auto", {}, readers, task=proj.task)  # images of the project's classes
    rep = table.report
    for w in rep.warnings:
        ctx.log(f"target: {w}", "warning")
    if rep.skipped:
        first = "; ".join(f"{Path(s.ref).name}: {s.reason}" for s in rep.skipped[:3])
        ctx.log(f"target: {len(rep.skipped)} item(s) skipped ({first}{' ...' if len(rep.skipped) > 3 else ''})",
                "warning")
    if not len(table):
        raise DataError(f"{path}: no usable target images")
    src = ctx.data
    images, valid = build_image_cache(table, src.size, ctx.cache_dir,
                                      progress=lambda d, t: ctx.progress("Decoding target images", d, t),
                                      should_stop=lambda: ctx.control.stopped)
    seed = proj.data.split.seed if seed is None else seed
    target = TargetData(table, images, valid, src, test_fraction, seed)
    if target.unknown_classes:
        ctx.log(f"target: classes {', '.join(target.unknown_classes[:5])} are not among the source classes "
                f"({', '.join(src.class_names[:10])}): those images are used unlabelled", "warning")
    if not len(target.indices["adapt"]):
        raise DataError(f"{path}: no target images left for adaptation (all {len(target)} are held out for testing); "
                        "lower the target test share")
    ctx.log(f"Target: {len(target.indices['adapt'])} images for adaptation (labels unused), "
            + (f"{len(target.indices['test'])} labelled images held out to measure target accuracy"
               if target.has_labels else "no labels: target accuracy cannot be measured"))
    src.target = target
    run = getattr(ctx, "run", None)
    if run is not None:
        from ..io import atomic_write_json

        atomic_write_json(run.dir / "target_split.json", target.split_record())
    return target



def target_predictions(ctx, model, target: TargetData, part: str = "test"):
    """Class probabilities (N, K) and labels (N,) of the target ``part`` with ``model``
    (plain preprocessing, eval mode)."""
    import torch

    was_training = model.training
    model.eval()
    loader = ctx.loader("test", train=False, dataset=target.dataset(part), shuffle=False)
    probs, labels = [], []
    with torch.no_grad(), ctx.autocast():
        for x, y in loader:
            probs.append(model(ctx.to_device(x)).float().softmax(1).cpu())
            labels.append(y)
    if was_training:
        model.train()
    k = len(target.class_names)
    return (torch.cat(probs) if probs else torch.zeros(0, k)), (torch.cat(labels) if labels else torch.zeros(0)).long()


def target_metrics(ctx, model, target: TargetData, part: str = "test") -> dict:
    """Accuracy (and the other classification metrics) of ``model`` on the labelled target
    images held out for testing; ``{"n": 0}`` when the target has no labels."""
    from ..analysis.metrics import classification_metrics

    if not target.has_labels:
        return {"n": 0}
    probs, labels = target_predictions(ctx, model, target, part)
    keep = labels >= 0
    return classification_metrics(probs[keep], labels[keep], target.class_names)


# --- as a callback any technique can list ---------------------------------------------------------
class TargetDomain(Callback):
    """A second image set, the target domain (another scanner, another hospital): read with
    the run's data, its labels (if any) used only to measure accuracy on held-out target
    images after every epoch and at the end, and optionally the shift between the domains
    (MMD with its p-value) before and after training."""

    series = {"target_accuracy": "Target accuracy"}

    def __init__(self, test_share: float = 0.3, measure_shift: bool = False, shift_images: int = 300,
                 trained_with: str = ""):
        self.test_share, self.measure_shift, self.shift_images = float(test_share), bool(measure_shift), int(shift_images)
        self.trained_with = trained_with  # the report's words for the arm: "the domains aligned (DANN)"
        self.shift: dict = {}

    def on_data(self, ctx) -> None:
        prepare_target(ctx, self.test_share)

    def setup(self, ctx) -> None:
        if self.measure_shift and "before" not in self.shift and ctx.train.step == 0:
            rep = self._measure(ctx)
            self.shift["before"] = rep.to_dict()
            ctx.log(f"Domain shift before adaptation: MMD² {rep.mmd.mmd2:.4f}, p = {rep.mmd.p_value:.3g}.")

    def _measure(self, ctx):
        from ..analysis.diagnostics import run_shift

        return run_shift(ctx, ctx.model.backbone, self.shift_images, seed=ctx.training.seed)

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        target = ctx.data.target
        return {"target_accuracy": target_metrics(ctx, ctx.model, target)["accuracy"]} if target.has_labels else {}

    def after_evaluate(self, ctx, split: str, m: dict) -> None:
        if split != "test":
            return
        t = target_metrics(ctx, ctx.model, ctx.data.target)
        if t.get("n"):
            m["target"] = t
            m.update({f"target_{k}": t[k] for k in ("accuracy", "balanced_accuracy", "f1_macro", "auc")})
            m["target_n"] = t["n"]
        if self.measure_shift:
            rep = self._measure(ctx)
            self.shift["after"] = rep.to_dict()
            m["mmd2_after"], m["mmd_p_after"] = rep.mmd.mmd2, rep.mmd.p_value
            if "before" in self.shift:
                m["mmd2_before"], m["mmd_p_before"] = self.shift["before"]["mmd2"], self.shift["before"]["p_value"]
            ctx.log(f"Domain shift after adaptation: MMD² {rep.mmd.mmd2:.4f}, p = {rep.mmd.p_value:.3g}.")

    def write_results(self, ctx, split: str, metrics: dict) -> None:
        if split == "test" and self.shift:
            from ..io import atomic_write_json

            atomic_write_json(ctx.run.dir / "domain_shift.json", self.shift)

    def report(self, ctx, final: dict) -> str:
        t = final.get("test", {})
        lines = ["## Target domain", ""] + ([f"- Trained with {self.trained_with}."] if self.trained_with else [])
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
        return "\n".join(lines)

    def state_dict(self) -> dict:
        return {"shift_before": self.shift["before"]} if self.shift.get("before") else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("shift_before"):
            self.shift["before"] = state["shift_before"]
