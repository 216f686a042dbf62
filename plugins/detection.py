"""Faster R-CNN for your objects: a COCO-trained detector with a new box predictor, or
Faster R-CNN built on a ready ImageNet backbone."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from tlstudio.core import TechniqueConfig, hookimpl
from tlstudio.core.detection import (DetectionTechnique, auto_anchor_sizes, coco_faster_rcnn,
                                     detection_param_groups, find_coco_detector, freeze_backbone, how_to_add_coco,
                                     imagenet_faster_rcnn)
from tlstudio.core.errors import ModelError


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


class FasterRCNN(DetectionTechnique):
    id = "faster-rcnn"
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
        if ctx.for_inference and not self.spec:
            raise ModelError("This run's checkpoint does not say which detector it trained (no 'spec' in its "
                             "technique state): it cannot be rebuilt for prediction.")
        spec = self.spec if ctx.for_inference else self._choose(ctx)
        common = dict(rois_per_image=c.rois_per_image, score_thresh=0.05, nms_thresh=c.nms_threshold,
                      detections=c.max_detections)
        if spec["kind"] == "coco":
            weights = None if ctx.for_inference else Path(spec["weights"])
            model = coco_faster_rcnn(spec["name"], len(d.class_names), weights, d.size, **common)
            ctx.model_info = model.info
            if weights:
                ctx.log(f"COCO-trained {spec['name']} from {weights}: box predictor replaced for "
                        f"{len(d.class_names)} classes.")
        else:
            weights = "none" if ctx.for_inference else ctx.project.model.weights
            model, info = imagenet_faster_rcnn(
                ctx.library, spec["architecture"], len(d.class_names), weights, d.size, d.mean, d.std,
                anchor_sizes=spec["anchor_sizes"], fpn_channels=spec["fpn_channels"],
                box_head_size=spec["box_head_size"], **common)
            ctx.model_info = info
            if not ctx.for_inference:
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

    def result_view(self, run_dir, parent=None):
        return DetectionResultView(run_dir, parent)


def DetectionResultView(run_dir, parent=None):
    """The test images with their true boxes (green) and the detections (orange, with class
    and score) above a score threshold chosen with the slider."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
    from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QSlider, QVBoxLayout, QWidget)

    class View(QWidget):
        TRUE, FOUND = QColor(40, 200, 80), QColor(255, 140, 0)

        def __init__(self):
            super().__init__(parent)
            self.results = _load_results(run_dir, "detection")
            self.images = self.results.get("images", [])
            self.list = QListWidget()
            for im in self.images:
                self.list.addItem(Path(im["ref"]).name)
            self.canvas = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
            self.canvas.setMinimumSize(320, 320)
            self.slider = QSlider(Qt.Orientation.Horizontal)
            self.slider.setRange(0, 100)
            self.slider.setValue(round(100 * float(self.results.get("score_threshold", 0.5))))
            self.caption = QLabel()
            self.legend = QLabel("green: true boxes   orange: detections (class and score)")
            right = QVBoxLayout()
            right.addWidget(self.canvas, 1)
            right.addWidget(self.caption)
            right.addWidget(self.slider)
            right.addWidget(self.legend)
            lay = QHBoxLayout(self)
            lay.addWidget(self.list)
            lay.addLayout(right, 3)
            self.list.currentRowChanged.connect(lambda _: self.redraw())
            self.slider.valueChanged.connect(lambda _: self.redraw())
            if self.images:
                self.list.setCurrentRow(0)
            else:
                self.canvas.setText(self.results.get("message", "No test predictions in this run."))

        @property
        def threshold(self) -> float:
            return self.slider.value() / 100

        def visible_detections(self) -> list[dict]:
            row = self.list.currentRow()
            if not 0 <= row < len(self.images):
                return []
            return [d for d in self.images[row]["predicted"] if d["score"] >= self.threshold]

        def redraw(self) -> None:
            row = self.list.currentRow()
            if not 0 <= row < len(self.images):
                return
            im = self.images[row]
            pix = QPixmap(im["ref"])
            if pix.isNull():
                pix = QPixmap(int(im["width"]), int(im["height"]))
                pix.fill(QColor(60, 60, 60))
            scale = max(1.0, 320 / max(pix.width(), pix.height()))
            pix = pix.scaled(round(pix.width() * scale), round(pix.height() * scale),
                             Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            sx, sy = pix.width() / im["width"], pix.height() / im["height"]
            out = QPixmap(pix.size())
            out.fill(QColor(0, 0, 0))
            p = QPainter(out)
            p.drawPixmap(0, 0, pix)
            p.setFont(QFont(p.font().family(), 9))
            shown = self.visible_detections()
            for color, boxes, scored in ((self.TRUE, im["truth"], False), (self.FOUND, shown, True)):
                p.setPen(QPen(color, 2))
                for b in boxes:
                    x1, y1, x2, y2 = b["box"]
                    r = QRectF(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy)
                    p.drawRect(r)
                    text = f"{b['label']} {b['score']:.2f}" if scored else b["label"]
                    p.drawText(r.adjusted(2, 1 if scored else r.height() - 14, 0, 0).topLeft() + _pt(0, 10), text)
            p.end()
            self.canvas.setPixmap(out)
            self.caption.setText(f"{Path(im['ref']).name}: {len(im['truth'])} true boxes, {len(shown)} detections "
                                 f"with score >= {self.threshold:.2f}")

    def _pt(x, y):
        from PySide6.QtCore import QPointF

        return QPointF(x, y)

    return View()


def _load_results(run_dir, task: str) -> dict:
    f = Path(run_dir) / "test_predictions.json"
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"images": [], "message": f"No test predictions in {run_dir} (the run has no test split, or did not finish)."}
    except (OSError, ValueError) as e:
        return {"images": [], "message": f"{f}: cannot be read ({e})."}


@hookimpl
def tlstudio_techniques():
    return [FasterRCNN()]
