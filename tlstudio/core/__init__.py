"""The studio core: everything but the window. Never imports Qt.

These are the public names a plugin may use (``from tlstudio.core import ...``); the
public modules ``tlstudio.core.blocks``, ``.features``, ``.metrics``, ``.data`` and
``.models`` hold the shared building blocks.  Names load lazily so that importing the
core (for example to read a project file) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    # plugin contract
    "hookimpl": "hookspecs", "hookspec": "hookspecs",
    "Technique": "technique", "TechniqueConfig": "technique",
    "ImageClassificationTechnique": "classification", "ImageData": "classification",
    # project
    "Project": "config", "load_project": "config", "project_from_dict": "config",
    # running
    "train": "engine", "resume": "engine", "RunControl": "engine", "RunContext": "engine",
    "select_device": "engine", "seed_everything": "engine",
    "Run": "runs", "list_runs": "runs", "open_run": "runs",
    "PluginManager": "plugins", "get_plugin_manager": "plugins",
    # exports and reports
    "Exporter": "export", "ExportError": "export", "export_run": "export", "html_report": "report",
    # errors
    "StudioError": "errors", "ProjectError": "errors", "DataError": "errors", "ModelError": "errors",
    "PluginError": "errors", "RunStopped": "errors",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'tlstudio.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
