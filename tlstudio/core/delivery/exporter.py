"""The exporter contract: a plugin (hook ``tlstudio_exporters``) that writes a model to a
file and runs that file again in its own runtime.  TorchScript and ONNX are built in
(``plugins/exporters.py``); :func:`tlstudio.core.delivery.export.export_run` does the rest."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import StudioError

Runner = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


class ExportError(StudioError):
    """An export could not be made or did not match the PyTorch model."""


class Exporter:
    """Base class of an exporter plugin.

    Subclasses set ``id`` ("onnx"), ``title``, ``file_name`` (inside the package) and
    ``runtime`` (what runs the file), and implement :meth:`export` and :meth:`load`.
    """

    id: str = ""
    title: str = ""
    file_name: str = "model"
    runtime: str = ""
    description: str = ""

    def check_available(self) -> None:
        """Raise :class:`ExportError` in plain words when a package this exporter needs is missing."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that make and run the file (for the model card)."""
        return {}

    def export(self, model, example_inputs: tuple, spec: dict, path: Path) -> None:
        """Write ``model`` (eval mode, fp32, CPU) to ``path``.  ``example_inputs`` is a tuple
        of tensors with a batch of two; dim 0 of every input and output must stay dynamic.
        ``spec["inputs"]`` / ``spec["outputs"]`` name them."""
        raise NotImplementedError

    def load(self, path: Path, spec: dict) -> Runner:
        """A function that runs the exported file: list of numpy inputs -> list of numpy outputs."""
        raise NotImplementedError

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Exporter {self.id}>"


def flatten_outputs(out: Any) -> list:
    """A model's output (a tensor, tuple/list or dict of them) as a flat list of tensors."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten_outputs(o)]
    raise ExportError(f"The model returned a {type(out).__name__}; an exported model must return tensors.")
