"""Image classification: the data of a run, and the task (the built-in task plugin
``image-classification``: reading, splitting and caching images, the loss, evaluation with
the figures a clinician reads, prediction and export)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, StudioError
from ..io import atomic_write_json, atomic_write_text, stable_hash
from ..analysis.metrics import classification_metrics, roc_curve
from .base import Task
from .traits import IMAGE_CLASSIFICATION

SPLITS = ("train", "val", "test")


class SplitItems:
    """A classifier's data by split: ``table`` (its items), ``indices`` (split -> item indices)
    and ``_labels`` (one class index per item); images and texts share these reads."""

    table: Any
    indices: dict[str, np.ndarray]
    _labels: np.ndarray

    def has_split(self, split: str) -> bool:
        return len(self.indices.get(split, ())) > 0

    def labels(self, split: str) -> np.ndarray:
        return self._labels[self.indices[split]]

    def refs(self, split: str) -> list[str]:
        return [self.table.items[i].ref for i in self.indices[split]]


class ImageData(SplitItems):
    """The prepared images of one run: decoded once, cached, split, ready for loaders."""

    #: the target domain (a :class:`tlstudio.core.techniques.target.TargetData`), when a technique
    #: prepared one with :func:`tlstudio.core.techniques.target.prepare_target`
    target = None
    #: patients/groups of the data and of the split (:func:`tlstudio.core.data.split.group_summary`)
    groups = None
    #: the leakage check of the split (:meth:`tlstudio.core.analysis.leakage.LeakReport.to_dict`)
    leakage = None

    def __init__(self, table, assignments: list[str], images: np.ndarray, valid: np.ndarray, size: int,
                 mean, std, augmentation, split_file: Path | None):
        self.table = table
        self.class_names = list(table.class_names)
        self.images = images
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        self._transforms: dict[bool, Any] = {}
        self.augmentation = augmentation
        self.split_file = split_file
        self.fingerprint = table.fingerprint()
        self._labels = table.labels()
        usable = valid & (self._labels >= 0)
        a = np.asarray(assignments)
        self.indices = {s: np.flatnonzero(usable & (a == s)) for s in SPLITS}

    @property
    def augmentation(self):
        return self._augmentation

    @augmentation.setter
    def augmentation(self, value) -> None:  # new settings: the transforms are made again
        self._augmentation = value
        self._transforms = {}


    def transform(self, train: bool):
        if train not in self._transforms:
            from ..data import make_transforms

            self._transforms[train] = make_transforms(self.augmentation, self.mean, self.std, self.size, train,
                                                      grayscale=self.grayscale)
        return self._transforms[train]

    @property
    def grayscale(self) -> bool:
        """Every image has equal channels (X-ray, ultrasound ...): no colour augmentation."""
        if not hasattr(self, "_grayscale"):
            from ..data.transforms import is_grayscale

            idx = self.indices["train"]  # a sample: reading the whole training set would fill memory
            idx = idx[np.linspace(0, len(idx) - 1, min(64, len(idx))).astype(int)] if len(idx) else idx
            self._grayscale = is_grayscale(self.images[idx]) if len(idx) else False
        return self._grayscale

    def dataset(self, split: str, train: bool = False):
        from ..data import ImageDataset

        return ImageDataset(self.images, self._labels, self.indices[split], self.transform(train))

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: int((self.labels(s) == k).sum()) for k, c in enumerate(self.class_names)} for s in SPLITS}

    def describe(self) -> dict:
        return {"reader": self.table.reader_id, "source": str(self.table.source), "fingerprint": self.fingerprint,
                "class_names": self.class_names, "image_size": self.size, "mean": self.mean, "std": self.std,
                "split_counts": self.counts(), "report": self.table.report.to_dict(),
                **({"target": self.target.describe()} if self.target is not None else {}),
                **({"groups": self.groups} if self.groups else {}),
                **({"leakage": self.leakage} if self.leakage is not None else {})}


def _split_path(ctx, table) -> Path:
    from ..settings import cache_dir

    proj = ctx.project
    sp = proj.data.split
    if sp.file:
        return proj.resolve(sp.file)
    key = stable_hash(table.fingerprint(), sp.mode, sp.val_fraction, sp.test_fraction, sp.seed)
    base = (proj.base_dir / "splits") if proj.path else (cache_dir() / "splits")
    return base / f"split-{key}.json"


def stored_split(ctx, table) -> tuple[list[str], Path | None]:
    """'train'/'val'/'test' per item of ``table``: the stored split when there is one, else a
    new seeded one (the source's own where it has one; by patient where the data names
    patients), stored so that re-runs use it.  A stored split that no longer matches the data
    is never replaced silently: :class:`~tlstudio.core.data.split.SplitChangedError` says so,
    and the user chooses (``tlstudio train --new-split``, the Data page's "Make a new split").
    Shared by every task."""
    from ..data import make_split, save_split
    from ..data.split import SplitChangedError, check_split, group_summary

    split_file = _split_path(ctx, table)
    if split_file.exists():
        chk = check_split(split_file, table)
        if not chk.matches:
            raise SplitChangedError(chk.message() + " Make a new split (the old file is kept beside it): "
                                    "`tlstudio train ... --new-split`, or \"Make a new split\" on the Data page.")
        ctx.log(f"Using the stored split {split_file}.")
        if chk.leaking_groups:
            ctx.log(f"The stored split puts {len(chk.leaking_groups)} patient(s)/group(s) in more than one split "
                    f"(e.g. {chk.leaking_groups[0]}): test figures are optimistic. Make a new split to split by group.",
                    "warning")
        return chk.assignments, split_file
    sp = ctx.project.data.split
    assignments = make_split(table, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed)
    gs = group_summary(table)
    ctx.log(f"New split stored in {split_file}" + (f", by group: {gs['groups']:,} patients/groups, none in two splits"
                                                    if gs else "") + ".")
    try:
        save_split(split_file, table, assignments)
    except OSError as e:
        ctx.log(f"Could not store the split in {split_file}: {e}", "warning")
        split_file = None
    return assignments, split_file


def prepare_image_data(ctx) -> ImageData:
    """Read the project's images, check them, split them (stored, so re-runs use the same
    split) and decode them once into the image cache."""
    from ..data import build_image_cache, check_trainable, read_data, split_counts
    from ..data.store import CacheRequest

    proj = ctx.project
    if not proj.data.source:
        from ..errors import DataError

        raise DataError("The project has no data yet: choose a folder, CSV, NPZ or DICOM files on the Data page "
                        "(or give --data on the command line).")
    readers = [r for r in (ctx.plugins.readers() if ctx.plugins else [])  # not the detection/captioning ones
               if getattr(r, "task", "image-classification") == "image-classification"] or None
    source = proj.resolve(proj.data.source)
    arch = ctx.library.architectures.get(proj.model.architecture)
    if arch is None:
        raise ModelError(f"Unknown model '{proj.model.architecture}'. See `tlstudio models` for the catalog.")
    pre = arch.preprocessing
    size = pre.image_size if pre.fixed_size else proj.model.image_size
    ctx.log(f"Reading {source} ...")
    # each file decoded once: validated and written into the image cache in the same pass
    table = read_data(source, proj.data.format, proj.data.options, readers,
                      progress=lambda d, t: ctx.progress("Reading and caching images", d, t),
                      should_stop=lambda: ctx.control.stopped, cache=CacheRequest(ctx.cache_dir, size))
    rep = table.report
    for w in rep.warnings:
        ctx.log(w, "warning")
    if rep.skipped:
        first = "; ".join(f"{Path(s.ref).name}: {s.reason}" for s in rep.skipped[:3])
        ctx.log(f"{len(rep.skipped)} item(s) skipped ({first}{' ...' if len(rep.skipped) > 3 else ''}); "
                "`tlstudio validate-data` lists them all.", "warning")
    check_trainable(table)

    assignments, split_file = stored_split(ctx, table)
    rep.split_counts = split_counts(table, assignments)

    if pre.fixed_size and proj.model.image_size != size:
        ctx.log(f"{arch.title} works at {size} px only: images are resized to {size} px.", "warning")
    images, valid = build_image_cache(table, size, ctx.cache_dir,
                                      progress=lambda d, t: ctx.progress("Decoding images", d, t),
                                      should_stop=lambda: ctx.control.stopped)
    data = ImageData(table, assignments, images, valid, size, pre.mean, pre.std, proj.augmentation, split_file)
    c = data.counts()
    ctx.log("Data: " + ", ".join(f"{s} {sum(c[s].values())}" for s in SPLITS) + f" images, classes: {', '.join(data.class_names)}")
    from ..data.split import group_summary

    data.groups = group_summary(table, assignments)
    if proj.decision.leak_check and getattr(ctx, "train", None) is not None:  # a run, not a prediction
        data.leakage = run_leak_check(ctx, table, assignments, images, valid)
    return data


LEAK_FEATURES_UP_TO = 20_000


def run_leak_check(ctx, table, assignments, images, valid) -> dict:
    """The leakage check of the run's split (logged; kept in data.json for the report and card)."""
    from ..analysis import leakage

    ctx.progress("Checking for leaks between the splits", 0, 1)
    big = len(table) > LEAK_FEATURES_UP_TO  # the hash alone on large data sets: the features would cost minutes
    # the same data, split and images as an earlier run: its check, not a new one (minutes on 100,000 images)
    key = stable_hash("leakage-v2", table.fingerprint(), list(assignments), not big, getattr(images, "shape", None),
                      leakage.MAX_HAMMING, leakage.MIN_SSIM, leakage.MIN_COSINE)
    cached = Path(ctx.cache_dir) / "leakage" / f"{key}.json"
    try:
        rep = leakage.LeakReport.from_dict(json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        rep = leakage.check_table_leaks(table, assignments, images, valid, library=ctx.library,
                                        device=str(ctx.device), features=not big)
        if rep.features == (not big):  # the check meant (frozen features missing here: checked again next time)
            atomic_write_json(cached, rep.to_dict(max_pairs=None))
    if big:
        rep.note = (f"{len(table):,} images: perceptual hash only at training time (`tlstudio validate-data "
                    "--leakage-features` adds the frozen features)")
    ctx.log(rep.summary(), "warning" if rep.leaks else "info")
    return rep.to_dict()


class ClassifierTask(Task):
    """What every one-class-per-item task shares (images, texts): cross-entropy on the model's
    outputs, the classifier's evaluation, and the decision fitted on validation before the
    test (calibration, operating point, prediction sets)."""

    def training_step(self, ctx, batch) -> dict:
        x, y = batch
        return {"loss": ctx.criterion(ctx.forward(x), y)}

    def evaluate(self, ctx, split: str) -> dict:
        return evaluate_classifier(ctx, split)

    def before_test(self, ctx) -> None:
        fit_run_decision(self, ctx)


class ImageClassificationTask(ClassifierTask):
    """Images in, one class each out: cross-entropy, the per-class figures a clinician reads
    (sensitivity, specificity, AUC, confusion matrix), calibrated predictions at the run's
    operating point, with prediction sets."""

    traits = IMAGE_CLASSIFICATION
    default_monitor = "val_auc"
    headline = (("accuracy", "Test accuracy"), ("balanced_accuracy", "balanced accuracy"), ("auc", "AUC"))

    def prepare_data(self, ctx):
        return prepare_image_data(ctx)

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        write_classifier_evaluation(ctx, split, metrics)

    def report(self, ctx, final: dict) -> str:
        return classification_report_md(ctx.project, final, ctx.data)

    # --- prediction on new images ------------------------------------------------------
    def load_for_inference(self, ctx, run_dir, checkpoint: dict) -> "ImageInferenceData":
        try:
            desc = json.loads((Path(run_dir) / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StudioError(f"{run_dir}: data.json is missing: the run did not get as far as preparing its data.") from None
        data = ImageInferenceData(list(checkpoint.get("class_names") or desc["class_names"]),
                                  int(desc["image_size"]), desc["mean"], desc["std"])
        load_run_decision(ctx, run_dir, data.class_names)
        return data

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted", "probabilities", "set", "top"} (or {"ref", "error"}):
        calibrated probabilities and the run's operating point (its decision.json)."""
        from ..data import decode_inputs

        results, good = decode_inputs(inputs)
        if good:
            probs = predict_images(self.inference_model(ctx), ctx.data, [a for _, a in good], ctx.device)
            for (k, _), row in zip(good, ctx.scratch["decision"].results(probs)):
                results[k].update(row)
        return results


    # --- export and exported packages ---------------------------------------------------
    def export_inputs(self, ctx, n: int) -> tuple:
        """``n`` validation images of the run (evenly spread over the split), preprocessed
        exactly as in evaluation: the run's own data, stored split and image cache."""
        data = prepare_image_data(ctx)
        split = next((s for s in ("val", "test", "train") if data.has_split(s)), None)
        if split is None:
            raise StudioError("The run's data has no usable images left to check the export with.")
        ds = data.dataset(split, train=False)
        k = min(int(n), len(ds))
        picks = np.unique(np.linspace(0, len(ds) - 1, k).round().astype(int))
        x = torch.stack([ds[int(i)][0] for i in picks])
        ctx.scratch["export_inputs_info"] = {"split": split, "n": int(len(picks)), "source": str(data.table.source),
                                           "fingerprint": data.fingerprint,
                                           "refs": [data.refs(split)[int(i)] for i in picks]}
        return (x,)

    def export_spec(self, ctx) -> dict:
        d = ctx.data
        return {
            "task": self.id, "inputs": ["image"], "outputs": ["logits"], "labels": list(d.class_names),
            "postprocess": "softmax", **package_decision(ctx),
            "preprocessing": {
                "kind": "image", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                "size": [int(d.size), int(d.size)],
                "resize": "Pillow Image.resize((size, size), BILINEAR, reducing_gap=3.0) on the whole image "
                          "(no crop, aspect ratio not kept)",
                "decode": "grayscale and palette images to RGB by repeating the channel; 16-bit scaled to 8-bit; "
                          "DICOM: modality LUT and window, MONOCHROME1 inverted",
                "scale": 1.0 / 255.0, "mean": [float(v) for v in d.mean], "std": [float(v) for v in d.std],
                "formula": "x = (pixel / 255 - mean[c]) / std[c]",
            },
        }

    def predict_package(self, package, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted", "probabilities"} with an exported model."""
        from ..data import decode_inputs

        spec, run_model = package.spec, package.run_model
        pre = spec["preprocessing"]
        names = list(spec["labels"])
        data = ImageInferenceData(names, int(pre["size"][0]), pre["mean"], pre["std"])
        dec = decision_of_package(spec)
        results, good = decode_inputs(inputs)
        for b in range(0, len(good), 32):
            chunk = good[b:b + 32]
            x = data.preprocess([a for _, a in chunk]).numpy()
            logits = torch.from_numpy(np.asarray(run_model([x])[0], dtype=np.float32))
            for (k, _), row in zip(chunk, dec.results(logits.double().softmax(1).numpy())):
                results[k].update(row)
        return results


def load_run_decision(ctx, run_dir, class_names: list[str]) -> None:
    """The run's decision (decision.json; argmax and uncalibrated for a run without one) in
    ``ctx.scratch["decision"]``, for prediction and export."""
    from ..analysis.decision import RunDecision

    ctx.scratch["decision"] = RunDecision.load(run_dir, list(class_names))


def package_decision(ctx) -> dict:
    """What an exported package carries of the run's decision: the decision itself, and that
    the model file divides its logits by the temperature (export wraps it, so that the
    parity check covers the calibrated outputs)."""
    dec = ctx.scratch.get("decision")
    if dec is None:
        return {}
    return {"decision": dec.to_dict(), "temperature_in_model": dec.temperature != 1.0}


def decision_of_package(spec: dict):
    """The decision an exported package applies to its model's outputs (argmax without one)."""
    from ..analysis.decision import RunDecision

    labels = list(spec.get("labels") or [])
    if not spec.get("decision"):
        return RunDecision.default(labels)
    dec = RunDecision.from_dict(spec["decision"], labels)
    if spec.get("temperature_in_model"):
        dec.temperature = 1.0  # the model's logits are already divided by it
    return dec


class ImageInferenceData:
    """What prediction needs to know of a run's images: classes and preprocessing."""

    def __init__(self, class_names: list[str], size: int, mean, std):
        self.class_names, self.size, self.mean, self.std = class_names, size, tuple(mean), tuple(std)

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """H x W x 3 uint8 images -> a normalised batch, exactly as in training."""
        from ..data import resize_image

        arr = np.stack([resize_image(im, self.size) for im in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)
        return (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)


@torch.no_grad()
def predict_images(model, data: ImageInferenceData, images: list[np.ndarray], device, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (N, K) of decoded images."""
    model.eval()
    out = [model(data.preprocess(images[i:i + batch_size]).to(device)).float().softmax(1).cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(data.class_names)), np.float32)


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def classification_report_md(project, final: dict, data: ImageData | None) -> str:
    t = final.get("test", {})
    lines = [
        f"# {project.name}: {final.get('technique')} on {final.get('model')}",
        "",
        f"Run `{final.get('run_id')}` on {final.get('device')}, {final.get('train_seconds', 0):.0f} s of training; "
        f"best epoch {final.get('best_epoch')} by {final.get('monitor')} = {_fmt(final.get('best_value'))}.",
        "", project.augmentation.flips_summary(), "",
    ]
    if data is not None:
        c = data.counts()
        lines += ["## Data", "", f"Source: `{data.table.source}` ({data.table.reader_id}), images {data.size} px.", "",
                  "| split | " + " | ".join(data.class_names) + " |", "|---" * (len(data.class_names) + 1) + "|"]
        lines += [f"| {s} | " + " | ".join(str(c[s][k]) for k in data.class_names) + " |" for s in SPLITS]
        lines.append("")
    if t:
        ci = t.get("accuracy_ci95") or [None, None]
        lines += ["## Test results", "",
                  f"- Accuracy: {_fmt(t.get('accuracy'))} (95% CI {_fmt(ci[0])}–{_fmt(ci[1])}), n = {t.get('n')}",
                  f"- Balanced accuracy: {_fmt(t.get('balanced_accuracy'))}",
                  f"- AUC: {_fmt(t.get('auc'))}", f"- Macro F1: {_fmt(t.get('f1_macro'))}", "",
                  "| class | sensitivity | specificity | precision | F1 | support |", "|---|---|---|---|---|---|"]
        for name, pc in t.get("per_class", {}).items():
            lines.append(f"| {name} | {_fmt(pc['sensitivity'])} | {_fmt(pc['specificity'])} | {_fmt(pc['precision'])} "
                         f"| {_fmt(pc['f1'])} | {pc['support']} |")
        cm = t.get("confusion_matrix")
        if cm:
            names = t.get("class_names", [])
            lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
                      "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            lines += [f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    from ..analysis.summary import decision_markdown

    desc = {k: getattr(data, k) for k in ("leakage", "groups") if getattr(data, k, None) is not None} if data else {}
    lines += [""] + decision_markdown(t, desc)
    lines += ["Repeat this run with:", "", f"    tlstudio train {Path(final.get('run_dir', '.')) / 'project.toml'}", ""]
    return "\n".join(lines)


@torch.no_grad()
def evaluate_classifier(ctx, split: str) -> dict:
    """Metrics of a classifier on ``split`` (the run's evaluation batches through the task's
    ``predict_step`` give logits and labels); the probabilities are kept in
    ``ctx.eval_details[split]`` for ``write_evaluation``.  Shared by every classification task.
    Once the run's decision is fitted (after training, :func:`fit_run_decision`), the
    probabilities are the calibrated ones and the calls those of its operating point."""
    ctx.model.eval()
    logits, targets = [], []
    with ctx.autocast():
        for batch in ctx.eval_batches(split):
            out, y = ctx.task.predict_step(ctx, ctx.to_device(batch))
            logits.append(out.float().cpu())
            targets.append(y.cpu())
    return classifier_metrics(ctx, split, torch.cat(logits), torch.cat(targets).long())


def classifier_metrics(ctx, split: str, lg: torch.Tensor, t: torch.Tensor) -> dict:
    """The metrics of logits ``lg`` and labels ``t`` (see :func:`evaluate_classifier`)."""
    probs = lg.softmax(1)
    dec = ctx.scratch.get("decision")
    if dec is None:
        m = classification_metrics(probs, t, ctx.class_names)
        shown = probs.numpy()
    else:
        from ..analysis.decision import decision_report, decision_scalars

        out = dec.apply(probs.double().numpy())
        shown = out["probs"]
        m = classification_metrics(torch.as_tensor(shown), t, ctx.class_names, preds=torch.as_tensor(out["predicted"]))
        rep = decision_report(dec, probs.double().numpy(), t.numpy())
        m.update(decision_scalars(rep))
        m["decision"] = rep
    m["loss"] = float(torch.nn.functional.cross_entropy(lg, t))
    ctx.eval_details[split] = (shown, t.numpy())
    ctx.scratch.setdefault("eval_logits", {})[split] = lg.numpy()
    return m


def fit_run_decision(task, ctx) -> None:
    """After training, before the test: calibration, operating point and conformal quantile
    fitted on the validation split (the project's decision settings), kept in
    ``ctx.scratch["decision"]``, written to the run's decision.json, and the validation
    predictions written as they are then called (val_predictions.csv)."""
    from ..analysis.decision import RunDecision, fit_decision

    ctx.scratch.pop("decision", None)
    has_val = getattr(ctx.data, "has_split", lambda s: True)("val")
    if not has_val:
        dec = RunDecision.default(ctx.class_names)
        dec.note = "no validation split: the probabilities are not calibrated and the most probable class is called"
    else:
        ctx.evaluate("val")
        _, y = ctx.eval_details["val"]
        try:
            dec = fit_decision(ctx.scratch["eval_logits"]["val"], y, ctx.class_names, ctx.project.decision)
        except ValueError as e:  # a positive class that is not a class: said, and the run goes on with argmax
            ctx.log(f"Decision settings: {e}; the most probable class is called.", "warning")
            dec = RunDecision.default(ctx.class_names)
    ctx.scratch["decision"] = dec
    if has_val:
        lg = torch.as_tensor(ctx.scratch["eval_logits"]["val"])
        m = classifier_metrics(ctx, "val", lg, torch.as_tensor(ctx.eval_details["val"][1]))
        task.write_evaluation(ctx, "val", m)
    if ctx.run is not None:
        dec.save(ctx.run.dir)
    ctx.log("Decision: " + dec.describe() + (f" ({dec.note})" if dec.note else ""))


def _split_items(ctx, split: str) -> list:
    table = getattr(ctx.data, "table", None)
    idx = getattr(ctx.data, "indices", {}).get(split)
    return [table.items[int(i)] for i in idx] if table is not None and idx is not None else []


MAX_FIELD_COLUMNS = 20


def item_columns(items: list) -> dict[str, list[str]]:
    """The group (patient) and metadata columns of these items, for the predictions CSV."""
    cols: dict[str, list[str]] = {}
    if any(it.meta.get("group") for it in items):
        cols["group"] = [str(it.meta.get("group") or "") for it in items]
    names: dict[str, None] = {}
    for it in items:
        names.update(dict.fromkeys(it.meta.get("fields") or {}))
    for n in list(names)[:MAX_FIELD_COLUMNS]:
        cols[f"field:{n}"] = [str((it.meta.get("fields") or {}).get(n, "")) for it in items]
    return cols


def write_classifier_evaluation(ctx, split: str, metrics: dict, extra: dict[str, list] | None = None) -> None:
    """``<split>_predictions.csv`` (ref, the ``extra`` columns, group and metadata columns,
    label, predicted, correct, the prediction set, one probability per class) and
    ``evaluation_<split>.json`` (the metrics, with the ROC curve of the positive class for
    two classes, and the subgroups of the project's "report by" column) from what
    :func:`evaluate_classifier` kept."""
    probs, targets = ctx.eval_details[split]
    names = ctx.class_names
    dec = ctx.scratch.get("decision")
    items = _split_items(ctx, split)
    extra = dict(extra or {})
    if len(items) == len(targets):
        extra.update(item_columns(items))
    preds = dec.decide(probs) if dec is not None else probs.argmax(1)
    sets = dec.sets(probs) if dec is not None else None
    rows_extra = list(zip(*extra.values())) if extra else [()] * len(targets)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["ref", *extra, "label", "predicted", "correct"] + (["set"] if sets is not None else [])
               + [f"p_{c}" for c in names])
    from ..analysis.conformal import set_labels

    for i, (ref, ex, p, y) in enumerate(zip(ctx.data.refs(split), rows_extra, probs, targets)):
        k = int(preds[i])
        s = [" | ".join(set_labels(sets[i], names, p))] if sets is not None else []
        w.writerow([ref, *ex, names[y], names[k], int(k == y)] + s + [f"{v:.6f}" for v in p])
    atomic_write_text(ctx.run.dir / f"{split}_predictions.csv", buf.getvalue())
    full = dict(metrics)
    if len(names) == 2 and len(set(targets.tolist())) == 2:
        pos = dec.positive if dec is not None and dec.positive is not None else 1
        full["roc"] = roc_curve(probs[:, pos], (targets == pos).astype(int))
        full["positive_class"] = names[pos]
    by = ctx.project.decision.report_by
    if by and split == "test" and len(items) == len(targets):
        from ..analysis.subgroups import subgroup_report

        values = [(it.meta.get("fields") or {}).get(by, it.meta.get("group") if by == "group" else None)
                  for it in items]
        if any(v not in (None, "") for v in values):
            full["subgroups"] = subgroup_report(values, targets, probs, preds,
                                                dec.positive if dec is not None and dec.binary else None, column=by)
        else:
            ctx.log(f"Report by '{by}': no test image carries that column (columns: "
                    f"{', '.join(sorted({k for it in items for k in (it.meta.get('fields') or {})})) or 'none'}).",
                    "warning")
    atomic_write_json(ctx.run.dir / f"evaluation_{split}.json", full)
