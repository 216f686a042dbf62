"""Every kind of broken plugin, installed as a real distribution beside the studio (all at
once, as a careless or hostile machine would have them): each is listed as failed with a
message that names it and what is wrong, the built-ins win every name they own, and the
studio trains, reads data and checks itself on."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from broken_plugins import PLUGINS, write_sources
from faultlib import assert_plain, cli_process, env_with


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broken-plugins")
    sources = write_sources(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-index", "--no-build-isolation", "--target", str(tmp / "site"), *map(str, sources)],
                   check=True, capture_output=True, text=True)
    return tmp / "site"


@pytest.fixture(scope="module")
def env(site):
    return env_with(PYTHONPATH=str(site))


@pytest.fixture(scope="module")
def listed(env):
    o = cli_process("plugins", "--json", env=env)
    assert o.code == 0, o.err
    return {r["name"]: r for r in json.loads(o.out)}, o


# plugin row -> words its error must hold
EXPECTED_FAILURES = {
    "fine-tuning (tl-aaa-shadow)": "named 'fine-tuning', like the plugin of tlstudio (built in): refused",
    "tl-dup-id": "offers the technique 'frozen-features', which frozen-features (built in) already provides: refused",
    "tl-raising-id": "reading a technique it returned raised RuntimeError: id server down",
    "tl-list-id": "whose id is ['not', 'hashable'] (list); it must be a non-empty text",
    "tl-raising-task": "reading a technique it returned raised RuntimeError: task lookup failed",
    "tl-no-build": "technique 'no-build' does not implement build(), so it cannot train",
    "tl-bad-default": "technique 'bad-default': the default of its setting 'alpha' (5.0) breaks its own bounds",
    "tl-exit-hook": "tlstudio_techniques raised SystemExit: it tried to end the program",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FAILURES))
def test_each_broken_plugin_is_listed_as_failed_with_what_is_wrong(listed, name):
    rows, _ = listed
    assert rows[name]["status"] == "failed", rows[name]
    assert any(EXPECTED_FAILURES[name] in e for e in rows[name]["errors"]), rows[name]["errors"]


def test_the_builtins_keep_their_names_and_the_listing_is_plain(listed, env):
    rows, o = listed
    assert rows["fine-tuning"]["builtin"] and rows["fine-tuning"]["status"] == "loaded"
    assert "fine-tuning" in rows["fine-tuning"]["provides"]["tlstudio_techniques"]
    assert "frozen-features" in rows["frozen-features"]["provides"]["tlstudio_techniques"]
    assert rows["fine-tuning (tl-aaa-shadow)"]["status"] == "failed"
    assert_plain(o)
    table = cli_process("plugins", env=env)
    assert table.code == 0
    assert_plain(table)
    assert "tl-raising-id" in table.out and "failed" in table.out


def test_a_slow_plugin_is_named_with_its_load_time(listed, env):
    rows, o = listed
    slow = rows["tl-slow-import"]
    assert slow["status"] == "loaded" and slow["load_seconds"] >= 2.5
    assert any("slow to load" in n for n in slow["notes"])
    assert "plugin tl-slow-import (tl-slow-import 1.0): slow to load" in o.err  # every command says which one
    assert not any(r["notes"] for r in rows.values() if r["builtin"])  # the studio's own imports are not blamed


@pytest.mark.slow
def test_training_data_and_doctor_work_with_all_of_them_installed(tmp_path, env, tiny_digits):
    run = cli_process("train", "--data", tiny_digits, "--technique", "fine-tuning", "--model", "mobilenet_v2",
                      "--image-size", "32", "--epochs", "2", "--device", "cpu", "--runs-dir", tmp_path / "runs",
                      "--json", env=env)
    assert run.code == 0, run.err[-3000:]
    final = run.json()
    assert final["status"] == "done"  # the built-in fine-tuning trained (the shadow's build raises), and the
    # observer that calls sys.exit at every epoch did not end the run
    assert_plain(run)
    data = cli_process("validate-data", tiny_digits, "--json", env=env)  # the greedy reader claims everything
    assert data.code == 0, data.err
    rep = data.json()
    assert rep["reader"] == "folder" and rep["counts"] == {"0": 40, "1": 40, "7": 40}
    doctor = cli_process("doctor", "--quick", "--json", env=env)
    plugins = next(c for c in json.loads(doctor.out) if c["name"] == "Plugins")
    assert plugins["status"] == "warn" and "Reinstall" not in plugins["message"] + (plugins.get("fix") or "")
    assert "tl-aaa-shadow" in plugins["message"] or "fine-tuning (tl-aaa-shadow)" in plugins["message"]


@pytest.mark.slow
def test_observer_and_reader_failures_are_recorded_in_process(tmp_path, site, monkeypatch, tiny_digits):
    """The run's own plugin manager marks the observer that exits and the reader that raises as failed."""
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    from conftest import quick_project

    from tlstudio.core.data import read_data
    from tlstudio.core.engine import train
    from tlstudio.core.plugins import PluginManager

    pm = PluginManager()
    table = read_data(tiny_digits, "auto", {}, pm.readers())
    assert table.reader_id == "folder" and len(table) == 120
    greedy = pm.plugins["tl-greedy-reader"]
    assert greedy.status == "failed" and "the next reader was tried" in greedy.errors[-1]
    assert "sniffing failed" in " ".join(pm.plugins["tl-sniff-raises"].errors) or \
        "can_read raised OSError" in " ".join(pm.plugins["tl-sniff-raises"].errors)
    res = train(quick_project(tiny_digits, epochs=1, batch_size=32), runs_dir=tmp_path / "runs", plugins=pm)
    assert res["status"] == "done"
    assert pm.plugins["tl-exit-observer"].status == "failed"
    assert "SystemExit" in pm.plugins["tl-exit-observer"].errors[0]


@pytest.mark.parametrize("tid, words", [
    ("no-build", "Technique 'no-build' cannot be used: technique 'no-build' does not implement build()"),
    ("bad-default", "technique.settings.alpha: Input should be less than or equal to 2"),
])
def test_an_unusable_technique_is_refused_naming_plugin_and_method(tmp_path, env, tiny_digits, tid, words):
    o = cli_process("train", "--data", tiny_digits, "--technique", tid, "--epochs", "1", "--device", "cpu",
                    "--runs-dir", tmp_path / "runs", env=env)
    assert_plain(o)
    assert o.code == 1 and words in o.err, o.err
    if tid == "no-build":
        assert "(plugin tl-no-build)" in o.err
    assert not (tmp_path / "runs").exists()


def test_safe_mode_switches_them_off_and_keeps_the_builtins(env):
    o = cli_process("--safe-mode", "plugins", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(o.out)}
    assert rows["fine-tuning"]["status"] == "loaded" and rows["fine-tuning"]["builtin"]
    third = [r for r in rows.values() if not r["builtin"]]
    assert len(third) == len(PLUGINS)
    assert all(r["status"] in ("disabled", "failed") for r in third)  # the shadow stays refused by name


@pytest.mark.slow
def test_the_window_says_why_train_is_disabled(qtbot, tmp_path, site, monkeypatch):
    from gui_support import close_window, open_window, sample_copy

    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    w = open_window(qtbot, sample_copy(tmp_path / "proj"), wait_models=False, timeout=300_000)
    studio = w.studio
    assert studio.plugins.plugins["tl-no-build"].status == "failed"
    assert "no-build" not in studio.techniques()
    studio.set_technique("no-build")
    train = w.show_page("train")
    assert not train.train_btn.isEnabled()
    assert any("does not implement build()" in p and "tl-no-build" in p for p in studio.problems()), studio.problems()
    studio.set_technique("bad-default", settings={})
    assert any("Technique settings" in p and "2" in p for p in studio.problems()), studio.problems()
    assert not train.train_btn.isEnabled()
    studio.set_technique("fine-tuning", settings={})
    assert not [p for p in studio.problems() if p.startswith("Technique")]
    close_window(qtbot, w)
