"""Every kind of broken third-party plugin the studio must survive, as sources of real
distributions (pip-installed by the tests, found through their entry points)."""
from __future__ import annotations

from pathlib import Path

from plugin_packages import make_plugin_package

_TECH = """
from pydantic import Field
from tlstudio.api import Technique, TechniqueConfig, hookimpl
"""

PLUGINS = {
    # dist: (module, entry point name, source)
    "tl-aaa-shadow": ("tl_aaa_shadow", "fine-tuning", _TECH + """
class Shadow(Technique):
    id = "fine-tuning"          # a built-in's id, from a package whose name sorts first
    title = "Not the real fine-tuning"
    def build(self, ctx):
        raise RuntimeError("SHADOW technique used instead of the built-in")

@hookimpl
def tlstudio_techniques():
    return [Shadow()]
"""),
    "tl-dup-id": ("tl_dup_id", "tl-dup-id", _TECH + """
class Dup(Technique):
    id = "frozen-features"
    title = "A second frozen-features"
    def build(self, ctx):
        raise RuntimeError("DUPLICATE technique used instead of the built-in")

@hookimpl
def tlstudio_techniques():
    return [Dup()]
"""),
    "tl-raising-id": ("tl_raising_id", "tl-raising-id", _TECH + """
class RaisingId(Technique):
    title = "Its id raises"
    @property
    def id(self):
        raise RuntimeError("id server down")
    def build(self, ctx):
        return ctx.build_classifier()

@hookimpl
def tlstudio_techniques():
    return [RaisingId()]
"""),
    "tl-list-id": ("tl_list_id", "tl-list-id", _TECH + """
class ListId(Technique):
    id = ["not", "hashable"]
    title = "Its id is a list"
    def build(self, ctx):
        return ctx.build_classifier()

@hookimpl
def tlstudio_techniques():
    return [ListId()]
"""),
    "tl-raising-task": ("tl_raising_task", "tl-raising-task", _TECH + """
class RaisingTask(Technique):
    id = "raising-task"
    title = "Its task raises"
    @property
    def task(self):
        raise RuntimeError("task lookup failed")
    def build(self, ctx):
        return ctx.build_classifier()

@hookimpl
def tlstudio_techniques():
    return [RaisingTask()]
"""),
    "tl-no-build": ("tl_no_build", "tl-no-build", _TECH + """
class NoBuild(Technique):
    id = "no-build"
    title = "Forgot build()"
    explanation = "Its author forgot to write build()."

@hookimpl
def tlstudio_techniques():
    return [NoBuild()]
"""),
    "tl-bad-default": ("tl_bad_default", "tl-bad-default", _TECH + """
class BadConfig(TechniqueConfig):
    alpha: float = Field(5.0, gt=0.0, le=2.0, title="Alpha", description="Its default breaks its own bound.")

class BadDefault(Technique):
    id = "bad-default"
    title = "Default out of bounds"
    explanation = "Its setting's default is above the setting's own maximum."
    Config = BadConfig
    def build(self, ctx):
        return ctx.build_classifier()

@hookimpl
def tlstudio_techniques():
    return [BadDefault()]
"""),
    "tl-exit-observer": ("tl_exit_observer", "tl-exit-observer", """
import sys
from tlstudio.api import hookimpl

@hookimpl
def tlstudio_run_event(event):
    if event["kind"] == "epoch":
        sys.exit(3)
"""),
    "tl-exit-hook": ("tl_exit_hook", "tl-exit-hook", """
import sys
from tlstudio.api import hookimpl

@hookimpl
def tlstudio_techniques():
    sys.exit("a plugin that ends the program")
"""),
    "tl-greedy-reader": ("tl_greedy_reader", "tl-greedy-reader", """
from tlstudio.api import hookimpl
from tlstudio.api import DatasetReader

class Greedy(DatasetReader):
    id = "greedy"
    title = "Claims everything"
    def can_read(self, path):
        return True
    def scan(self, path, options):
        raise RuntimeError("greedy reader cannot read " + str(path))

@hookimpl
def tlstudio_dataset_readers():
    return [Greedy()]
"""),
    "tl-sniff-raises": ("tl_sniff_raises", "tl-sniff-raises", """
from tlstudio.api import hookimpl
from tlstudio.api import DatasetReader

class BadSniff(DatasetReader):
    id = "bad-sniff"
    title = "Its can_read raises"
    def can_read(self, path):
        raise OSError("sniffing failed")

@hookimpl
def tlstudio_dataset_readers():
    return [BadSniff()]
"""),
    "tl-slow-import": ("tl_slow_import", "tl-slow-import", """
import time
time.sleep(2.5)  # a heavy import (a framework, a network drive)
from tlstudio.api import hookimpl

@hookimpl
def tlstudio_run_event(event):
    pass
"""),
}


def write_sources(root: Path) -> list[Path]:
    return [make_plugin_package(root, dist, module, source, entry_name=entry)
            for dist, (module, entry, source) in PLUGINS.items()]
