"""Predicting with an exported model package alone (no project, no run, no checkpoint).

    pkg = ModelPackage.open("exports/digits-onnx")
    results = pkg.predict_paths(["scan1.png", "more_scans/"])

The package's files are checked against its ``SHA256SUMS`` first: a changed model file is
refused with a plain message.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .errors import StudioError
from .io import sha256_file


def is_package(path: str | Path) -> bool:
    """True for a folder made by ``tlstudio export``."""
    p = Path(path) / "package.json"
    if not p.is_file():
        return False
    try:
        from .export import PACKAGE_FORMAT

        return json.loads(p.read_text(encoding="utf-8")).get("format") == PACKAGE_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def verify_checksums(folder: Path) -> None:
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        raise StudioError(f"{folder}: SHA256SUMS is missing, so the package cannot be checked. Export it again.")
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        h, _, name = line.partition("  ")
        f = folder / name
        if not f.exists():
            raise StudioError(f"{folder}: the file {name} listed in SHA256SUMS is missing.")
        if sha256_file(f) != h:
            raise StudioError(f"{folder}: {name} was changed after the export (its SHA-256 differs from SHA256SUMS). "
                              "Use the original package or export the run again.")


class ModelPackage:
    """An exported package, loaded with the runtime it was exported for."""

    def __init__(self, folder: Path, spec: dict, runner, task):
        self.folder = folder
        self.spec = spec
        self.run_model = runner
        self.task_plugin = task  # the Task that reads this package's inputs

    @classmethod
    def open(cls, folder: str | Path, plugins=None, verify: bool = True) -> "ModelPackage":
        from .plugins import get_plugin_manager

        folder = Path(folder)
        if not is_package(folder):
            raise StudioError(f"{folder}: not an exported model package (no package.json from `tlstudio export`).")
        spec = json.loads((folder / "package.json").read_text(encoding="utf-8"))
        if verify:
            verify_checksums(folder)
        plugins = plugins or get_plugin_manager()
        exporter = plugins.exporters().get(spec.get("exporter", ""))
        if exporter is None:
            raise StudioError(f"{folder}: the package was exported as '{spec.get('exporter')}', and no installed "
                              f"exporter reads it (available: {', '.join(sorted(plugins.exporters())) or 'none'}).")
        exporter.check_available()
        runner = exporter.load(folder / spec["model_file"], spec)
        return cls(folder, spec, runner, _task_for_package(folder, spec, plugins))

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.get("labels") or [])

    @property
    def task(self) -> str:
        return self.spec.get("task", "")

    def predict(self, inputs: list) -> list[dict]:
        return self.task_plugin.predict_package(self, list(inputs))

    def predict_paths(self, paths: Iterable[str | Path]) -> list[dict]:
        from .predict import expand_paths

        return self.predict([str(p) for p in expand_paths(paths)])

    def write_csv(self, results: list[dict], path: str | Path, top_k: int = 3) -> Path:
        from .predict import write_predictions_csv

        return write_predictions_csv(results, self.class_names, path, top_k)


def _task_for_package(folder: Path, spec: dict, plugins):
    """The task of the package (it knows how to read the package's inputs)."""
    task = plugins.tasks().get(spec.get("task", ""))
    if task is None:
        raise StudioError(f"{folder}: the package is for the task '{spec.get('task')}', which no installed plugin "
                          "offers here: install the plugin that made it to predict with it.")
    return task.fresh()
