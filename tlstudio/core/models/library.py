"""The model library: which models are ready offline, building them with their weights,
and importing weight files the user brings."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import ModelError
from ..io import atomic_write_bytes
from ..settings import load_settings
from .architectures import Architecture, architectures
from .classifier import ClassifierModel, make_head
from .sources import UserFolderSource, WeightCandidate, WeightSource, builtin_sources
from .weights import (complete_state_dict, is_safetensors, read_state_dict, state_dict_diff, verified_sha256,
                      weights_file)

log = logging.getLogger(__name__)


@dataclass
class ModelStatus:
    name: str
    title: str
    ready: bool
    path: str
    source: str  # title of the source that has the weights ("" when not ready)
    how_to_add: str  # "" when ready
    params_m: float
    size_mb: float
    imagenet_top1: float | None


class ModelLibrary:
    def __init__(self, sources: list[WeightSource] | None = None, extra_architectures: list[Architecture] | None = None):
        self.sources: list[WeightSource] = builtin_sources() if sources is None else list(sources)
        from .timm_local import local_timm_architectures

        folder = next((s.folder for s in self.sources if isinstance(s, UserFolderSource)), None)
        self.architectures: dict[str, Architecture] = architectures(
            [*(extra_architectures or []), *local_timm_architectures(folder)])

    # --- finding --------------------------------------------------------------------------
    def arch(self, name: str) -> Architecture:
        try:
            return self.architectures[name]
        except KeyError:
            raise ModelError(f"Unknown model architecture '{name}'. Available: {', '.join(self.architectures)}") from None

    def find_weights(self, name: str) -> WeightCandidate | None:
        """The first weights found, in source order (a failing source is skipped and logged)."""
        arch = self.arch(name)
        for source in self.sources:
            try:
                found = source.find(arch)
            except Exception as e:  # a plugin's source must not break the library
                log.warning("weight source %r failed for %s: %s", getattr(source, "id", source), name, e)
                continue
            if found:
                return found[0]
        return None

    def how_to_add(self, name: str) -> str:
        arch = self.arch(name)
        tips = []
        for source in self.sources:
            try:
                tip = source.how_to_add(arch)
            except Exception as e:
                log.warning("weight source %r failed for %s: %s", getattr(source, "id", source), name, e)
                continue
            if tip:
                tips.append(tip)
        return "\n".join(f"- {t}" for t in tips)

    def status(self, name: str) -> ModelStatus:
        arch = self.arch(name)
        found = self.find_weights(name)
        titles = {s.id: s.title for s in self.sources}
        size = weights_file(found.path).stat().st_size / 1e6 if found else 0.0
        return ModelStatus(
            name=name, title=arch.title, ready=found is not None, path=str(found.path) if found else "",
            source=titles.get(found.source, found.source) if found else "", how_to_add="" if found else self.how_to_add(name),
            params_m=arch.params_m, size_mb=round(size, 1), imagenet_top1=arch.imagenet_top1,
        )

    def list_status(self) -> list[ModelStatus]:
        return [self.status(n) for n in self.architectures]

    def models_folder(self) -> Path:
        return next((s.folder for s in self.sources if isinstance(s, UserFolderSource)), None) or load_settings().models_path()

    # --- loading --------------------------------------------------------------------------
    def _fit(self, arch: Architecture, sd: dict, path: Path) -> dict:
        """``sd`` in the architecture's own layout, checked key by key and shape by shape."""
        shapes = arch.reference_shapes()
        sd = complete_state_dict(arch.map_state_dict(sd), shapes)
        diff = state_dict_diff(sd, shapes)
        if diff:
            raise ModelError(f"{path}: these weights do not fit {arch.title} ({arch.name}): {diff}")
        return sd

    def _pretrained(self, arch: Architecture, path: str | Path | None) -> tuple[dict, WeightCandidate, str]:
        if path is None:
            found = self.find_weights(arch.name)
            if found is None:
                raise ModelError(f"No pretrained ImageNet weights for {arch.title} ({arch.name}) on this computer "
                                 f"(the studio never downloads). To add them:\n{self.how_to_add(arch.name)}")
        else:
            found = WeightCandidate(arch.name, Path(path).expanduser(), "file", str(path))
        sha = verified_sha256(found.path)
        return self._fit(arch, read_state_dict(found.path), found.path), found, sha

    def load_pretrained_state(self, name: str, path: str | Path | None = None) -> dict:
        """The ImageNet state dict of ``name`` (found offline, or read from ``path``), safely
        loaded, hash-checked, mapped to the model's key layout and strictly checked."""
        return self._pretrained(self.arch(name), path)[0]

    def build(self, name: str, num_classes: int, weights: str = "imagenet", head: str = "linear",
              dropout: float = 0.0, hidden: int = 256) -> tuple[ClassifierModel, dict]:
        """A :class:`ClassifierModel` for ``num_classes`` classes.

        ``weights``: "imagenet" (found offline), "none" (random initialisation) or the path of
        a file: the ImageNet state dict of this architecture, or a ClassifierModel state dict
        (``backbone.*``/``head.*``: the backbone must fit; the head is kept when it fits the
        requested head, else made new)."""
        arch = self.arch(name)
        model = arch.build()
        info = {"architecture": name, "weights": weights, "weights_path": "", "weights_source": "",
                "weights_sha256": "", "head": "new"}
        trained = None
        if weights == "imagenet":
            sd, found, sha = self._pretrained(arch, None)
            model.load_state_dict(sd)
            info.update(weights_path=str(found.path), weights_source=found.source, weights_sha256=sha)
        elif weights != "none":
            if not weights:
                raise ModelError("No weights given: use imagenet, none or the path of a weights file.")
            path = Path(weights).expanduser()
            sha = verified_sha256(path)
            sd = read_state_dict(path)
            if any(k.startswith("backbone.") for k in sd):
                trained = sd
            else:
                model.load_state_dict(self._fit(arch, sd, path))
            info.update(weights=str(path), weights_path=str(path), weights_source="file", weights_sha256=sha)

        backbone, feature_dim, groups, cam_layer = arch.split(model)
        classifier = ClassifierModel(name, backbone, feature_dim, make_head(feature_dim, num_classes, head, dropout, hidden),
                                     groups, cam_layer)
        if trained is not None:
            info["head"] = _load_trained(classifier, trained, info["weights_path"], arch)
        return classifier, info

    # --- importing ------------------------------------------------------------------------
    def detect_architecture(self, sd: dict) -> Architecture | None:
        """The first catalog architecture whose keys and shapes ``sd`` matches exactly."""
        for arch in self.architectures.values():
            try:
                shapes = arch.reference_shapes()
                if not state_dict_diff(complete_state_dict(arch.map_state_dict(sd), shapes), shapes):
                    return arch
            except Exception as e:  # a plugin architecture that cannot be built is skipped
                log.warning("architecture %r skipped while detecting weights: %s", arch.name, e)
        return None

    def import_weights(self, file: str | Path, name: str | None = None) -> Path:
        """Check a weights file and copy it into the models folder under the name the
        library looks for; returns the new path."""
        src = Path(file).expanduser()
        if src.is_dir():
            raise ModelError(f"{src}: a folder; import-weights takes one weights file (.pth, .pt or .safetensors). "
                             "A Hugging Face model folder is used as it is: copy it into your models folder.")
        if not src.is_file():
            raise ModelError(f"{src}: no such file")
        verified_sha256(src)
        sd = read_state_dict(src)
        if name:
            arch = self.arch(name)
            self._fit(arch, sd, src)
        else:
            arch = self.detect_architecture(sd)
            if arch is None:
                keys = ", ".join(list(sd)[:3])
                raise ModelError(f"{src}: these weights ({len(sd)} tensors, e.g. {keys}) fit none of the model "
                                 "architectures in the catalog. If they are for one of them, choose it by hand "
                                 "to see what differs.")
        target = src.name if src.name in arch.weight_files else arch.name + (".safetensors" if is_safetensors(src) else ".pth")
        dest = self.models_folder() / target
        if not (dest.exists() and dest.samefile(src)):
            atomic_write_bytes(dest, src.read_bytes())
        return dest


def _load_trained(model: ClassifierModel, sd: dict, path: str, arch: Architecture) -> str:
    """Load a ClassifierModel state dict: the backbone must fit; the head is loaded when it
    fits (same kind, same classes), else kept new.  Returns "file" or "new"."""
    parts = {p: {k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")} for p in ("backbone", "head")}
    shapes = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items()}
    backbone = complete_state_dict(parts["backbone"], shapes)
    diff = state_dict_diff(backbone, shapes)
    if diff:
        raise ModelError(f"{path}: this trained model's backbone does not fit {arch.title} ({arch.name}): {diff}")
    model.backbone.load_state_dict(backbone)
    head_shapes = {k: tuple(v.shape) for k, v in model.head.state_dict().items()}
    if state_dict_diff(parts["head"], head_shapes):
        return "new"
    model.head.load_state_dict(parts["head"])
    return "file"


def imagenet_classifier(name: str, library: ModelLibrary | None = None) -> tuple[nn.Module, list[str]]:
    """The full pretrained ImageNet model (eval mode) and its class names, for sanity checks and demos."""
    library = library or ModelLibrary()
    arch = library.arch(name)
    model = arch.build()
    model.load_state_dict(library.load_pretrained_state(name))
    return model.eval(), list(arch.categories or [])
