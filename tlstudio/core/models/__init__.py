"""The offline model library: architectures, their layer groups and preprocessing, where
pretrained weights are found without a network, and safe loading.

    from tlstudio.core.models import ModelLibrary
    model, info = ModelLibrary().build("mobilenet_v2", num_classes=3)
"""
from .architectures import CATALOG, Architecture, Preprocessing, architectures
from .classifier import HEAD_KINDS, ClassifierModel, LayerGroup, make_head
from .library import ModelLibrary, ModelStatus, imagenet_classifier
from .sources import (HuggingFaceSource, PackageSource, TorchHubSource, UserFolderSource, WeightCandidate, WeightSource,
                      builtin_sources)

__all__ = [
    "CATALOG", "Architecture", "Preprocessing", "architectures",
    "HEAD_KINDS", "ClassifierModel", "LayerGroup", "make_head",
    "ModelLibrary", "ModelStatus", "imagenet_classifier",
    "HuggingFaceSource", "PackageSource", "TorchHubSource", "UserFolderSource", "WeightCandidate", "WeightSource",
    "builtin_sources",
]
