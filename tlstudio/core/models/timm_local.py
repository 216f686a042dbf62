"""timm models whose weights are already on this computer join the catalog.

Any of the ~1,600 timm ImageNet classifiers becomes usable when its weights are present
locally, without a download:

- a file in the user's models folder named after the timm model, with or without its
  pretrained tag: ``resnet50.a1_in1k.safetensors``, ``convnext_nano.pth``, ... (also in a
  ``timm/`` subfolder);
- a timm model folder as the Hugging Face hub stores it (``config.json`` with an
  ``architecture`` key and ``model.safetensors``/``pytorch_model.bin``), in the models
  folder or in the local Hugging Face cache (``models--timm--<name>``).

Each becomes an :class:`Architecture` named ``timm/<name>`` (the hub's own id), with timm's
preprocessing and timm's own layer grouping (``group_matcher``, the grouping timm uses for
layer-wise learning-rate decay), merged into at most eight groups.  A file named after a
model of the built-in catalog (``resnet50.pth``) stays that model's.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from torch import nn

from .architectures import CATALOG, Architecture, Preprocessing
from .classifier import LayerGroup

log = logging.getLogger(__name__)

PREFIX = "timm/"
_EXTS = (".safetensors", ".pth", ".pt", ".bin")
_FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")
MAX_GROUPS = 8


@dataclass(eq=False)
class LocalTimmArchitecture(Architecture):
    """A timm architecture whose weights were found at ``local_path``."""

    local_path: Path | None = None
    timm_name: str = ""


def _timm_name(stem: str) -> str | None:
    """``stem`` when it names a timm ImageNet classifier with a single linear classifier."""
    try:
        import timm
        import timm.models as tm

        if not stem or not timm.is_model(stem):
            return None
        cfg = tm.get_pretrained_cfg(stem)
    except Exception:  # noqa: BLE001 - a name timm cannot parse is simply not a timm model
        return None
    if cfg is None or not isinstance(cfg.classifier, str) or not cfg.num_classes:
        return None
    return stem


def _module_of(model: nn.Module, param_name: str) -> tuple[str, nn.Module]:
    prefix = param_name.rpartition(".")[0]
    return prefix, (model.get_submodule(prefix) if prefix else model)


def timm_layer_groups(model: nn.Module, max_groups: int = MAX_GROUPS) -> tuple[list[LayerGroup], nn.Module]:
    """timm's coarse parameter groups (stem, stages/blocks, the rest) of a model whose
    classifier is removed, merged into at most ``max_groups`` consecutive groups; each
    group lists its leaf modules (BatchNorm layers included, so freezing keeps their
    statistics) and loose parameters (class tokens, position embeddings)."""
    from timm.models import group_parameters

    names = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [names[k] for k in sorted(names)]
    if len(ordered) > max_groups:  # merge neighbours: first and last keep their meaning
        inner = ordered[1:-1]
        per = -(-len(inner) // (max_groups - 2))
        ordered = [ordered[0], *(sum(inner[i:i + per], []) for i in range(0, len(inner), per)), ordered[-1]]
    params = dict(model.named_parameters())
    groups = []
    for i, pnames in enumerate(ordered):
        modules: list[nn.Module] = []
        loose = []
        for pn in pnames:
            _, mod = _module_of(model, pn)
            has_children = any(True for c in mod.children() for _ in c.parameters())
            if mod is model or has_children:
                loose.append(params[pn])
            elif not any(m is mod for m in modules):
                modules.append(mod)
        name = "stem" if i == 0 else ("top" if i == len(ordered) - 1 and len(ordered) > 2 else f"blocks{i}")
        groups.append(LayerGroup(name, modules, loose))
    info = getattr(model, "feature_info", None)
    cam = None
    if info:
        try:
            last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
            cam = model.get_submodule(last["module"])
        except Exception:  # noqa: BLE001
            cam = None
    if cam is None:
        cam = next((m for g in reversed(groups) for m in reversed(g.modules)), model)
    return groups, cam


def make_timm_architecture(timm_name: str, path: Path, categories: list[str] | None = None) -> LocalTimmArchitecture:
    import timm
    import timm.models as tm

    cfg = tm.get_pretrained_cfg(timm_name)
    arch_name, _ = tm.split_model_name_tag(timm_name)
    with_meta = partial(timm.create_model, timm_name, pretrained=False)
    import torch

    with torch.device("meta"):
        params = sum(p.numel() for p in with_meta().parameters())
    mean = tuple(cfg.mean) if len(cfg.mean) == 3 else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if len(cfg.std) == 3 else (0.229, 0.224, 0.225)
    return LocalTimmArchitecture(
        name=PREFIX + timm_name, title=f"{timm_name} (timm)", family=f"timm:{arch_name}", source="timm",
        params_m=round(params / 1e6, 2), gflops=None, imagenet_top1=None,
        preprocessing=Preprocessing(mean, std, int(cfg.input_size[-1]), bool(cfg.fixed_input_size)),
        weight_files=[Path(path).name] if Path(path).is_file() else [],
        categories=categories if cfg.num_classes == 1000 else None,
        builder=with_meta, layer_groups=timm_layer_groups, classifier=cfg.classifier,
        local_path=Path(path), timm_name=timm_name,
    )


def _folder_model(folder: Path) -> str | None:
    try:
        if not any((folder / f).is_file() for f in _FOLDER_FILES):
            return None
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _timm_name(str(cfg.get("architecture", ""))) if isinstance(cfg, dict) else None


def find_local_timm(models_folder: Path | None = None, hf_cache: Path | None = None) -> dict[str, Path]:
    """timm model name -> weights (file or folder) present on this computer."""
    from ..settings import load_settings
    from .sources import _subdirs, hf_hub_cache

    found: dict[str, Path] = {}
    models = Path(models_folder) if models_folder else load_settings().models_path()
    for folder in (models, models / "timm"):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.is_file() and p.suffix in _EXTS:
                stem = p.name[: -len(p.suffix)]
                if stem in CATALOG:
                    continue
                name = _timm_name(stem)
                if name and name not in found:
                    found[name] = p
            elif p.is_dir():
                name = _folder_model(p)
                if name and name not in found:
                    found[name] = p
    for repo in _subdirs(hf_cache or hf_hub_cache()):
        if not repo.name.startswith("models--timm--"):
            continue
        for snap in sorted(_subdirs(repo / "snapshots"), key=lambda s: s.stat().st_mtime, reverse=True):
            name = _folder_model(snap)
            if name:
                found.setdefault(name, snap)
                break
    return found


def local_timm_architectures(models_folder: Path | None = None, hf_cache: Path | None = None) -> list[LocalTimmArchitecture]:
    """An architecture for every timm model whose weights are present (see the module docstring)."""
    imagenet = next(iter(CATALOG.values())).categories
    out = []
    for name, path in find_local_timm(models_folder, hf_cache).items():
        try:
            out.append(make_timm_architecture(name, path, imagenet))
        except Exception as e:  # noqa: BLE001 - one odd model never hides the others
            log.warning("timm model %s at %s skipped: %s", name, path, e)
    return out
