"""The one generic form builder: a pydantic model in, bounded controls out, invalid values
kept, marked inline and reported; the same builder for technique, training, augmentation."""
from __future__ import annotations

from typing import Literal

import pytest
from gui_support import type_into
from pydantic import Field
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from tlstudio.core.config import AugmentationConfig, DataConfig, TrainingConfig
from tlstudio.core.techniques.base import TechniqueConfig
from tlstudio.gui.forms import PydanticForm


class Demo(TechniqueConfig):
    depth: int = Field(3, ge=1, le=8, title="Depth", description="How many layers learn.")
    rate: float = Field(0.001, gt=0.0, le=1.0, title="Rate", description="Learning rate of the new layers.")
    share: float = Field(0.2, ge=0.0, le=0.9, title="Share")
    mode: Literal["fast", "careful"] = Field("fast", title="Mode", description="fast or careful")
    on: bool = Field(True, title="Switch")
    name: str = Field("x", title="Name")


def test_controls_follow_the_model(qtbot):
    f = PydanticForm(Demo)
    qtbot.addWidget(f)
    assert isinstance(f.editor("depth"), QSpinBox)
    assert isinstance(f.editor("rate"), QDoubleSpinBox)
    assert isinstance(f.editor("mode"), QComboBox)
    assert [f.editor("mode").itemText(i) for i in range(2)] == ["fast", "careful"]
    assert isinstance(f.editor("on"), QCheckBox) and f.editor("on").isChecked()
    assert isinstance(f.editor("name"), QLineEdit)
    tip = f.editor("depth").toolTip()
    assert "How many layers learn." in tip and "at least 1 and at most 8" in tip
    assert "more than 0" in f.editor("rate").toolTip()
    assert f.values() == {"depth": 3, "rate": 0.001, "share": 0.2, "mode": "fast", "on": True, "name": "x"}


def test_arrows_stay_in_bounds_typing_is_marked(qtbot):
    f = PydanticForm(Demo, {"depth": 7})
    qtbot.addWidget(f)
    depth = f.editor("depth")
    depth.stepBy(5)
    assert depth.value() == 8 and f.is_valid()  # arrows stop at the bound
    seen = []
    f.validityChanged.connect(seen.append)
    type_into(qtbot, depth, "12")
    assert depth.text() == "12" and not f.is_valid() and seen == [False]
    assert f.errors() == {"depth": "must be at most 8"} and f.values() is None
    assert f.problems() == ["Depth: must be at most 8"]
    assert f._error_labels["depth"].text() == "must be at most 8" and not f._error_labels["depth"].isHidden()
    assert "border" in depth.styleSheet()
    type_into(qtbot, depth, "2")
    assert f.is_valid() and seen == [False, True] and f.values()["depth"] == 2
    assert f._error_labels["depth"].isHidden() and depth.styleSheet() == ""

    rate = f.editor("rate")
    type_into(qtbot, rate, "1e-4")
    assert f.values()["rate"] == pytest.approx(1e-4)
    rate.stepBy(1)
    assert rate.value() == pytest.approx(2e-4)  # steps by the decade's leading digit
    type_into(qtbot, rate, "0")
    assert f.errors()["rate"] == "must be more than 0"
    rate.setValue(0.001)
    rate.stepBy(-2)
    assert rate.value() == pytest.approx(0.0008)


def test_nested_and_project_models(qtbot):
    d = PydanticForm(DataConfig, exclude=["options"])
    qtbot.addWidget(d)
    d.editor("split.val_fraction").setValue(0.8)
    assert d.problems() == ["Split › Validation share: must be at most 0.5"]
    d.editor("split.val_fraction").setValue(0.2)
    assert d.values()["split"]["val_fraction"] == 0.2

    t = PydanticForm(TrainingConfig, {"epochs": 3, "optimizer": "sgd"}, choices={"device": ["auto", "cpu"]})
    qtbot.addWidget(t)
    assert t.values()["epochs"] == 3 and t.values()["optimizer"] == "sgd"
    assert isinstance(t.editor("device"), QComboBox) and t.editor("device").isEditable()
    t.editor("momentum").setValue(1.0)
    assert t.errors()["momentum"] == "must be less than 1"
    a = PydanticForm(AugmentationConfig)
    qtbot.addWidget(a)
    assert a.values() == AugmentationConfig().model_dump(mode="json")


def test_the_window_survives_long_use(tmp_path):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None on every void Qt call; the
    studio's guard keeps the process alive through far more calls than None has references."""
    import subprocess
    import sys

    script = tmp_path / "long_use.py"
    script.write_text(
        "import sys\n"
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "from tlstudio.gui.app import make_app\n"
        "n = 3 * sys.getrefcount(None) + 100_000  # without the guard, None would be freed well before n\n"
        "app = make_app()\n"
        "label = QLabel()\n"
        "for i in range(n):\n"
        "    label.setText('x')\n"
        "    if i % 5000 == 0:\n"
        "        app.processEvents()\n"
        "print('alive', n)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "alive" in out.stdout, out.stderr[-2000:]


def test_settings_that_do_not_apply_are_hidden_and_words_replace_codes(qtbot):
    """Momentum only for SGD, T_0/T_mult only with warm restarts, the test-time flip only where
    training flips; "-1 layer groups" reads "all"; "not answered yet" is not "no"."""
    t = PydanticForm(TrainingConfig, {"optimizer": "adamw", "schedule": "cosine"})
    qtbot.addWidget(t)
    t.show()
    assert not t.editor("momentum").isVisible() and not t.editor("restart_epochs").isVisible()
    assert not t.editor("step_gamma").isVisible() and t.editor("warmup_epochs").isVisible()
    t.editor("optimizer").setCurrentIndex(t.editors["optimizer"].choices.index("sgd"))
    assert t.editor("momentum").isVisible() and t.values()["optimizer"] == "sgd"
    t.editor("schedule").setCurrentIndex(t.editors["schedule"].choices.index("cosine_warm_restarts"))
    assert t.editor("restart_epochs").isVisible() and t.editor("restart_mult").isVisible()
    assert t.editor("schedule").currentText() == "cosine with warm restarts"
    assert t.editor("threads").text() == "all" and t.values()["threads"] == 0

    a = PydanticForm(AugmentationConfig)
    qtbot.addWidget(a)
    a.show()
    assert a.editor("test_time_flip").isVisible()
    a.editor("horizontal_flip").setChecked(False)
    assert not a.editor("test_time_flip").isVisible() and a.values()["test_time_flip"] is True  # kept, not applied
    mirror = a.editor("mirror_safe")
    assert mirror.currentText() == "(not answered yet)" and a.values()["mirror_safe"] is None
    mirror.setCurrentIndex(2)
    assert mirror.currentText() == "No" and a.values()["mirror_safe"] is False

    from tlstudio_plugins.finetune import FineTuneConfig

    f = PydanticForm(FineTuneConfig)
    qtbot.addWidget(f)
    groups = f.editor("trainable_groups")
    assert groups.text() == "all" and f.values()["trainable_groups"] == -1
    type_into(qtbot, groups, "3")
    assert f.values()["trainable_groups"] == 3
    type_into(qtbot, groups, "all")
    assert f.values()["trainable_groups"] == -1
    type_into(qtbot, groups, "most")  # letters other than the word are refused as they are typed
    assert groups.text() == "all" and f.values()["trainable_groups"] == -1


def test_every_setting_says_what_it_changes():
    """Each field of the project's sections and of every built-in technique has a tooltip text."""
    from tlstudio.core.config import ModelConfig, SplitConfig
    from tlstudio.core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    models = [TrainingConfig, AugmentationConfig, SplitConfig, ModelConfig] + [t.Config for t in pm.techniques().values()]
    missing = [f"{m.__name__}.{n}" for m in models for n, f in m.model_fields.items() if not (f.description or "").strip()]
    assert not missing, missing
