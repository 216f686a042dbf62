"""The plugin contract of Transfer Learning Studio.

A plugin is a Python module (or object) registered under the entry-point group
``tlstudio.plugins``.  It implements any of the hooks below with the ``hookimpl`` marker::

    from tlstudio.api import Technique, hookimpl

    class MyTechnique(Technique):
        id, title, task = "my-technique", "My technique", "image-classification"
        def build(self, ctx): ...

    @hookimpl
    def tlstudio_techniques():
        return [MyTechnique()]

Every hook returns *descriptors* (a list of objects); the studio then calls the one the
user chose.  Each plugin's hook call is isolated: a plugin that raises or returns the
wrong type is recorded as failed (with its error) and the rest of the studio works on.
See docs/plugins.md for a complete walk-through.
"""
from __future__ import annotations

import pluggy

PROJECT = "tlstudio"
ENTRY_POINT_GROUP = "tlstudio.plugins"
#: what a plugin offers, readable without importing it: an entry point named like the plugin's,
#: pointing at a dict {hook name: [{"id": ..., "title": ..., "task": ...}]} in a light module
MANIFEST_GROUP = "tlstudio.manifests"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def tlstudio_tasks() -> list:
    """Return a list of :class:`tlstudio.core.tasks.base.Task` instances.

    A task is a kind of problem (image classification, detection, captioning, text
    classification, multi-label ...): its data, its usual loss, evaluation and results,
    prediction, the export spec, the window's words and result view.
    """


@hookspec
def tlstudio_techniques() -> list:
    """Return a list of :class:`tlstudio.core.techniques.base.Technique` instances.

    A technique is a training recipe on a task (frozen features, fine-tuning, DANN ...): an
    id, a title, the task's id, an explanation for the expert, a pydantic ``Config``, the
    callbacks it shares with other recipes and its own hooks (build, param_groups ...).
    """


@hookspec
def tlstudio_dataset_readers() -> list:
    """Return a list of :class:`tlstudio.core.data.DatasetReader` instances.

    A reader recognises a data source (a folder, a CSV, an NPZ, DICOM files ...) and turns
    it into a table of items plus a validation report.
    """


@hookspec
def tlstudio_model_sources() -> list:
    """Return a list of :class:`tlstudio.core.models.WeightSource` instances.

    A weight source says where pretrained weights can be found *offline* for the
    architectures of the catalog (a folder, an installed package ...).  It never downloads.
    """


@hookspec
def tlstudio_architectures() -> list:
    """Return a list of :class:`tlstudio.core.models.Architecture` descriptors to add to the
    model catalog (for example a timm model or a home-grown network)."""


@hookspec
def tlstudio_exporters() -> list:
    """Return a list of :class:`tlstudio.core.delivery.export.Exporter` instances (TorchScript,
    ONNX, ...)."""


@hookspec
def tlstudio_run_event(event) -> None:
    """Observe a run event (a :class:`tlstudio.core.events.Event`: RunStarted, BatchEnded,
    EpochEnded, Log, StageChanged, RunDone, RunFailed ...; ``event.to_dict()`` gives its plain
    form).  Observers must be quick; their errors never stop a run."""
