"""Detection building blocks: mAP as a user reads it, box-aware augmentation on real digits,
the COCO head swap from a weights file, backbones, freezing and learning rates."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tlstudio.core.config import AugmentationConfig
from tlstudio.core.data.digit_scenes import compose_scenes
from tlstudio.core.tasks.detection import (DetectionDataset, auto_anchor_sizes, coco_faster_rcnn, detection_metrics,
                                     detection_param_groups, detection_transforms, find_coco_detector,
                                     freeze_backbone, imagenet_faster_rcnn)
from tlstudio.core.errors import ModelError
from tlstudio.core.models import ModelLibrary


def _t(boxes, labels, scores=None):
    d = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}
    if scores is not None:
        d["scores"] = torch.tensor(scores, dtype=torch.float32)
    return d


def test_map_rewards_right_boxes_and_classes():
    truth = [_t([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), _t([[5, 5, 25, 25]], [0])]
    perfect = detection_metrics([_t([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1], [0.9, 0.8]),
                                 _t([[5, 5, 25, 25]], [0], [0.9])], truth, ["a", "b", "c"])
    assert perfect["map_50"] == pytest.approx(1.0) and perfect["map"] == pytest.approx(1.0)
    assert perfect["per_class"]["a"] == {"ap": pytest.approx(1.0), "ap50": pytest.approx(1.0),
                                         "ar100": pytest.approx(1.0), "boxes": 2}
    assert perfect["per_class"]["c"]["ap"] is None and perfect["per_class"]["c"]["boxes"] == 0
    # a loose box: found at IoU 0.5 but not at the stricter thresholds
    loose = detection_metrics([_t([[0, 0, 13, 13], [20, 20, 40, 40]], [0, 1], [0.9, 0.8]),
                               _t([[5, 5, 25, 25]], [0], [0.9])], truth, ["a", "b", "c"])
    assert loose["map_50"] == pytest.approx(1.0) and loose["map"] < 0.95
    assert loose["per_class"]["a"]["ap50"] == pytest.approx(1.0) and loose["per_class"]["a"]["ap"] < 1.0
    # the wrong class is no detection at all; nothing found scores zero
    wrong = detection_metrics([_t([[0, 0, 10, 10], [20, 20, 40, 40]], [1, 0], [0.9, 0.8]), _t([[5, 5, 25, 25]], [0], [0.9])],
                              truth, ["a", "b", "c"])
    assert wrong["per_class"]["b"]["ap50"] == 0.0 and wrong["map_50"] < perfect["map_50"]
    none = detection_metrics([_t([], [], []), _t([], [], [])], truth, ["a", "b", "c"])
    assert none["map_50"] == 0.0 and none["map"] == 0.0


def test_augmentation_moves_boxes_with_the_digits(one_thread):
    """After random shifts, zooms, rotations and flips, every kept box still holds its digit's ink
    and no ink lies outside the boxes (real MNIST pixels)."""
    scenes = compose_scenes(6, canvas_size=64, digits=(3, 7), per_image=(2, 2), seed=3)
    images = np.stack([np.repeat(s["image"][..., None], 3, 2) for s in scenes])
    boxes = [np.asarray(s["boxes"], np.float32) for s in scenes]
    labels = [np.asarray(s["labels"], np.int64) for s in scenes]
    aug = AugmentationConfig(preset="standard", rotation=8, scale_min=0.8, horizontal_flip=True, vertical_flip=True)
    ds = DetectionDataset(images, boxes, labels, np.arange(len(scenes)), detection_transforms(aug, train=True))
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        for k in range(len(ds)):
            img, tg = ds[k]
            assert img.dtype == torch.float32 and img.shape == (3, 64, 64) and float(img.max()) <= 1.0
            ink = img[0] > 0.5
            b = tg["boxes"].as_subclass(torch.Tensor)
            assert len(b) == len(tg["labels"]) and set(tg["labels"].tolist()) <= {4, 8}
            covered = torch.zeros_like(ink)
            for x1, y1, x2, y2 in b.round().long().tolist():
                assert ink[y1:y2, x1:x2].any(), "a box lost its digit"
                covered[max(0, y1 - 2):y2 + 2, max(0, x1 - 2):x2 + 2] = True
            if len(b) == 2:  # both digits kept: all their ink lies in the boxes
                assert not (ink & ~covered).any()
            changed += not torch.equal(b, torch.from_numpy(boxes[k]))
    assert changed > 15
    plain = DetectionDataset(images, boxes, labels, np.arange(len(scenes)), detection_transforms(aug, train=False))
    img, tg = plain[0]
    assert torch.equal(tg["boxes"].as_subclass(torch.Tensor), torch.from_numpy(boxes[0]))


def test_anchor_sizes_follow_the_boxes():
    small = auto_anchor_sizes(np.array([10, 12, 14, 16, 18, 20.0]), 4, 64)
    big = auto_anchor_sizes(np.array([60, 80, 100, 120.0]), 4, 512)
    flat = [s for level in small for s in level]
    assert flat == sorted(flat) and flat[0] <= 10 and flat[-1] >= 20
    assert big[0][0] > small[-1][-1]


def test_coco_detector_weights_get_a_new_box_predictor(tmp_path, monkeypatch, one_thread):
    """The torchvision recipe: COCO weights loaded, the box predictor replaced for the new classes.
    (No COCO file exists offline: the same architecture's weights are written here.)"""
    monkeypatch.setenv("TLSTUDIO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    lib = ModelLibrary()
    assert find_coco_detector(lib) is None
    import torchvision.models.detection as D

    torch.manual_seed(0)
    ref = D.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    (tmp_path / "models").mkdir()
    sd = {k: v.contiguous() for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(sd, str(tmp_path / "models" / "fasterrcnn_mobilenet_v3_large_320_fpn.safetensors"))
    name, path = find_coco_detector(lib)
    assert name == "fasterrcnn_mobilenet_v3_large_320_fpn"
    model = coco_faster_rcnn(name, 3, path, 128)
    got = model.state_dict()
    assert torch.equal(got["backbone.body.0.0.weight"], sd["backbone.body.0.0.weight"])
    assert torch.equal(got["roi_heads.box_head.fc7.weight"], sd["roi_heads.box_head.fc7.weight"])
    assert got["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4  # 3 classes + background
    assert [g.name for g in model.groups][-4:] == ["fpn", "rpn", "box_head", "box_predictor"]
    freeze_backbone(model, 1)
    groups = detection_param_groups(model, 1e-3, 0.5)
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["box_predictor"] == 1e-3 and lrs["box_head"] == 5e-4 and lrs["fpn"] < lrs["rpn"]
    assert not any(p.requires_grad for p in model.backbone.body["0"].parameters())
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    assert set(out[0]) == {"boxes", "labels", "scores"}
    # weights of another detector are refused with a message that says so
    (tmp_path / "models" / "fasterrcnn_mobilenet_v3_large_320_fpn.safetensors").unlink()
    save_file({"backbone.body.0.0.weight": torch.zeros(3, 3, 3, 3)},
              str(tmp_path / "models" / "fasterrcnn_mobilenet_v3_large_fpn.safetensors"))
    name, path = find_coco_detector(lib)
    with pytest.raises(ModelError, match="do not fit fasterrcnn_mobilenet_v3_large_fpn"):
        coco_faster_rcnn(name, 3, path, 128)


def test_imagenet_backbone_detector_freezes_and_groups(one_thread):
    lib = ModelLibrary()
    model, info = imagenet_faster_rcnn(lib, "mobilenet_v2", 2, "imagenet", 64, (0.485, 0.456, 0.406),
                                       (0.229, 0.224, 0.225), anchor_sizes=[[8, 11], [16, 22], [32, 45], [64, 90]],
                                       fpn_channels=32, box_head_size=64)
    assert info["weights_sha256"].startswith("b0353104")
    names = [g.name for g in model.groups]
    assert names[0] == "stem" and names[-3:] == ["fpn", "rpn", "roi_heads"]
    ref = lib.load_pretrained_state("mobilenet_v2")
    assert torch.equal(model.backbone.body["0"][0].weight, ref["features.0.0.weight"])
    freeze_backbone(model, 2)
    trainable = [g.name for g in model.groups if any(p.requires_grad for p in g.parameters())]
    assert trainable == ["stage5", "head_conv", "fpn", "rpn", "roi_heads"]
    lrs = {g["name"]: g["lr"] for g in detection_param_groups(model, 1e-3, 0.5)}
    assert lrs == {"stage5": 2.5e-4, "head_conv": 5e-4, "fpn": 1e-3, "rpn": 1e-3, "roi_heads": 1e-3}
    model.train()
    from tlstudio.core.techniques.blocks import keep_frozen_bn_in_eval

    keep_frozen_bn_in_eval(model)
    bns = [m for m in model.backbone.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)  # detection batches are too small for BN statistics
    with pytest.raises(ModelError, match="cannot be a detection backbone"):
        imagenet_faster_rcnn(lib, "densenet121", 2, "none", 64, (0, 0, 0), (1, 1, 1), anchor_sizes=[[8]] * 4)


@pytest.mark.parametrize("name,groups", [
    ("resnet18", ["stem", "layer1", "layer2", "layer3", "layer4"]),  # ResNet-50 has the same stages
    ("mobilenet_v3_small", ["stem", "stage1", "stage2", "stage3", "head_conv"]),
    ("efficientnet_b0", ["stem", "stages1-2", "stages3-4", "stages5-6", "stage7", "head_conv"]),
    ("convnext_tiny", ["stem", "stage1", "stage2", "stage3", "stage4"]),
])
def test_other_imagenet_families_make_a_detector(name, groups, one_thread):
    model, _ = imagenet_faster_rcnn(ModelLibrary(), name, 2, "none", 64, (0.5,) * 3, (0.25,) * 3,
                                    anchor_sizes=[[8], [16], [32], [64]], fpn_channels=32, box_head_size=64)
    assert [g.name for g in model.groups] == [*groups, "fpn", "rpn", "roi_heads"]
    freeze_backbone(model, 1)
    model.train()
    losses = model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[10., 10, 30, 30]]), "labels": torch.tensor([1])}])
    sum(losses.values()).backward()
    top = model.groups[len(groups) - 1]
    assert all(p.grad is not None for p in top.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.groups[0].parameters())


@pytest.fixture
def one_thread():
    """Small models run faster on one thread (and leave the other core to the other tests)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
