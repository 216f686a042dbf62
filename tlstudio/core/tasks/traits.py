"""What a task is like, readable without importing it (and torch with it): its data (images or
texts; a class per item, or annotations such as boxes or captions), the window's words for it,
and which of the studio's tools apply to it.

The window and the command line decide by these traits, never by comparing task names: a
third-party task that says ``abilities = {"leakage-check", "augmentation"}`` gets the leakage
check and the augmentation settings as the built-in image classification does.  The traits of
a task come from its plugin's manifest (entry-point group ``tlstudio.manifests``, item of
``tlstudio_tasks``) before the plugins are loaded, and from the :class:`~.base.Task` itself
once they are (:func:`task_traits`).

Abilities (what the studio offers for the task's data)
=======================  ======================================================================
``augmentation``         image augmentation settings and the "may images be mirrored?" question
``flips``                flips in training and at test (the report says which)
``target-domain``        a target domain (images of another site) and the shift measure
``leakage-check``        the same or near-identical image in two splits (hash, SSIM, features)
``recipe-search``        the search over frozen / fine-tuning / progressive recipes
``technique-advice``     the technique proposed from the training-set size and smallest class
``model-ranking``        the Model page ranks the image networks for the data read
``time-estimate``        the Technique page measures and estimates the training time
``grad-cam``             Grad-CAM heat maps of predictions
=======================  ======================================================================
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..manifests import manifest_items

log = logging.getLogger(__name__)
ABILITIES = ("augmentation", "flips", "target-domain", "leakage-check", "recipe-search", "technique-advice",
             "model-ranking", "time-estimate", "grad-cam")


@dataclass(frozen=True)
class AnnotationKind:
    """What the images of an annotated task carry instead of one class each."""

    name: str  # "box"
    plural: str  # "boxes": also the key of an item's meta that holds them
    classes: bool  # each annotation names a class (boxes do, captions do not)
    without: str  # an image that has none, in words ("no boxes (background only)")
    empty_use: str  # "" : such an image is left out; else what it is used as ("background-only images")


ANNOTATION_KINDS = {
    "box": AnnotationKind("box", "boxes", True, "no boxes (background only)", "background-only images"),
    "caption": AnnotationKind("caption", "captions", False, "no captions", ""),
}


@dataclass(frozen=True)
class TaskTraits:
    """A task's description (see the module docstring)."""

    id: str
    title: str = ""
    #: the Data page's words: what the data may be and what is checked
    description: str = ""
    #: one item ("image", "text") and what prediction takes ("images", "texts")
    item: str = "image"
    inputs: str = "images"
    #: what each image carries instead of one class: "" (a class), "box", "caption"
    annotation: str = ""
    #: the data in a few words, for lists ("images in classes"); what a model of it does (model cards)
    noun: str = "images"
    purpose: str = ""
    #: the source field's hint, the source box's title, the examples tab, the Predict page's view
    sources: str = ""
    data_title: str = "Images"
    examples_title: str = "Examples"
    prediction_title: str = "Selected image"
    #: the plain recipe the negative-transfer check and the baselines train ("" : the run's own)
    plain_technique: str = ""
    abilities: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        object.__setattr__(self, "abilities", frozenset(self.abilities or ()))

    def can(self, ability: str) -> bool:
        return ability in self.abilities

    @property
    def texts(self) -> bool:
        """Its items are texts (text models, text columns of a table, no image tools)."""
        return self.item == "text"

    @property
    def annotation_kind(self) -> AnnotationKind | None:
        return ANNOTATION_KINDS.get(self.annotation)

    def manifest(self) -> dict:
        """The manifest item (plain JSON-able data) that says these traits."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) != (f.default if f.default is not dataclasses.MISSING else frozenset())}
        if "abilities" in out:
            out["abilities"] = sorted(out["abilities"])
        return {"id": self.id, **out}

    @classmethod
    def from_manifest(cls, item: Mapping[str, Any]) -> "TaskTraits":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(item).items() if k in known})


def unknown_task(task_id: str) -> TaskTraits:
    """The traits of a task no installed plugin describes: images, no tool beyond training."""
    return TaskTraits(id=task_id, title=task_id, noun=task_id)


def manifest_traits() -> dict[str, TaskTraits]:
    """Task id -> traits from every installed manifest (:func:`~tlstudio.core.manifests.manifest_items`)."""
    out = {}
    for item in manifest_items("tlstudio_tasks"):
        try:
            out[item["id"]] = TaskTraits.from_manifest(item)
        except (TypeError, ValueError) as e:  # an item that is not traits: the task itself says once loaded
            log.warning("the manifest item of the task %s is not valid: %s", item.get("id"), e)
    return out


def task_traits(task_id: str, plugins: Any = None) -> TaskTraits:
    """The traits of ``task_id``: the loaded task's when ``plugins`` (a loaded plugin manager)
    has it, else its manifest's, else :func:`unknown_task`."""
    if plugins is not None:
        try:
            task = plugins.tasks().get(task_id)
        except Exception:  # noqa: BLE001 - a manager that failed: the manifests still describe the task
            task = None
        if task is not None:
            return task.traits
    return manifest_traits().get(task_id) or unknown_task(task_id)


def table_task(table: Any, default: str = "image-classification") -> str:
    """The task a data table was read for (its reader's)."""
    return (getattr(table, "task", None) or getattr(getattr(table, "reader", None), "task", None)
            or getattr(getattr(table, "report", None), "task", None) or default)


# --- the built-in tasks ----------------------------------------------------------------------------
IMAGE_CLASSIFICATION = TaskTraits(
    id="image-classification", title="Image classification", noun="images in classes",
    purpose="sorts an image into one of its classes",
    description="Choose your images: a folder with one sub-folder per class, a CSV table (path, label), a "
                "MedMNIST-style .npz or DICOM files. Every image is opened and checked; unusable ones are listed with "
                "the reason and left out.",
    sources="a folder of class folders, a .csv, an .npz, or DICOM files",
    data_title="Images", examples_title="Images per class",
    prediction_title="Selected image and its Grad-CAM heat map", plain_technique="fine-tuning",
    abilities=frozenset(ABILITIES))
TEXT_CLASSIFICATION = TaskTraits(
    id="text-classification", title="Text classification", item="text", inputs="texts", noun="texts",
    purpose="sorts a text into one of its classes",
    description="Choose your texts: a CSV or TSV table with a header row, a JSON-lines file, or 'sentence<TAB>label' "
                "files (one, or a folder of them). Choose the text and label columns below; empty texts, unknown "
                "labels and duplicates are listed with the row and left out.",
    sources="a .csv / .tsv table, a .jsonl file, or sentence<TAB>label files",
    data_title="Texts", examples_title="Texts per class", prediction_title="Selected text")
DETECTION = TaskTraits(
    id="detection", title="Object detection", annotation="box", noun="images with boxes",
    purpose="finds and labels objects in an image",
    description="Choose your annotated images: a COCO instances JSON, a Pascal VOC folder or a CSV of boxes "
                "(image,x1,y1,x2,y2,label). Boxes outside the image, zero-area boxes and unknown labels are listed "
                "and left out.",
    sources="a COCO .json, a Pascal VOC folder, or a .csv of boxes",
    data_title="Annotated images", examples_title="Images with boxes",
    prediction_title="Selected image with the detected boxes", abilities=frozenset({"augmentation", "flips"}))
CAPTIONING = TaskTraits(
    id="captioning", title="Image captioning", annotation="caption", noun="images with captions",
    purpose="writes a caption for an image",
    description="Choose your captioned images: a COCO captions JSON (or a Karpathy split) or a CSV (image,caption). "
                "Missing images and empty captions are listed and left out.",
    sources="a COCO captions .json or a .csv of captions",
    data_title="Captioned images", examples_title="Images with captions",
    prediction_title="Selected image and its caption", abilities=frozenset({"augmentation"}))
BUILTIN_TASKS = (IMAGE_CLASSIFICATION, DETECTION, CAPTIONING, TEXT_CLASSIFICATION)
