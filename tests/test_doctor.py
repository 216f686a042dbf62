"""`tlstudio doctor`: passes on a working installation, and says in plain words what is wrong
on a broken one (exit code non-zero)."""
from __future__ import annotations

import json

from tlstudio.cli import main


def _checks(capsys, *args) -> tuple[int, list[dict]]:
    rc = main(["doctor", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def test_doctor_passes_here(capsys):
    rc, checks = _checks(capsys)
    by = {c["name"]: c for c in checks}
    assert rc == 0, [c for c in checks if c["status"] == "fail"]
    for name in ("Python", "Packages", "PyTorch", "Devices", "Qt (window)", "Plugins", "Models", "Folders", "Export"):
        assert name in by, name
        assert by[name]["status"] in ("ok", "warn")
    assert "mobilenet_v2" in by["Models"]["message"]
    assert "fine-tuning" in by["Plugins"]["message"] and "onnx" in by["Plugins"]["message"]


def test_doctor_names_an_unwritable_runs_folder(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the runs folder should be")
    monkeypatch.setenv("TLSTUDIO_RUNS_DIR", str(blocker / "runs"))
    rc = main(["doctor", "--quick"])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"FAIL  Folders: The runs folder {blocker / 'runs'} cannot be written (Not a directory; set by" in out
    assert "TLSTUDIO_RUNS_DIR" in out and "what to do: Choose a folder you can write" in out
    assert "1 problem(s) found." in out


def test_doctor_says_when_the_qt_platform_plugin_cannot_load(capsys, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")
    rc, checks = _checks(capsys, "--quick")
    qt = next(c for c in checks if c["name"] == "Qt (window)")
    assert rc == 1 and qt["status"] == "fail"
    assert "The Qt platform plugin 'no-such-platform' could not be loaded, so the window cannot open." in qt["message"]
    assert "offscreen" in qt["fix"] and "unset it" in qt["fix"]


def test_doctor_fails_without_any_pretrained_weights(capsys, monkeypatch):
    """Only the user's models folder, and it is empty: nothing can be trained from a pretrained network."""
    from tlstudio.core.models import UserFolderSource
    from tlstudio.core.plugins import PluginManager

    pm = PluginManager()
    monkeypatch.setattr(pm, "model_sources", lambda: [UserFolderSource()])
    from tlstudio.core.analysis.doctor import check_models

    c = check_models(pm)
    assert c.status == "fail" and "no pretrained weights found on this computer" in c.message
    assert "tlstudio import-weights" in c.fix
