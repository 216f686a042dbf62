"""Object detection: the data of a run, box-aware augmentation, Faster R-CNN building
blocks, mAP, and the base class of detection techniques.

Building blocks a detection technique composes (see ``plugins/detection.py``):

- :func:`find_coco_detector` / :func:`coco_faster_rcnn`: a COCO-trained torchvision
  Faster R-CNN found offline (models folder or TORCH_HOME), its box predictor replaced for
  the new classes (the torchvision fine-tuning recipe).
- :func:`imagenet_faster_rcnn`: Faster R-CNN on a ready ImageNet backbone of the model
  library (MobileNetV2 from its weight package, ResNet-50 when present, ...), with a
  feature pyramid and anchors suited to the data (:func:`auto_anchor_sizes`).
- :func:`freeze_backbone`, :func:`detection_param_groups`: freeze depth and per-group
  learning rates, as in fine-tuning.
- :func:`detection_metrics`: mAP@[.5:.95], mAP@0.5 and per-class AP (torchmetrics).

Boxes are ``x1, y1, x2, y2`` pixels.  Images are resized to ``size`` x ``size`` once (the
image cache); predictions are mapped back to the original pixels for results and
``tlstudio predict``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .annotated import AnnotatedData, backbone_preprocessing, decoded_images, read_annotated, split_annotated
from ..errors import ModelError, StudioError
from ..io import atomic_write_json, atomic_write_text
from ..models.classifier import LayerGroup
from .base import Task
from .traits import DETECTION

SPLITS = ("train", "val", "test")


# --- data --------------------------------------------------------------------------------------------------
class DetectionData(AnnotatedData):
    """Images (``size`` x ``size``, cached) with their boxes scaled to that size and class
    indices (0-based; the detector's label is the index + 1, 0 being background)."""

    task = "detection"

    def __init__(self, table, assignments, images, valid, size, mean, std, augmentation, split_file):
        super().__init__(table, assignments, images, valid, size, mean, std, augmentation, split_file)
        index = {c: k for k, c in enumerate(self.class_names)}
        self.boxes: list[np.ndarray] = []
        self.box_labels: list[np.ndarray] = []  # class index per box
        for it in table.items:
            w, h = it.meta["width"], it.meta["height"]
            b = np.asarray(it.meta.get("boxes", []), np.float32).reshape(-1, 4)
            self.boxes.append(b * np.array([size / w, size / h, size / w, size / h], np.float32))
            self.box_labels.append(np.array([index[lab] for lab in it.meta.get("labels", [])], np.int64))
        self._transforms: dict[bool, Any] = {}

    def box_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for s in SPLITS:
            n = np.bincount(np.concatenate([self.box_labels[i] for i in self.indices[s]] or [np.zeros(0, np.int64)]),
                            minlength=len(self.class_names))
            out[s] = {c: int(n[k]) for k, c in enumerate(self.class_names)}
        return out

    def train_box_sizes(self) -> np.ndarray:
        """sqrt(area) of every training box, in model pixels (for the anchors)."""
        b = np.concatenate([self.boxes[i] for i in self.indices["train"]] or [np.zeros((0, 4), np.float32)])
        return np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))

    def transform(self, train: bool):
        if train not in self._transforms:
            self._transforms[train] = detection_transforms(self.augmentation, train)
        return self._transforms[train]

    def dataset(self, split: str, train: bool = False):
        return DetectionDataset(self.images, self.boxes, self.box_labels, self.indices[split], self.transform(train))

    @staticmethod
    def collate(batch):
        """(images stacked (B, 3, S, S) floats in 0..1, [{"boxes", "labels"}, ...])."""
        images = torch.stack([b[0] for b in batch])
        targets = [{"boxes": b[1]["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                    "labels": b[1]["labels"].long()} for b in batch]
        return images, targets

    def describe(self) -> dict:
        return {**super().describe(), "box_counts": self.box_counts()}


class DetectionDataset(torch.utils.data.Dataset):
    """(image float 3 x S x S in 0..1, {"boxes": BoundingBoxes, "labels": class index + 1})."""

    def __init__(self, images, boxes, labels, indices, transform=None):
        self.images, self.boxes, self.labels = images, boxes, labels
        self.indices, self.transform = np.asarray(indices, np.int64), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        from torchvision import tv_tensors

        i = int(self.indices[k])
        img = tv_tensors.Image(torch.from_numpy(np.array(self.images[i], dtype=np.uint8)).permute(2, 0, 1))
        size = tuple(img.shape[-2:])
        target = {"boxes": tv_tensors.BoundingBoxes(torch.from_numpy(self.boxes[i]), format="XYXY", canvas_size=size),
                  "labels": torch.from_numpy(self.labels[i] + 1)}
        if self.transform is not None:
            img, target = self.transform(img, target)
        return img, target


def detection_transforms(aug, train: bool):
    """Box-aware augmentation (torchvision.transforms.v2 moves the boxes with the pixels).

    ``aug`` is the project's AugmentationConfig.  Presets (training only): light: small
    shifts and zooms (up to ``scale_min``); standard: also rotation and colour jitter;
    medical: small rotations and shifts, zooming in only, brightness/contrast only.  Horizontal
    flips only where mirror images show the same thing (``mirror_safe``), vertical ones as
    ticked.  Boxes pushed mostly out of the image are dropped, the rest clipped.
    Output: float images in 0..1 (the detector normalises them itself)."""
    from torchvision.transforms import v2

    ops: list = []
    if train and aug.preset != "none":
        zoom = 1.0 / aug.scale_min
        if aug.preset == "light":
            ops.append(v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(aug.scale_min, zoom)))
        elif aug.preset == "standard":
            ops.append(v2.RandomAffine(degrees=aug.rotation, translate=(0.1, 0.1), scale=(aug.scale_min, zoom)))
        elif aug.preset == "medical":
            ops.append(v2.RandomAffine(degrees=aug.rotation, translate=(0.05, 0.05), scale=(1.0, math.sqrt(zoom))))
        else:
            raise ValueError(f"unknown augmentation preset '{aug.preset}' (known: none, light, standard, medical)")
        if aug.flips_in_training:  # only where mirror images show the same thing
            ops.append(v2.RandomHorizontalFlip())
        if aug.vertical_flip:
            ops.append(v2.RandomVerticalFlip())
        if aug.color_jitter > 0 and aug.preset in ("standard", "medical"):
            j = aug.color_jitter
            ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if aug.preset == "standard" else 0))
        ops += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=2.0)]
    ops.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(ops)


def prepare_detection_data(ctx, architecture: str | None = None) -> DetectionData:
    """Read, check and split the project's boxes; decode the images once into the cache."""
    table = read_annotated(ctx, "detection")
    assignments, split_file = split_annotated(ctx, table)
    size, mean, std = backbone_preprocessing(ctx, architecture)
    images, valid = decoded_images(ctx, table, size)
    data = DetectionData(table, assignments, images, valid, size, mean, std, ctx.project.augmentation, split_file)
    table.report.split_counts = {s: {"images": n} for s, n in data.split_sizes().items()}
    c = data.box_counts()
    ctx.log("Data: " + ", ".join(f"{s} {len(data.indices[s])} images / {sum(c[s].values())} boxes" for s in SPLITS)
            + f"; classes: {', '.join(data.class_names)}")
    return data


class DetectionInferenceData:
    """What prediction needs to know of a run's images: classes and image size."""

    task = "detection"

    def __init__(self, class_names: list[str], size: int, mean, std):
        self.class_names, self.size, self.mean, self.std = list(class_names), int(size), tuple(mean), tuple(std)


# --- Faster R-CNN building blocks -----------------------------------------------------------------------------
#: COCO-trained torchvision detectors: name -> (builder in torchvision.models.detection, weights enum)
COCO_DETECTORS = {
    "fasterrcnn_resnet50_fpn": ("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
    "fasterrcnn_resnet50_fpn_v2": ("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights"),
    "fasterrcnn_mobilenet_v3_large_fpn": ("fasterrcnn_mobilenet_v3_large_fpn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("fasterrcnn_mobilenet_v3_large_320_fpn",
                                              "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"),
}


def coco_weight_names(name: str) -> list[str]:
    """File names a COCO detector's weights may have: torchvision's own (its hash checked),
    or ``<name>.safetensors`` / ``.pth`` / ``.pt`` in the models folder."""
    import torchvision.models.detection as D

    enum = getattr(D, COCO_DETECTORS[name][1])
    return [w.url.rsplit("/", 1)[-1] for w in enum] + [f"{name}{ext}" for ext in (".safetensors", ".pth", ".pt")]


def detector_folders(library) -> list[Path]:
    """Where COCO detector weights are looked for: the models folder, then TORCH_HOME's hub cache."""
    import torch.hub

    return [Path(library.models_folder()), Path(torch.hub.get_dir()) / "checkpoints"]


def find_coco_detector(library, which: str = "any") -> tuple[str, Path] | None:
    """(detector name, weights file) of the first COCO-trained Faster R-CNN found offline."""
    names = list(COCO_DETECTORS) if which in ("any", "auto", "") else [which]
    for name in names:
        if name not in COCO_DETECTORS:
            raise ModelError(f"Unknown COCO detector '{name}' (known: {', '.join(COCO_DETECTORS)})")
        for folder in detector_folders(library):
            for f in coco_weight_names(name):
                if (folder / f).is_file():
                    return name, folder / f
    return None


def how_to_add_coco(library) -> str:
    folders = " or ".join(str(f) for f in detector_folders(library))
    return (f"copy torchvision's fasterrcnn_resnet50_fpn_coco-258fb6c6.pth (or another COCO Faster R-CNN file: "
            f"{', '.join(COCO_DETECTORS)}) into {folders}")


def _detector_kwargs(size: int, mean, std, rois_per_image: int, score_thresh: float, nms_thresh: float,
                     detections: int) -> dict:
    return dict(min_size=size, max_size=size, image_mean=list(mean), image_std=list(std),
                box_batch_size_per_image=rois_per_image, box_score_thresh=score_thresh, box_nms_thresh=nms_thresh,
                box_detections_per_img=detections, rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
                rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=600)


def _body_groups(body: nn.Module) -> list[LayerGroup]:
    """Layer groups of a torchvision detector's backbone body (input -> output)."""
    kids = dict(body.named_children())
    if "layer1" in kids:  # ResNet
        return [LayerGroup("stem", [kids["conv1"], kids["bn1"]]),
                *(LayerGroup(f"layer{i}", [kids[f"layer{i}"]]) for i in range(1, 5) if f"layer{i}" in kids)]
    mods = [m for m in kids.values() if next(m.parameters(), None) is not None]
    bounds = np.linspace(0, len(mods), min(5, len(mods)) + 1).round().astype(int)
    return [LayerGroup(f"stage{k}", mods[a:b]) for k, (a, b) in enumerate(zip(bounds, bounds[1:])) if b > a]


def _mark(model: nn.Module, groups: list[LayerGroup], new: set[str], info: dict) -> nn.Module:
    """Attach layer groups (not registered: the state dict is the detector's own)."""
    object.__setattr__(model, "groups", groups)
    object.__setattr__(model, "new_groups", set(new))
    object.__setattr__(model, "info", info)
    return model


def coco_faster_rcnn(name: str, num_classes: int, weights: Path | None, size: int, *, rois_per_image: int = 128,
                     score_thresh: float = 0.05, nms_thresh: float = 0.5, detections: int = 100) -> nn.Module:
    """A COCO-trained torchvision Faster R-CNN (weights loaded safely from ``weights``, or
    random when None: a checkpoint follows) with a new box predictor for ``num_classes``
    classes plus background: the torchvision fine-tuning recipe."""
    import torchvision.models.detection as D
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    from ..models.architectures import IMAGENET_MEAN, IMAGENET_STD
    from ..models.weights import read_state_dict, state_dict_diff, verified_sha256

    builder = getattr(D, COCO_DETECTORS[name][0])
    kw = _detector_kwargs(size, IMAGENET_MEAN, IMAGENET_STD, rois_per_image, score_thresh, nms_thresh, detections)
    model = builder(weights=None, weights_backbone=None, num_classes=91, **kw)
    info = {"detector": name, "weights_path": "", "weights_sha256": ""}
    if weights is not None:
        sha = verified_sha256(weights)
        sd = read_state_dict(weights)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        diff = state_dict_diff({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, shapes)
        if diff:
            raise ModelError(f"{weights}: these weights do not fit {name}: {diff}")
        model.load_state_dict(sd, strict=False)
        info.update(weights_path=str(weights), weights_sha256=sha)
    old = model.roi_heads.box_predictor
    model.roi_heads.box_predictor = FastRCNNPredictor(old.cls_score.in_features, num_classes + 1)
    groups = [*_body_groups(model.backbone.body), LayerGroup("fpn", [model.backbone.fpn]),
              LayerGroup("rpn", [model.rpn]), LayerGroup("box_head", [model.roi_heads.box_head]),
              LayerGroup("box_predictor", [model.roi_heads.box_predictor])]
    return _mark(model, groups, {"box_predictor"}, info)


#: ImageNet backbone family -> (module holding the stages ("" = the model), the stages whose
#: outputs (strides 8, 16, 32) feed the feature pyramid)
FPN_STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "resnet": ("", ("layer2", "layer3", "layer4")),
    "mobilenet_v2": ("features", ("6", "13", "18")),
    "mobilenet_v3_large": ("features", ("6", "12", "16")),
    "mobilenet_v3_small": ("features", ("3", "8", "12")),
    "efficientnet": ("features", ("3", "5", "8")),
    "convnext": ("features", ("3", "5", "7")),
}


def auto_anchor_sizes(box_sizes: np.ndarray, levels: int = 4, image_size: int = 128) -> list[list[float]]:
    """Anchor sizes per pyramid level (two per level, finest level first) spanning the
    training boxes' sizes (sqrt of area) from their 2nd to 98th percentile, with a margin."""
    if len(box_sizes):
        lo, hi = np.percentile(box_sizes, [2, 98])
    else:
        lo, hi = image_size / 16, image_size / 2
    lo, hi = max(4.0, lo * 0.8), max(lo * 0.8 + 4.0, hi * 1.25)
    edges = np.geomspace(lo, hi, 2 * levels)
    return [[round(float(edges[2 * k]), 1), round(float(edges[2 * k + 1]), 1)] for k in range(levels)]


def _stage_channels(body: nn.Module, names: tuple[str, ...]) -> list[int]:
    out: dict[str, int] = {}
    hooks = [body.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o.shape[1]))
             for n in names]
    was = body.training
    try:
        body.eval()
        with torch.no_grad():
            body(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
        body.train(was)
    return [out[n] for n in names]


def imagenet_faster_rcnn(library, architecture: str, num_classes: int, weights: str, size: int, mean, std, *,
                         anchor_sizes: list[list[float]], fpn_channels: int = 128, box_head_size: int = 256,
                         rois_per_image: int = 128, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                         detections: int = 100) -> tuple[nn.Module, dict]:
    """Faster R-CNN on an ImageNet backbone of the model library: the backbone's stages at
    strides 8, 16 and 32 feed a feature pyramid (plus a max-pooled level), with
    ``anchor_sizes`` per level and a box head sized for small data.  ``weights``:
    "imagenet" (found offline), "none" (random: a checkpoint follows) or a file."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    arch = library.arch(architecture)
    if arch.family not in FPN_STAGES:
        ok = sorted(n for n, a in library.architectures.items() if a.family in FPN_STAGES)
        raise ModelError(f"{arch.title} cannot be a detection backbone here (supported: {', '.join(ok)}).")
    clf, info = library.build(architecture, 1, weights=weights)
    where, stages = FPN_STAGES[arch.family]
    net = clf.backbone
    body = net.get_submodule(where) if where else net
    channels = _stage_channels(body, stages)
    backbone = BackboneWithFPN(body, {n: str(k) for k, n in enumerate(stages)}, channels, fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    levels = len(stages) + 1
    if len(anchor_sizes) != levels:
        raise ModelError(f"{levels} anchor size groups are needed (one per pyramid level), got {len(anchor_sizes)}")
    anchors = AnchorGenerator(sizes=tuple(tuple(float(s) for s in a) for a in anchor_sizes),
                              aspect_ratios=((0.5, 1.0, 2.0),) * levels)
    roi_pool = MultiScaleRoIAlign(featmap_names=[str(k) for k in range(len(stages))], output_size=7, sampling_ratio=2)
    model = FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                       box_head=TwoMLPHead(fpn_channels * 49, box_head_size),
                       box_predictor=FastRCNNPredictor(box_head_size, num_classes + 1),
                       **_detector_kwargs(size, mean, std, rois_per_image, score_thresh, nms_thresh, detections))
    inside = {id(m) for m in model.modules()}
    groups = [g for g in clf.groups[:-1] if g.modules and all(id(m) in inside for m in g.modules)]
    groups += [LayerGroup("fpn", [backbone.fpn]), LayerGroup("rpn", [model.rpn]), LayerGroup("roi_heads", [model.roi_heads])]
    return _mark(model, groups, {"fpn", "rpn", "roi_heads"}, dict(info)), info


def freeze_backbone(model: nn.Module, trainable_groups: int) -> None:
    """Train the top ``trainable_groups`` layer groups of the pretrained backbone (-1: all),
    and everything above it.  Batch-norm statistics of the backbone stay frozen, as in
    torchvision's detectors: detection batches are too small to estimate them."""
    from ..techniques.blocks import set_trainable

    new = model.new_groups
    body = [g for g in model.groups if g.name not in new and g.name not in ("fpn", "rpn", "box_head")]
    n = len(body) if trainable_groups < 0 else min(trainable_groups, len(body))
    set_trainable(body[: len(body) - n], False)
    set_trainable(body[len(body) - n:], True)
    set_trainable([g for g in model.groups if g not in body], True)
    for g in body:
        for m in g.modules:
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub._tl_frozen = True


def detection_param_groups(model: nn.Module, lr: float, decay: float) -> list[dict]:
    """New parts (box predictor, or pyramid + RPN + heads on an ImageNet backbone) learn at
    ``lr``; each pretrained group below them at ``decay`` times the group above."""
    out, k = [], 0
    for g in reversed(model.groups):
        params = [p for p in g.parameters() if p.requires_grad]
        if g.name not in model.new_groups:
            k += 1
        if params:
            out.append({"params": params, "lr": lr * decay ** k, "name": g.name})
    return list(reversed(out))


# --- metrics -------------------------------------------------------------------------------------------------
def _num(x) -> float | None:
    v = float(x)
    return None if math.isnan(v) or v < 0 else v


def detection_metrics(preds: list[dict], targets: list[dict], class_names: list[str]) -> dict:
    """COCO-style mAP with torchmetrics: ``map`` (IoU .5:.95), ``map_50``, ``map_75``,
    ``mar_100`` and per class ``ap`` (.5:.95), ``ap50``, ``ar100`` and its number of boxes.
    ``preds``: [{"boxes", "scores", "labels"}], ``targets``: [{"boxes", "labels"}],
    labels 0-based class indices.  A class without ground-truth boxes gets None."""
    from torchmetrics.detection import MeanAveragePrecision

    n_boxes = sum(int(len(t["labels"])) for t in targets)
    if not targets:
        return {"n": 0}
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, extended_summary=True,
                                  backend="pycocotools")
    metric.update([{k: v.detach().float().cpu() if k != "labels" else v.detach().long().cpu() for k, v in p.items()}
                   for p in preds],
                  [{"boxes": t["boxes"].detach().float().cpu(), "labels": t["labels"].detach().long().cpu()} for t in targets])
    r = metric.compute()
    support = np.bincount(torch.cat([t["labels"].cpu() for t in targets]).numpy().astype(np.int64),
                          minlength=len(class_names)) if n_boxes else np.zeros(len(class_names), np.int64)
    classes = [int(c) for c in torch.atleast_1d(r["classes"]).tolist()]
    prec = r.get("precision")
    per_class: dict[str, dict] = {}
    for k, name in enumerate(class_names):
        entry = {"ap": None, "ap50": None, "ar100": None, "boxes": int(support[k])}
        if k in classes and support[k]:
            j = classes.index(k)
            entry["ap"] = _num(torch.atleast_1d(r["map_per_class"])[j])
            entry["ar100"] = _num(torch.atleast_1d(r["mar_100_per_class"])[j])
            if prec is not None and prec.dim() == 5:
                p = prec[0, :, j, 0, -1]
                p = p[p > -1]
                entry["ap50"] = float(p.mean()) if len(p) else None
        per_class[name] = entry
    return {"n": len(targets), "map": _num(r["map"]) or 0.0, "map_50": _num(r["map_50"]) or 0.0,
            "map_75": _num(r["map_75"]) or 0.0, "mar_100": _num(r["mar_100"]) or 0.0, "per_class": per_class,
            "class_names": list(class_names), "ground_truth_boxes": {"total": n_boxes}}


# --- the task's base class ------------------------------------------------------------------------------------
@dataclass
class Detection:
    """One detected object, in original image pixels."""

    label: str
    score: float
    box: list[float]

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "box": [round(v, 1) for v in self.box]}


def summarize_detections(dets: list[dict], threshold: float) -> str:
    shown = [d for d in dets if d["score"] >= threshold]
    if not shown:
        return f"no objects (score >= {threshold:g})"
    return "; ".join(f"{d['label']} {d['score']:.2f} [{', '.join(f'{v:.0f}' for v in d['box'])}]" for d in shown)


class DetectionTask(Task):
    """Object detection: data (boxes), loss, mAP evaluation, results, prediction.  A
    technique's ``build`` returns a torchvision-style detector: in training mode
    ``model(images, targets)`` returns a dict of losses; in eval mode ``model(images)``
    returns [{"boxes", "labels" (1-based), "scores"}].  The technique's settings may define
    ``score_threshold`` (the default score for shown predictions)."""

    traits = DETECTION
    default_monitor = "val_map_50"
    headline = (("map_50", "Test mAP@0.5"), ("map", "mAP@[.5:.95]"))
    series = {"map": "mAP@[.5:.95] (validation)"}

    def prepare_data(self, ctx):
        return prepare_detection_data(ctx)

    def training_step(self, ctx, batch) -> dict:
        images, targets = batch
        losses = ctx.model(list(images), targets)
        total = sum(losses.values())
        return {"loss": total, **{k: v.detach() for k, v in losses.items()}}

    @torch.no_grad()
    def predict_step(self, ctx, batch) -> tuple:
        images, targets = batch
        return ctx.model(list(images)), targets

    @torch.no_grad()
    def evaluate(self, ctx, split: str) -> dict:
        ctx.model.eval()
        preds, targets = [], []
        with ctx.autocast():
            for batch in ctx.eval_batches(split):
                out, tg = self.predict_step(ctx, ctx.to_device(batch))
                preds += [{"boxes": o["boxes"].float().cpu(), "scores": o["scores"].float().cpu(),
                           "labels": o["labels"].cpu() - 1} for o in out]
                targets += [{"boxes": t["boxes"].cpu(), "labels": t["labels"].cpu() - 1} for t in tg]
        m = detection_metrics(preds, targets, ctx.class_names)
        ctx.eval_details[split] = (preds, targets)
        return m

    def on_epoch_end(self, ctx, epoch: int, metrics: dict) -> dict:
        return {"map": metrics["map"]} if metrics.get("map") is not None else {}

    def score_threshold(self, ctx) -> float:
        return float(getattr(ctx.config, "score_threshold", 0.5))

    # --- results ----------------------------------------------------------------------------------
    def _to_original(self, data, i: int, boxes: torch.Tensor) -> np.ndarray:
        w, h = data.original_size(i)
        s = data.size
        return boxes.numpy().astype(np.float64) * np.array([w / s, h / s, w / s, h / s])

    def write_evaluation(self, ctx, split: str, metrics: dict) -> None:
        preds, targets = ctx.eval_details[split]
        data, names = ctx.data, ctx.class_names
        images, rows = [], []
        for i, p, t in zip(data.indices[split], preds, targets):
            w, h = data.original_size(int(i))
            truth = [{"label": names[int(c)], "box": [round(float(v), 1) for v in b]}
                     for b, c in zip(self._to_original(data, int(i), t["boxes"]), t["labels"])]
            found = [Detection(names[int(c)], float(s), [float(v) for v in b]).to_dict()
                     for b, c, s in zip(self._to_original(data, int(i), p["boxes"]), p["labels"], p["scores"])]
            ref = data.table.items[int(i)].ref
            images.append({"ref": ref, "width": w, "height": h, "truth": truth, "predicted": found})
            rows += [[ref, *d["box"], d["label"], d["score"]] for d in found]
        atomic_write_json(ctx.run.dir / f"{split}_predictions.json",
                          {"class_names": names, "score_threshold": self.score_threshold(ctx), "images": images})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["image", "x1", "y1", "x2", "y2", "label", "score"])
        w.writerows(rows)
        atomic_write_text(ctx.run.dir / f"{split}_predictions.csv", buf.getvalue())
        atomic_write_json(ctx.run.dir / f"evaluation_{split}.json", metrics)

    def report(self, ctx, final: dict) -> str:
        return detection_report_md(ctx.project, final, ctx.data)

    # --- prediction on new images --------------------------------------------------------------------
    def load_for_inference(self, ctx, run_dir, checkpoint: dict) -> "DetectionInferenceData":
        try:
            desc = json.loads((Path(run_dir) / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise StudioError(f"{run_dir}: data.json is missing: the run did not get as far as preparing its data.") from None
        return DetectionInferenceData(list(checkpoint.get("class_names") or desc["class_names"]),
                                      int(desc["image_size"]), desc["mean"], desc["std"])

    def predict_inputs(self, ctx, inputs: list) -> list[dict]:
        """Image paths -> {"ref", "predicted" (a one-line summary), "detections" [{"label",
        "score", "box"}] in the image's pixels, "width", "height"} (or {"ref", "error"})."""
        from ..data import decode_dicom, decode_image, is_dicom, resize_image

        model = self.inference_model(ctx).eval()
        size, names, thr = ctx.data.size, ctx.data.class_names, self.score_threshold(ctx)
        results = []
        for p in inputs:
            try:
                img = decode_dicom(p) if is_dicom(p) else decode_image(p)
            except Exception as e:  # noqa: BLE001 - a bad image is reported, the rest go on
                results.append({"ref": str(p), "error": str(e)})
                continue
            h, w = img.shape[:2]
            x = torch.tensor(resize_image(img, size)).permute(2, 0, 1).float().div(255).to(ctx.device)
            with torch.no_grad():
                out = model([x])[0]
            scale = np.array([w / size, h / size, w / size, h / size])
            dets = [Detection(names[int(c) - 1], float(s), (b.cpu().numpy() * scale).tolist()).to_dict()
                    for b, c, s in zip(out["boxes"], out["labels"], out["scores"]) if float(s) >= thr]
            results.append({"ref": str(p), "predicted": summarize_detections(dets, thr), "detections": dets,
                            "width": w, "height": h})
        return results


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def detection_report_md(project, final: dict, data: DetectionData | None) -> str:
    t = final.get("test", {})
    lines = [f"# {project.name}: {final.get('technique')} on {final.get('model')}", "",
             f"Run `{final.get('run_id')}` on {final.get('device')}, {final.get('train_seconds', 0):.0f} s of training; "
             f"best epoch {final.get('best_epoch')} by {final.get('monitor')} = {_fmt(final.get('best_value'))}.", "",
             project.augmentation.flips_summary(), ""]
    if data is not None and hasattr(data, "box_counts"):
        c = data.box_counts()
        lines += ["## Data", "", f"Source: `{data.table.source}` ({data.table.reader_id}), images resized to {data.size} px.",
                  "", "| split | images | " + " | ".join(data.class_names) + " |",
                  "|---" * (len(data.class_names) + 2) + "|"]
        lines += [f"| {s} | {len(data.indices[s])} | " + " | ".join(str(c[s][k]) for k in data.class_names) + " |"
                  for s in SPLITS]
        lines.append("")
    if t:
        lines += ["## Test results", "", f"- mAP@[.5:.95]: {_fmt(t.get('map'))}", f"- mAP@0.5: {_fmt(t.get('map_50'))}",
                  f"- mAP@0.75: {_fmt(t.get('map_75'))}", f"- recall (100 detections): {_fmt(t.get('mar_100'))}",
                  f"- images: {t.get('n')}", "", "| class | AP@[.5:.95] | AP@0.5 | recall | boxes |", "|---|---|---|---|---|"]
        for name, pc in t.get("per_class", {}).items():
            lines.append(f"| {name} | {_fmt(pc['ap'])} | {_fmt(pc['ap50'])} | {_fmt(pc['ar100'])} | {pc['boxes']} |")
    lines += ["", "Predictions on the test images: `test_predictions.json` / `test_predictions.csv` (original pixels).",
              "", "Repeat this run with:", "", f"    tlstudio train {Path(final.get('run_dir', '.')) / 'project.toml'}", ""]
    return "\n".join(lines)
