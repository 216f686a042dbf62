"""The plugin author's guide is true: its example package builds, installs with pip
(offline), is discovered through its entry point, and trains."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, quick_project
from plugin_packages import pip_install

EXAMPLE = REPO / "docs" / "examples" / "tlstudio-mixup"


def test_example_plugin_installs_and_trains(tmp_path, tiny_digits, monkeypatch):
    site = tmp_path / "site"
    pip_install(EXAMPLE, site)
    assert (site / "tlstudio_mixup.py").exists()
    monkeypatch.syspath_prepend(str(site))

    from tlstudio.core.engine import train
    from tlstudio.core.plugins import PluginManager

    pm = PluginManager()
    assert pm.plugins["mixup"].status == "loaded" and not pm.plugins["mixup"].builtin
    events: list[dict] = []
    res = train(quick_project(tiny_digits, technique="mixup", epochs=2), on_event=events.append,
                runs_dir=tmp_path / "runs", plugins=pm)
    assert res["status"] == "done", res
    series = [e["series"]["mix_weight"] for e in events if e["kind"] == "epoch"]
    assert len(series) == 2 and all(0.5 <= s <= 1.0 for s in series)

    # and from the command line, as the guide shows
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-m", "tlstudio.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    row = next(r for r in json.loads(out) if r["name"] == "mixup")
    assert row["status"] == "loaded" and row["provides"]["tlstudio_techniques"] == ["mixup"]


def test_example_settings_errors_name_the_field(tmp_path, tiny_digits, monkeypatch):
    site = tmp_path / "site"
    pip_install(EXAMPLE, site)
    monkeypatch.syspath_prepend(str(site))
    from tlstudio.core.engine import train
    from tlstudio.core.plugins import PluginManager

    p = quick_project(tiny_digits, technique="mixup")
    p.technique.settings = {"alpha": 7}
    res = train(p, runs_dir=tmp_path / "runs", plugins=PluginManager())
    assert res["status"] == "failed" and "technique.settings.alpha" in res["message"]
    assert Path(EXAMPLE / "README.md").exists()
