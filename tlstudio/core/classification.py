"""Image classification: the data of a run, and the base class of its techniques."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ModelError, StudioError
from .io import atomic_write_json, atomic_write_text, stable_hash
from .metrics import classification_metrics, roc_curve
from .technique import Technique

SPLITS = ("train", "val", "test")


class ImageData:
    """The prepared images of one run: decoded once, cached, split, ready for loaders."""

    #: the target domain (a :class:`tlstudio.core.target.TargetData`), when a technique
    #: prepared one with :func:`tlstudio.core.target.prepare_target`
    target = None

    def __init__(self, table, assignments: list[str], images: np.ndarray, valid: np.ndarray, size: int,
                 mean, std, augmentation, split_file: Path | None):
        self.table = table
        self.class_names = list(table.class_names)
        self.images = images
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augmentation = augmentation
        self.split_file = split_file
        self.fingerprint = table.fingerprint()
        self._labels = table.labels()
        usable = valid & (self._labels >= 0)
        a = np.asarray(assignments)
        self.indices = {s: np.flatnonzero(usable & (a == s)) for s in SPLITS}
        self._transforms: dict[bool, Any] = {}

    def has_split(self, split: str) -> bool:
        return len(self.indices.get(split, ())) > 0

    def labels(self, split: str) -> np.ndarray:
        return self._labels[self.indices[split]]

    def refs(self, split: str) -> list[str]:
        return [self.table.items[i].ref for i in self.indices[split]]

    def transform(self, train: bool):
        if train not in self._transforms:
            from .data import make_transforms

            self._transforms[train] = make_transforms(self.augmentation, self.mean, self.std, self.size, train,
                                                      grayscale=self.grayscale)
        return self._transforms[train]

    @property
    def grayscale(self) -> bool:
        """Every image has equal channels (X-ray, ultrasound ...): no colour augmentation."""
        if not hasattr(self, "_grayscale"):
            from .data.transforms import is_grayscale

            idx = self.indices["train"]  # a sample: reading the whole training set would fill memory
            idx = idx[np.linspace(0, len(idx) - 1, min(64, len(idx))).astype(int)] if len(idx) else idx
            self._grayscale = is_grayscale(self.images[idx]) if len(idx) else False
        return self._grayscale

    def dataset(self, split: str, train: bool = False):
        from .data import ImageDataset

        return ImageDataset(self.images, self._labels, self.indices[split], self.transform(train))

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {c: int((self.labels(s) == k).sum()) for k, c in enumerate(self.class_names)} for s in SPLITS}

    def describe(self) -> dict:
        return {"reader": self.table.reader_id, "source": str(self.table.source), "fingerprint": self.fingerprint,
                "class_names": self.class_names, "image_size": self.size, "mean": self.mean, "std": self.std,
                "split_counts": self.counts(), "report": self.table.report.to_dict(),
                **({"target": self.target.describe()} if self.target is not None else {})}


def _split_path(ctx, table) -> Path:
    from .settings import cache_dir

    proj = ctx.project
    sp = proj.data.split
    if sp.file:
        return proj.resolve(sp.file)
    key = stable_hash(table.fingerprint(), sp.mode, sp.val_fraction, sp.test_fraction, sp.seed)
    base = (proj.base_dir / "splits") if proj.path else (cache_dir() / "splits")
    return base / f"split-{key}.json"


def stored_split(ctx, table) -> tuple[list[str], Path | None]:
    """'train'/'val'/'test' per item of ``table``: the stored split when there is one, else a
    new seeded one (the source's own where it has one), stored so that re-runs use it.
    Shared by every task."""
    from .data import load_split, make_split, save_split

    split_file = _split_path(ctx, table)
    assignments = load_split(split_file, table) if split_file.exists() else None
    if assignments is not None:
        ctx.log(f"Using the stored split {split_file}.")
        return assignments, split_file
    sp = ctx.project.data.split
    assignments = make_split(table, sp.mode, sp.val_fraction, sp.test_fraction, sp.seed)
    try:
        save_split(split_file, table, assignments)
    except OSError as e:
        ctx.log(f"Could not store the split in {split_file}: {e}", "warning")
        split_file = None
    return assignments, split_file


def prepare_image_data(ctx) -> ImageData:
    """Read the project's images, check them, split them (stored, so re-runs use the same
    split) and decode them once into the image cache."""
    from .data import build_image_cache, check_trainable, read_data, split_counts
    from .data.store import CacheRequest

    proj = ctx.project
    if not proj.data.source:
        from .errors import DataError

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
    return data


class ImageClassificationTechnique(Technique):
    """Base class of image-classification techniques: data, loss, evaluation, results.

    Subclasses implement ``build`` (and usually ``param_groups``); the defaults train
    ``ctx.model`` on (images, labels) batches with cross-entropy.
    """

    task = "image-classification"
    default_monitor = "val_auc"

    def prepare_data(self, ctx) -> None:
        ctx.data = prepare_image_data(ctx)

    def training_step(self, ctx, batch) -> dict:
        x, y = batch
        return {"loss": ctx.criterion(ctx.model(x), y)}

    def predict_step(self, ctx, batch) -> tuple:
        x, y = batch
        return ctx.model(x), y

    def evaluate(self, ctx, split: str) -> dict:
        return evaluate_classifier(self, ctx, split)

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        write_classifier_evaluation(ctx, split, metrics)

    def write_report(self, ctx, final: dict) -> None:
        atomic_write_text(ctx.run.dir / "report.md", classification_report_md(ctx.project, final, ctx.data))

    # --- prediction on new images ------------------------------------------------------
    def load_for_inference(self, ctx, run_dir, checkpoint: dict) -> None:
        try:
            desc = json.loads((Path(run_dir) / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StudioError(f"{run_dir}: data.json is missing: the run did not get as far as preparing its data.") from None
        ctx.data = ImageInferenceData(list(checkpoint.get("class_names") or desc["class_names"]),
                                      int(desc["image_size"]), desc["mean"], desc["std"])

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted", "probabilities"} (or {"ref", "error"})."""
        from .data import decode_inputs

        results, good = decode_inputs(inputs)
        if good:
            probs = predict_images(self.inference_model(ctx), ctx.data, [a for _, a in good], ctx.device)
            names = ctx.data.class_names
            for (k, _), pr in zip(good, probs):
                results[k]["predicted"] = names[int(pr.argmax())]
                results[k]["probabilities"] = {c: float(v) for c, v in zip(names, pr)}
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
        ctx.state["export_inputs_info"] = {"split": split, "n": int(len(picks)), "source": str(data.table.source),
                                           "fingerprint": data.fingerprint,
                                           "refs": [data.refs(split)[int(i)] for i in picks]}
        return (x,)

    def export_spec(self, ctx) -> dict:
        d = ctx.data
        return {
            "task": self.task, "inputs": ["image"], "outputs": ["logits"], "labels": list(d.class_names),
            "postprocess": "softmax",
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

    def predict_package(self, spec: dict, run_model, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted", "probabilities"} with an exported model."""
        from .data import decode_inputs

        pre = spec["preprocessing"]
        names = list(spec["labels"])
        data = ImageInferenceData(names, int(pre["size"][0]), pre["mean"], pre["std"])
        results, good = decode_inputs(inputs)
        for b in range(0, len(good), 32):
            chunk = good[b:b + 32]
            x = data.preprocess([a for _, a in chunk]).numpy()
            logits = torch.from_numpy(np.asarray(run_model([x])[0], dtype=np.float32))
            for (k, _), pr in zip(chunk, logits.softmax(1).numpy()):
                results[k]["predicted"] = names[int(pr.argmax())]
                results[k]["probabilities"] = {c: float(v) for c, v in zip(names, pr)}
        return results


class ImageInferenceData:
    """What prediction needs to know of a run's images: classes and preprocessing."""

    def __init__(self, class_names: list[str], size: int, mean, std):
        self.class_names, self.size, self.mean, self.std = class_names, size, tuple(mean), tuple(std)

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """H x W x 3 uint8 images -> a normalised batch, exactly as in training."""
        from .data import resize_image

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
        "",
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
    lines += ["", "Repeat this run with:", "", f"    tlstudio train {Path(final.get('run_dir', '.')) / 'project.toml'}", ""]
    return "\n".join(lines)


@torch.no_grad()
def evaluate_classifier(technique, ctx, split: str) -> dict:
    """Metrics of a classifier on ``split`` (the technique's ``eval_batches`` and
    ``predict_step`` give logits and labels); the probabilities are kept in
    ``ctx.eval_details[split]`` for ``write_evaluation``.  Shared by every classification task."""
    ctx.model.eval()
    logits, targets = [], []
    with ctx.autocast():
        for batch in technique.eval_batches(ctx, split):
            out, y = technique.predict_step(ctx, ctx.to_device(batch))
            logits.append(out.float().cpu())
            targets.append(y.cpu())
    lg = torch.cat(logits)
    t = torch.cat(targets).long()
    probs = lg.softmax(1)
    m = classification_metrics(probs, t, ctx.class_names)
    m["loss"] = float(torch.nn.functional.cross_entropy(lg, t))
    ctx.eval_details[split] = (probs.numpy(), t.numpy())
    return m


def write_classifier_evaluation(ctx, split: str, metrics: dict, extra: dict[str, list] | None = None) -> None:
    """``<split>_predictions.csv`` (ref, the ``extra`` columns, label, predicted, correct, one
    probability per class) and ``evaluation_<split>.json`` (the metrics, with the ROC curve
    for two classes) from what :func:`evaluate_classifier` kept."""
    probs, targets = ctx.eval_details[split]
    names = ctx.class_names
    extra = extra or {}
    rows_extra = list(zip(*extra.values())) if extra else [()] * len(targets)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["ref", *extra, "label", "predicted", "correct"] + [f"p_{c}" for c in names])
    for ref, ex, p, y in zip(ctx.data.refs(split), rows_extra, probs, targets):
        k = int(p.argmax())
        w.writerow([ref, *ex, names[y], names[k], int(k == y)] + [f"{v:.6f}" for v in p])
    atomic_write_text(ctx.run.dir / f"{split}_predictions.csv", buf.getvalue())
    full = dict(metrics)
    if len(names) == 2 and len(set(targets.tolist())) == 2:
        full["roc"] = roc_curve(probs[:, 1], targets)
    atomic_write_json(ctx.run.dir / f"evaluation_{split}.json", full)
