"""Plugins: built-ins through entry points; broken third-party plugins are isolated."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import quick_project
from plugin_packages import GOOD_OBSERVER, install_bad_plugins, make_plugin_package, pip_install

from tlstudio.core.plugins import PluginManager
from tlstudio.core.settings import load_settings


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory):
    return install_bad_plugins(tmp_path_factory.mktemp("plugins"))


@pytest.fixture
def with_site(bad_site, monkeypatch):
    monkeypatch.syspath_prepend(str(bad_site))
    import importlib

    importlib.invalidate_caches()
    return bad_site


def test_builtins_come_through_entry_points():
    pm = PluginManager()
    ts = pm.techniques()
    assert {"fine-tuning", "frozen-features"} <= set(ts)
    assert all(pm.plugins[n].builtin for n in ("fine-tuning", "frozen-features"))
    assert {r.id for r in pm.readers()} >= {"folder", "csv", "npz", "dicom"}


def test_broken_plugins_are_recorded_and_the_rest_works(with_site):
    pm = PluginManager()
    pm.collect_all()
    p = pm.plugins
    assert p["tl-broken-import"].status == "failed"
    assert "this_module_does_not_exist_anywhere" in p["tl-broken-import"].errors[0]
    assert p["tl-raising-hook"].status == "failed"
    assert "licence server unreachable" in p["tl-raising-hook"].errors[0]
    assert p["tl-wrong-type"].status == "failed" and "expected Technique" in p["tl-wrong-type"].errors[0]
    assert not p["tl-broken-import"].builtin
    assert {"fine-tuning", "frozen-features"} <= set(pm.techniques())


def test_cli_lists_failures_and_training_still_works(with_site, tmp_path, tiny_digits):
    env = dict(os.environ, PYTHONPATH=str(with_site))
    out = subprocess.run([sys.executable, "-m", "tlstudio.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    for name, needle in (("tl-broken-import", "this_module_does_not_exist_anywhere"),
                         ("tl-raising-hook", "licence server unreachable")):
        assert rows[name]["status"] == "failed" and needle in " ".join(rows[name]["errors"])
    assert rows["fine-tuning"]["status"] == "loaded"
    text = subprocess.run([sys.executable, "-m", "tlstudio.cli", "plugins"], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert "failed" in text and "tl-raising-hook" in text
    r = subprocess.run([sys.executable, "-m", "tlstudio.cli", "train", "--data", str(tiny_digits), "--model",
                        "mobilenet_v2", "--image-size", "32", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                        "--device", "cpu", "--json"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "done"


def test_disable_is_remembered_and_safe_mode(with_site):
    pm = PluginManager()
    pm.set_enabled("tl-raising-hook", False)
    assert "tl-raising-hook" in load_settings().disabled_plugins
    pm2 = PluginManager()
    assert pm2.plugins["tl-raising-hook"].status == "disabled"
    pm2.set_enabled("tl-raising-hook", True)
    assert PluginManager().plugins["tl-raising-hook"].status == "loaded"
    safe = PluginManager(safe_mode=True)
    assert all(p.status == "disabled" for p in safe.plugins.values() if not p.builtin)
    assert safe.plugins["fine-tuning"].status == "loaded"


def test_observer_plugin_sees_events_and_a_raising_one_cannot_stop_a_run(tmp_path, tiny_digits, monkeypatch):
    site = tmp_path / "site"
    pip_install(make_plugin_package(tmp_path / "src", "tl-observer", "tl_observer", GOOD_OBSERVER), site)
    pip_install(make_plugin_package(tmp_path / "src", "tl-bad-observer", "tl_bad_observer", """
        from tlstudio.api import hookimpl
        @hookimpl
        def tlstudio_run_event(event):
            raise ValueError("observer bug")
    """), site)
    monkeypatch.syspath_prepend(str(site))
    from tlstudio.core.engine import train

    pm = PluginManager()
    res = train(quick_project(tiny_digits, epochs=1), runs_dir=tmp_path / "runs", plugins=pm)
    assert res["status"] == "done"
    import tl_observer

    assert tl_observer.EVENTS[0] == "start" and tl_observer.EVENTS[-1] == "done"
    assert pm.plugins["tl-bad-observer"].status == "failed"
