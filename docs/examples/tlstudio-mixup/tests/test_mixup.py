"""The plugin's own test: it is discovered, validates its settings and trains."""
from pathlib import Path

import pytest


def test_discovered_through_entry_points():
    from tlstudio.api import PluginManager

    assert "mixup" in PluginManager().techniques()


def test_settings_are_validated():
    from pydantic import ValidationError

    from tlstudio_mixup import MixupFineTuning

    with pytest.raises(ValidationError):
        MixupFineTuning().make_config({"alpha": 5})


def test_trains_on_images(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSTUDIO_HOME", str(tmp_path / "home"))
    from tlstudio.api import Project, train

    p = Project()
    p.data.source = str(Path(__file__).parent / "digits")  # put a few class folders of images here
    if not Path(p.data.source).exists():
        pytest.skip("no sample images beside the test")
    p.technique.id = "mixup"
    p.model.image_size = 64
    p.training.epochs = 1
    result = train(p, runs_dir=tmp_path / "runs")
    assert result["status"] == "done"
