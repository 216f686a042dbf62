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

from ..errors import StudioError
from ..io import sha256_file


#: files that operating systems leave in folders they show; never loaded, never required in SHA256SUMS
_OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def is_package(path: str | Path) -> bool:
    """True for a folder made by ``tlstudio export`` (or one whose package.json is damaged,
    so that opening it says so instead of taking it for something else)."""
    p = Path(path) / "package.json"
    if not p.is_file():
        return False
    try:
        from .export import PACKAGE_FORMAT

        spec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not isinstance(spec, dict) or spec.get("format") == PACKAGE_FORMAT


def read_package_json(folder: Path) -> dict:
    """package.json, or a plain error naming it when it is damaged."""
    from .export import PACKAGE_FORMAT

    p = folder / "package.json"
    try:
        spec = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StudioError(f"{p}: damaged (not valid JSON: {e.msg} at line {e.lineno}). Use the original package or "
                          "export the run again.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StudioError(f"{p}: cannot be read ({e}). Use the original package or export the run again.") from None
    if not isinstance(spec, dict) or spec.get("format") != PACKAGE_FORMAT:
        raise StudioError(f"{p}: not the description of a model package made by `tlstudio export`.")
    return spec


def _listed_name(folder: Path, name: str, line: int) -> str:
    """A file name of SHA256SUMS, refused when it would lead outside the package folder."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise StudioError(f"{folder}: SHA256SUMS line {line} names '{name}', outside the package folder: refused.")
    return "/".join(parts)


def read_checksums(folder: Path) -> dict[str, str]:
    """SHA256SUMS as {relative file name: sha256}; a plain error when it is missing or malformed."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise StudioError(f"{folder}: SHA256SUMS is missing, so the package cannot be checked. Export it again.")
    try:
        text = sums.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StudioError(f"{folder}: SHA256SUMS cannot be read ({e}). Use the original package.") from None
    listed: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        h, sep, name = line.partition("  ")
        h = h.strip().lower()
        if not sep or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise StudioError(f"{folder}: SHA256SUMS line {n} is not 'SHA256  FILE': the package cannot be checked.")
        listed[_listed_name(folder, name.lstrip("*"), n)] = h
    if not listed:
        raise StudioError(f"{folder}: SHA256SUMS lists no files, so the package cannot be checked. Use the original "
                          "package or export the run again.")
    return listed


def verify_checksums(folder: Path) -> dict[str, str]:
    """Every file of the package listed in SHA256SUMS and matching it, none missing, none
    added, none leading outside the folder (pip's hash-checking mode).  Returns the list."""
    folder = Path(folder)
    listed = read_checksums(folder)
    root = folder.resolve()
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if (p.is_file() or p.is_symlink()) and p.name != "SHA256SUMS" and p.name not in _OS_LITTER}
    extra = sorted(present - set(listed))
    if extra:
        raise StudioError(f"{folder}: {extra[0]} is not listed in SHA256SUMS"
                          + (f" (nor are {len(extra) - 1} more files)" if len(extra) > 1 else "")
                          + ": a file was added after the export. Use the original package or export the run again.")
    for name, h in listed.items():
        f = folder / name
        if not f.is_file():
            raise StudioError(f"{folder}: the file {name} listed in SHA256SUMS is missing.")
        if not f.resolve().is_relative_to(root):
            raise StudioError(f"{folder}: {name} leads outside the package folder (a link): refused.")
        if sha256_file(f) != h:
            raise StudioError(f"{folder}: {name} was changed after the export (its SHA-256 differs from SHA256SUMS). "
                              "Use the original package or export the run again.")
    return listed


def model_path(folder: Path, spec: dict, listed: dict[str, str] | None) -> Path:
    """The package's model file: a file inside the folder, listed in SHA256SUMS when checked."""
    name = spec.get("model_file")
    if not isinstance(name, str) or not name:
        raise StudioError(f"{folder}: package.json names no model file.")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()) or Path(name).is_absolute():
        raise StudioError(f"{folder}: package.json's model file '{name}' lies outside the package folder: refused.")
    if listed is not None and Path(name).as_posix() not in listed:
        raise StudioError(f"{folder}: the model file {name} is not listed in SHA256SUMS: refused.")
    if not path.is_file():
        raise StudioError(f"{folder}: the model file {name} is missing.")
    return path


class ModelPackage:
    """An exported package, loaded with the runtime it was exported for."""

    def __init__(self, folder: Path, spec: dict, runner, task):
        self.folder = folder
        self.spec = spec
        self.run_model = runner
        self.task_plugin = task  # the Task that reads this package's inputs

    @classmethod
    def open(cls, folder: str | Path, plugins=None, verify: bool = True) -> "ModelPackage":
        from ..plugins import get_plugin_manager

        folder = Path(folder)
        if not is_package(folder):
            raise StudioError(f"{folder}: not an exported model package (no package.json from `tlstudio export`).")
        listed = verify_checksums(folder) if verify else None
        spec = read_package_json(folder)
        model_file = model_path(folder, spec, listed)
        plugins = plugins or get_plugin_manager()
        exporter = plugins.exporters().get(spec.get("exporter", ""))
        if exporter is None:
            raise StudioError(f"{folder}: the package was exported as '{spec.get('exporter')}', and no installed "
                              f"exporter reads it (available: {', '.join(sorted(plugins.exporters())) or 'none'}).")
        exporter.check_available()
        try:
            runner = exporter.load(model_file, spec)
        except StudioError:
            raise
        except Exception as e:  # noqa: BLE001 - a model file its runtime cannot read
            from ..failures import plain_message

            raise StudioError(f"{model_file}: the model could not be loaded by {exporter.runtime or exporter.id} "
                              f"({plain_message(e)}). Use the original package or export the run again.") from None
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
        from ..data.table import expand_paths

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
