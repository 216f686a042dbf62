"""From a project to what runs it: the technique with its validated settings, and the
validation metric that picks the best epoch."""
from __future__ import annotations

from ..config import Project, format_validation_error
from ..errors import ProjectError


def monitor_of(project: Project, technique, task) -> tuple[str, str]:
    """The validation metric that picks the best epoch, and whether higher is better."""
    name = project.training.monitor
    if name == "auto":
        name = technique.default_monitor or task.default_monitor
    if name == "last":  # keep the last epoch (small validation sets make "best" a coin toss)
        return "last", "max"
    if not name.startswith("val_"):
        name = "val_" + name
    return name, ("min" if name.endswith("loss") else "max")


def technique_for(project: Project, plugins):
    """A fresh instance of the project's technique and its validated settings."""
    from pydantic import ValidationError

    proto = plugins.technique(project.technique.id)
    if proto.task != project.task:
        raise ProjectError(f"Technique '{proto.id}' is for {proto.task}, but the project's task is {project.task}.")
    tech = proto.fresh()
    try:
        cfg = tech.make_config(project.technique.settings)
    except ValidationError as e:
        where = str(project.path) if project.path else "project"
        raise ProjectError(format_validation_error(e, where, prefix="technique.settings")) from None
    return tech, cfg
