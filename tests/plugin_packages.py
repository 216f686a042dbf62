"""Build and pip-install small plugin packages (real distributions with entry points)
into a target folder, offline."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def pip_install(src: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-index", "--no-build-isolation", "--target", str(target), str(src)],
                   check=True, capture_output=True, text=True)


def make_plugin_package(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Write a one-module package whose entry point in ``tlstudio.plugins`` is the module."""
    pkg = root / dist
    pkg.mkdir(parents=True)
    (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "1.0"
        [tool.setuptools]
        py-modules = ["{module}"]
        [project.entry-points."tlstudio.plugins"]
        {entry_name or dist} = "{module}"
    """))
    return pkg


BROKEN_IMPORT = """
import this_module_does_not_exist_anywhere  # the plugin's author forgot a dependency
"""

RAISING_HOOK = """
from tlstudio.api import hookimpl

@hookimpl
def tlstudio_techniques():
    raise RuntimeError("licence server unreachable")
"""

WRONG_TYPE = """
from tlstudio.api import hookimpl

@hookimpl
def tlstudio_techniques():
    return ["not a technique"]
"""

GOOD_OBSERVER = """
from tlstudio.api import hookimpl
EVENTS = []

@hookimpl
def tlstudio_run_event(event):
    EVENTS.append(event["kind"])
"""


def install_bad_plugins(tmp: Path) -> Path:
    """Three broken third-party plugins, pip-installed into ``tmp/site``; returns that folder."""
    site = tmp / "site"
    for dist, mod, src in (("tl-broken-import", "tl_broken_import", BROKEN_IMPORT),
                           ("tl-raising-hook", "tl_raising_hook", RAISING_HOOK),
                           ("tl-wrong-type", "tl_wrong_type", WRONG_TYPE)):
        pip_install(make_plugin_package(tmp / "src", dist, mod, src), site)
    return site
