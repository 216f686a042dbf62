"""The model a technique trains: a pretrained backbone, a new head, and layer groups."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from ..errors import ModelError

HEAD_KINDS = {
    "linear": "Dropout (if any), then one linear layer",
    "bn_dropout": "BatchNorm -> Dropout -> Linear(hidden) -> ReLU -> BatchNorm -> Dropout -> Linear",
}


@dataclass
class LayerGroup:
    """Consecutive layers that are frozen, unfrozen or given a learning rate together.

    ``params`` holds loose parameters that belong to no listed module (ViT's class token
    and position embedding)."""

    name: str
    modules: list[nn.Module]
    params: list[nn.Parameter] = field(default_factory=list)

    def parameters(self) -> Iterator[nn.Parameter]:
        for m in self.modules:
            yield from m.parameters()
        yield from self.params


def make_head(feature_dim: int, num_classes: int, kind: str = "linear", dropout: float = 0.0, hidden: int = 256) -> nn.Module:
    """A new classification head on pooled features (see :data:`HEAD_KINDS`)."""
    if num_classes < 1:
        raise ModelError(f"A classifier needs at least one class (got {num_classes}).")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"Dropout must lie in [0, 1) (got {dropout}).")
    if kind == "linear":
        layers = [nn.Dropout(dropout)] if dropout > 0 else []
        return nn.Sequential(*layers, nn.Linear(feature_dim, num_classes))
    if kind == "bn_dropout":
        return nn.Sequential(
            nn.BatchNorm1d(feature_dim), nn.Dropout(dropout), nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden), nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )
    raise ModelError(f"Unknown head kind '{kind}': choose one of {', '.join(HEAD_KINDS)}.")


def _out_features(head: nn.Module) -> int:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"The head {type(head).__name__} has no linear output layer.")
    return linears[-1].out_features


class ClassifierModel(nn.Module):
    """``head(backbone(x))``: the backbone maps images (N, 3, H, W) to pooled, flat
    features (N, feature_dim); the head maps them to logits (N, num_classes).

    ``groups`` run from input to output and together hold every parameter exactly once;
    the last is ``LayerGroup("head", [head])``.  ``cam_layer`` is the last spatial feature
    layer for Grad-CAM (for ViT the last encoder block, whose output is tokens
    (N, 1 + h*w, C): drop the class token and reshape).  Neither is registered as a
    submodule, so the state dict holds only ``backbone.*`` and ``head.*``.

    ``flip_average``: in eval mode the logits are the mean of those of the image and of its
    mirror image (test-time augmentation; the engine turns it on where training flipped the
    images).  It is part of ``forward``, so evaluation, prediction and exported models
    (ONNX, TorchScript) all give the same answers.  Training steps see single images.
    """

    def __init__(self, arch_name: str, backbone: nn.Module, feature_dim: int, head: nn.Module,
                 groups: list[LayerGroup], cam_layer: nn.Module):
        super().__init__()
        self.arch_name = arch_name
        self.feature_dim = feature_dim
        self.backbone = backbone
        self.head = head
        self.num_classes = _out_features(head)
        object.__setattr__(self, "groups", [*groups, LayerGroup("head", [head])])
        object.__setattr__(self, "cam_layer", cam_layer)
        self.flip_average = False

    def features(self, x):
        return self.backbone(x)

    def forward(self, x):
        if self.flip_average and not self.training:
            n = x.shape[0]
            z = self.head(self.backbone(torch.cat([x, x.flip(-1)])))  # one pass over both views
            return (z[:n] + z[n:]) / 2
        return self.head(self.backbone(x))

    def replace_head(self, head: nn.Module) -> None:
        self.head = head
        self.num_classes = _out_features(head)
        self.groups[-1] = LayerGroup("head", [head])

    def extra_repr(self) -> str:
        return f"arch={self.arch_name}, feature_dim={self.feature_dim}, num_classes={self.num_classes}"
