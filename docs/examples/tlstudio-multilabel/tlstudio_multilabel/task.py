"""The multi-label task: several yes/no findings per image.

Data: the images decoded once into the studio's image cache, a target vector per image
(1 where the image carries the label).  Loss: binary cross-entropy on one logit per label.
Results per label: AUC, and sensitivity and specificity at the label's own threshold, the one
that maximises Youden's J (sensitivity + specificity - 1) on the VALIDATION split, never on
test.  Predictions list the labels whose probability reaches their threshold.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from tlstudio.api import (DataError, ImageInferenceData, StudioError, Task, atomic_write_json, atomic_write_text,
                          build_image_cache, decode_inputs, make_transforms, read_data, stored_split)

from .metrics import label_metrics, youden_thresholds

SPLITS = ("train", "val", "test")


class MultiLabelData:
    """The prepared images of a run: cached, split, one target vector each."""

    def __init__(self, table, assignments, images, valid, label_names, size, mean, std, augmentation, split_file):
        self.table, self.images, self.class_names = table, images, list(label_names)
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.augmentation, self.split_file = augmentation, split_file
        self.fingerprint = table.fingerprint()
        index = {n: k for k, n in enumerate(self.class_names)}
        self.targets = np.zeros((len(table), len(self.class_names)), np.float32)
        for i, it in enumerate(table.items):
            for lab in it.meta.get("labels", []):
                self.targets[i, index[lab]] = 1.0
        a = np.asarray(assignments)
        self.indices = {s: np.flatnonzero(np.asarray(valid) & (a == s)) for s in SPLITS}

    def has_split(self, split: str) -> bool:
        return len(self.indices[split]) > 0

    def refs(self, split: str) -> list[str]:
        return [self.table.items[i].ref for i in self.indices[split]]

    def dataset(self, split: str, train: bool = False):
        tf = make_transforms(self.augmentation, self.mean, self.std, self.size, train)
        return _Dataset(self.images, self.targets, self.indices[split], tf)

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {n: int(self.targets[self.indices[s], k].sum()) for k, n in enumerate(self.class_names)}
                for s in SPLITS}

    def describe(self) -> dict:
        return {"reader": self.table.reader_id, "source": str(self.table.source), "fingerprint": self.fingerprint,
                "class_names": self.class_names, "image_size": self.size, "mean": self.mean, "std": self.std,
                "split_sizes": {s: int(len(self.indices[s])) for s in SPLITS}, "label_counts": self.counts(),
                "report": self.table.report.to_dict()}


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, images, targets, indices, transform):
        self.images, self.targets, self.indices, self.transform = images, targets, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        x = torch.from_numpy(np.array(self.images[i], dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return self.transform(x), torch.from_numpy(self.targets[i])


class MultiLabelInferenceData(ImageInferenceData):
    """What prediction needs: the labels, preprocessing and each label's threshold."""

    def __init__(self, class_names, size, mean, std, thresholds):
        super().__init__(class_names, size, mean, std)
        self.thresholds = [float(t) for t in thresholds]


class MultiLabelTask(Task):
    id = "multi-label-classification"
    title = "Multi-label classification"
    description = ("Images that may each show several findings at once: a CSV of image paths with, for each, the "
                   "list of its labels separated by ';' (an empty cell: none).")
    default_monitor = "val_auc"
    headline = (("auc", "Test mean AUC over the labels"),)

    def __init__(self):
        self.thresholds: list[float] | None = None

    # --- data -----------------------------------------------------------------------------------
    def prepare_data(self, ctx) -> MultiLabelData:
        proj = ctx.project
        if not proj.data.source:
            raise DataError("The project has no data yet: choose a CSV of images with their labels.")
        source = proj.resolve(proj.data.source)
        ctx.log(f"Reading {source} ...")
        table = read_data(source, proj.data.format, proj.data.options, self.readers(ctx.plugins), task=self.id,
                          progress=lambda d, t: ctx.progress("Checking images", d, t),
                          should_stop=lambda: ctx.control.stopped)
        names = sorted({lab for it in table.items for lab in it.meta.get("labels", [])})
        if not names:
            raise DataError(f"{source}: no image carries a label (the labels column is empty everywhere)")
        assignments, split_file = stored_split(ctx, table)
        arch = ctx.library.architectures[proj.model.architecture]
        pre = arch.preprocessing
        size = pre.image_size if pre.fixed_size else proj.model.image_size
        images, valid = build_image_cache(table, size, ctx.cache_dir,
                                          progress=lambda d, t: ctx.progress("Decoding images", d, t),
                                          should_stop=lambda: ctx.control.stopped)
        data = MultiLabelData(table, assignments, images, valid, names, size, pre.mean, pre.std,
                              proj.augmentation, split_file)
        ctx.log("Labels (train / val / test images carrying each): " + "; ".join(
            f"{n} {data.counts()['train'][n]}/{data.counts()['val'][n]}/{data.counts()['test'][n]}" for n in names))
        return data

    # --- training -------------------------------------------------------------------------------
    def training_step(self, ctx, batch) -> dict:
        x, y = batch
        return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(ctx.forward(x).float(), y.float())}

    # --- results --------------------------------------------------------------------------------
    @torch.no_grad()
    def _probabilities(self, ctx, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        ctx.model.eval()
        logits, targets = [], []
        with ctx.autocast():
            for batch in ctx.eval_batches(split):
                out, y = self.predict_step(ctx, ctx.to_device(batch))
                logits.append(out.float().cpu())
                targets.append(y.float().cpu())
        lg, t = torch.cat(logits), torch.cat(targets)
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(lg, t))
        return lg.sigmoid().numpy(), t.numpy(), loss

    def evaluate(self, ctx, split: str) -> dict:
        probs, targets, loss = self._probabilities(ctx, split)
        if split == "val" or not ctx.data.has_split("val"):
            thresholds = youden_thresholds(probs, targets)
        else:  # the test split is judged at thresholds chosen on validation, with the same model
            vp, vt, _ = self._probabilities(ctx, "val")
            thresholds = youden_thresholds(vp, vt)
        self.thresholds = thresholds
        m = label_metrics(probs, targets, ctx.data.class_names, thresholds)
        m["loss"] = loss
        ctx.eval_details[split] = (probs, targets)
        return m

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        probs, targets = ctx.eval_details[split]
        names, thr = ctx.data.class_names, self.thresholds
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["ref", "labels", "predicted"] + [f"p_{n}" for n in names])
        for ref, p, t in zip(ctx.data.refs(split), probs, targets):
            w.writerow([ref, ";".join(n for n, v in zip(names, t) if v), ";".join(_above(names, p, thr))]
                       + [f"{v:.6f}" for v in p])
        atomic_write_text(ctx.run.dir / f"{split}_predictions.csv", buf.getvalue())
        atomic_write_json(ctx.run.dir / f"evaluation_{split}.json", metrics)
        atomic_write_json(ctx.run.dir / "thresholds.json", dict(zip(names, thr)))

    def report(self, ctx, final: dict) -> str:
        t = final.get("test") or {}
        lines = [f"# {ctx.project.name}: {final.get('technique')} on {final.get('model')}", "",
                 f"Multi-label classification, {len(ctx.data.class_names)} labels; thresholds chosen on the "
                 "validation split (Youden's J).", ""]
        if t:
            lines += [f"Mean AUC over the labels: {_fmt(t.get('auc'))} (n = {t.get('n')} test images).", "",
                      "| label | AUC | threshold | sensitivity | specificity | positives |", "|---|---|---|---|---|---|"]
            for name, pl in t.get("per_label", {}).items():
                lines.append(f"| {name} | {_fmt(pl['auc'])} | {_fmt(pl['threshold'])} | {_fmt(pl['sensitivity'])} "
                             f"| {_fmt(pl['specificity'])} | {pl['positives']} |")
        return "\n".join(lines)

    def result_view(self, run_dir, parent=None):
        from .view import MultiLabelResultView

        return MultiLabelResultView(Path(run_dir), parent)

    # --- prediction and export ------------------------------------------------------------------
    def load_for_inference(self, ctx, run_dir, checkpoint: dict) -> MultiLabelInferenceData:
        run_dir = Path(run_dir)
        try:
            desc = json.loads((run_dir / "data.json").read_text(encoding="utf-8"))
            thr = json.loads((run_dir / "thresholds.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise StudioError(f"{run_dir}: data.json or thresholds.json is missing: the run did not finish.") from None
        names = list(desc["class_names"])
        return MultiLabelInferenceData(names, int(desc["image_size"]), desc["mean"], desc["std"],
                                       [thr.get(n, 0.5) for n in names])

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted": the labels found, "probabilities": per label}."""
        results, good = decode_inputs(inputs)
        model = self.inference_model(ctx).eval()
        d = ctx.data
        for b in range(0, len(good), 32):
            chunk = good[b:b + 32]
            x = d.preprocess([a for _, a in chunk]).to(ctx.device)
            with torch.no_grad():
                probs = model(x).float().sigmoid().cpu().numpy()
            for (k, _), p in zip(chunk, probs):
                results[k].update(_prediction(d.class_names, p, d.thresholds))
        return results

    def export_inputs(self, ctx, n: int) -> tuple:
        data = self.prepare_data(ctx)
        split = next((s for s in ("val", "test", "train") if data.has_split(s)), None)
        ds = data.dataset(split, train=False)
        picks = np.unique(np.linspace(0, len(ds) - 1, min(int(n), len(ds))).round().astype(int))
        ctx.scratch["export_inputs_info"] = {"split": split, "n": int(len(picks)), "source": str(data.table.source),
                                             "fingerprint": data.fingerprint}
        return (torch.stack([ds[int(i)][0] for i in picks]),)

    def export_spec(self, ctx) -> dict:
        d = ctx.data
        return {"task": self.id, "inputs": ["image"], "outputs": ["logits"], "labels": list(d.class_names),
                "postprocess": "sigmoid", "thresholds": list(d.thresholds),
                "preprocessing": {"kind": "image", "layout": "NCHW", "size": [int(d.size), int(d.size)],
                                  "scale": 1.0 / 255.0, "mean": list(d.mean), "std": list(d.std),
                                  "formula": "x = (pixel / 255 - mean[c]) / std[c]"}}

    def predict_package(self, package, inputs: list) -> list[dict]:
        spec = package.spec
        pre = spec["preprocessing"]
        names = list(spec["labels"])
        d = ImageInferenceData(names, int(pre["size"][0]), pre["mean"], pre["std"])
        results, good = decode_inputs(inputs)
        for b in range(0, len(good), 32):
            chunk = good[b:b + 32]
            logits = np.asarray(package.run_model([d.preprocess([a for _, a in chunk]).numpy()])[0], np.float32)
            for (k, _), p in zip(chunk, 1 / (1 + np.exp(-logits))):
                results[k].update(_prediction(names, p, spec["thresholds"]))
        return results

    # --- what a run keeps -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"thresholds": json.dumps(self.thresholds)} if self.thresholds else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("thresholds"):
            self.thresholds = json.loads(state["thresholds"])


def _above(names, probs, thresholds) -> list[str]:
    return [n for n, p, t in zip(names, probs, thresholds) if p >= t]


def _prediction(names, probs, thresholds) -> dict:
    found = _above(names, probs, thresholds)
    return {"predicted": ", ".join(found) or "none of the labels", "labels": found,
            "probabilities": {n: float(p) for n, p in zip(names, probs)}}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"
