"""Faster R-CNN for your objects: a COCO-trained detector with a new box predictor, or
Faster R-CNN built on a ready ImageNet backbone."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from tlstudio.api import (ModelError, Technique, TechniqueConfig, auto_anchor_sizes, coco_faster_rcnn,
                          detection_param_groups, find_coco_detector, freeze_backbone, hookimpl, how_to_add_coco,
                          imagenet_faster_rcnn)


class FasterRCNNConfig(TechniqueConfig):
    start_from: Literal["auto", "coco", "imagenet"] = Field(
        "auto", title="Start from",
        description="coco: a COCO-trained Faster R-CNN found on this computer, its box predictor replaced for your "
                    "classes; imagenet: Faster R-CNN built on the project's ImageNet model; auto: coco when such "
                    "weights are found, else imagenet.")
    coco_model: Literal["any", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
                        "fasterrcnn_mobilenet_v3_large_320_fpn"] = Field(
        "any", title="COCO detector", description="Which COCO-trained detector to use (any: the first found).")
    trainable_backbone_groups: int = Field(
        3, ge=-1, le=32, title="Backbone groups to train",
        description="How many layer groups of the pretrained backbone, counted from the top, learn (all = every "
                    "group). The feature pyramid, region proposals and box heads always learn.",
        json_schema_extra={"labels": {-1: "all"}})
    lr_decay: float = Field(
        0.5, gt=0.0, le=1.0, title="Learning-rate decay per group",
        description="Each pretrained group learns at this times the rate of the group above it.")
    fpn_channels: int = Field(128, ge=16, le=512, title="Pyramid channels",
                              description="Width of the feature pyramid on an ImageNet backbone.")
    box_head_size: int = Field(256, ge=32, le=2048, title="Box head width",
                               description="Hidden width of the box head on an ImageNet backbone.")
    anchor_sizes: str = Field(
        "auto", title="Anchor sizes",
        description="auto: fitted to your boxes' sizes; or one size per pyramid level in pixels of the resized "
                    "image, finest first (four levels: for example 16,32,64,128).")
    rois_per_image: int = Field(128, ge=16, le=1024, title="Regions per image",
                                description="Proposals sampled per image to train the box head.")
    score_threshold: float = Field(0.5, ge=0.0, le=1.0, title="Score threshold",
                                   description="Detections scoring below this are not shown or printed.")
    nms_threshold: float = Field(0.5, gt=0.0, le=1.0, title="Overlap suppression (IoU)",
                                 description="Of two detections of a class overlapping more than this, the weaker goes.")
    max_detections: int = Field(100, ge=1, le=1000, title="Detections per image",
                                description="At most this many boxes are reported for one image.")

    @field_validator("anchor_sizes")
    @classmethod
    def _anchors(cls, v: str) -> str:
        v = v.strip().lower()
        if v == "auto":
            return v
        try:
            sizes = [float(s) for s in v.replace(";", ",").split(",") if s.strip()]
        except ValueError:
            raise ValueError("anchor sizes must be 'auto' or numbers separated by commas (e.g. 16,32,64,128)") from None
        if len(sizes) != 4 or any(s <= 0 for s in sizes):
            raise ValueError("give four positive anchor sizes, one per pyramid level (e.g. 16,32,64,128)")
        return ",".join(f"{s:g}" for s in sizes)


class FasterRCNN(Technique):
    id = "faster-rcnn"
    task = "detection"
    title = "Faster R-CNN"
    explanation = (
        "Finds and outlines objects of your classes: a box, a class and a score for each. As in the classic recipe, "
        "a detector trained on everyday photos (COCO) keeps everything it learned and only its last layer, the box "
        "predictor, is replaced for your classes. Without such weights, the detector is built on an ImageNet "
        "network: its layers find the features, and a feature pyramid, a region-proposal network and a box head "
        "learn from your boxes, with anchor sizes fitted to them. A few hundred boxes per class go a long way."
    )
    Config = FasterRCNNConfig

    def __init__(self):
        self.spec: dict = {}

    def recommended_training(self) -> dict:
        return {"epochs": 20, "lr": 1e-3, "batch_size": 8, "schedule": "cosine", "warmup_epochs": 1.0,
                "weight_decay": 1e-4, "optimizer": "adamw", "grad_clip": 10.0}

    def _choose(self, ctx) -> dict:
        """Which detector this run trains (kept in the checkpoint, so prediction rebuilds it)."""
        c = ctx.config
        if c.start_from != "imagenet":
            found = find_coco_detector(ctx.library, c.coco_model)
            if found:
                return {"kind": "coco", "name": found[0], "weights": str(found[1])}
            if c.start_from == "coco":
                raise ModelError(f"No COCO-trained Faster R-CNN weights on this computer (nothing is downloaded). "
                                 f"To add them, {how_to_add_coco(ctx.library)}; or start from an ImageNet model.")
            ctx.log("No COCO-trained detector found: building Faster R-CNN on the ImageNet model "
                    f"{ctx.project.model.architecture} (to start from COCO, {how_to_add_coco(ctx.library)}).")
        sizes = (auto_anchor_sizes(ctx.data.train_box_sizes(), 4, ctx.data.size) if c.anchor_sizes == "auto"
                 else [[float(s)] for s in c.anchor_sizes.split(",")])
        return {"kind": "imagenet", "architecture": ctx.project.model.architecture, "anchor_sizes": sizes,
                "fpn_channels": c.fpn_channels, "box_head_size": c.box_head_size}

    def build(self, ctx):
        c, d = ctx.config, ctx.data
        pretrained = ctx.weights != "none"  # "none" when predicting: the checkpoint brings the weights
        if not self.spec and not hasattr(d, "train_box_sizes"):
            raise ModelError("This run's checkpoint does not say which detector it trained (no 'spec' in its "
                             "technique state): it cannot be rebuilt for prediction.")
        spec = self.spec or self._choose(ctx)  # a resumed or predicting run rebuilds what it trained
        common = dict(rois_per_image=c.rois_per_image, score_thresh=0.05, nms_thresh=c.nms_threshold,
                      detections=c.max_detections)
        if spec["kind"] == "coco":
            weights = Path(spec["weights"]) if pretrained else None
            model = coco_faster_rcnn(spec["name"], len(d.class_names), weights, d.size, **common)
            ctx.model_info = model.info
            if weights:
                ctx.log(f"COCO-trained {spec['name']} from {weights}: box predictor replaced for "
                        f"{len(d.class_names)} classes.")
        else:
            weights = ctx.weights
            model, info = imagenet_faster_rcnn(
                ctx.library, spec["architecture"], len(d.class_names), weights, d.size, d.mean, d.std,
                anchor_sizes=spec["anchor_sizes"], fpn_channels=spec["fpn_channels"],
                box_head_size=spec["box_head_size"], **common)
            ctx.model_info = info
            if pretrained:
                ctx.log(f"Faster R-CNN on {spec['architecture']} ({info.get('weights_path') or weights}); anchors "
                        + ", ".join("/".join(f"{s:g}" for s in a) for a in spec["anchor_sizes"]) + " px")
        self.spec = spec
        freeze_backbone(model, c.trainable_backbone_groups)
        return model

    def param_groups(self, ctx) -> list[dict]:
        return detection_param_groups(ctx.model, ctx.training.lr, ctx.config.lr_decay)

    def state_dict(self) -> dict:
        return {"spec": json.dumps(self.spec)} if self.spec else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("spec"):
            self.spec = json.loads(state["spec"])

@hookimpl
def tlstudio_techniques():
    return [FasterRCNN()]
