"""Plugins in the window: broken third-party packages show as failed with their error while
the rest works; a plugin's own panel that raises is that plugin's failure, not the window's;
enable/disable is remembered; --safe-mode switches third-party plugins off."""
from __future__ import annotations

import importlib

import pytest
from gui_support import close_window, open_window, sample_copy
from plugin_packages import install_bad_plugins, make_plugin_package, pip_install

PANEL_PLUGIN = """
from pydantic import Field
from tlstudio.api import Technique, TechniqueConfig, hookimpl


class PanelConfig(TechniqueConfig):
    strength: float = Field(0.5, ge=0.0, le=1.0, title="Strength", description="How strong.")


class BrokenPanel(Technique):
    id = "broken-panel"
    title = "Technique with a broken panel"
    explanation = "Trains a new head and the network, with a custom settings panel that raises."
    Config = PanelConfig

    def config_panel(self, config, parent=None):
        raise RuntimeError("panel exploded")

    def build(self, ctx):
        return ctx.build_classifier()


@hookimpl
def tlstudio_techniques():
    return [BrokenPanel()]
"""


@pytest.fixture(scope="module")
def third_party_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugins")
    site = install_bad_plugins(tmp)
    pip_install(make_plugin_package(tmp / "src", "tl-broken-panel", "tl_broken_panel", PANEL_PLUGIN), site)
    return site


@pytest.fixture
def with_site(third_party_site, monkeypatch):
    monkeypatch.syspath_prepend(str(third_party_site))
    importlib.invalidate_caches()
    return third_party_site


def test_broken_plugins_are_listed_as_failed_and_the_rest_works(qtbot, tmp_path, with_site):
    w = open_window(qtbot, sample_copy(tmp_path / "proj"), wait_models=False)
    tech = w.show_page("technique")
    ids = [tech.list.item(i).data(0x0100) for i in range(tech.list.count())]
    assert {"fine-tuning", "frozen-features", "broken-panel"} <= set(ids)
    assert "failed" in tech.plugin_note.text() and "tl-broken-import" in tech.plugin_note.text()

    dlg = w.plugins_dialog()
    assert dlg.status_of("tl-broken-import") == "failed"
    assert dlg.status_of("tl-raising-hook") == "failed"
    assert dlg.status_of("tl-wrong-type") == "failed"
    assert dlg.status_of("fine-tuning") == "loaded"
    row = next(r for r in range(dlg.table.rowCount()) if dlg.table.item(r, 1).text() == "tl-broken-import")
    assert "this_module_does_not_exist_anywhere" in dlg.table.item(row, 6).text()
    dlg.table.selectRow(row)
    assert dlg.details.isVisibleTo(dlg) and not dlg.details.details.isVisibleTo(dlg)  # traceback behind Details
    dlg.details.toggle.setChecked(True)
    assert "Traceback" in dlg.details.details.toPlainText()
    dlg.close()

    # a custom panel that raises: shown as that plugin's failure, the generated panel instead
    tech.select("broken-panel")
    assert tech.panel_fail.isVisibleTo(tech) and "panel exploded" in tech.panel_fail.message.text()
    assert tech.form is not None and "strength" in tech.form.editors
    assert w.studio.plugins.plugins["tl-broken-panel"].status == "failed"
    assert "Details" == tech.panel_fail.toggle.text() and "panel exploded" in tech.panel_fail.details.toPlainText()
    tech.select("fine-tuning")
    assert not tech.panel_fail.isVisibleTo(tech)
    assert w.page("train").train_btn.isEnabled()  # the built-ins still train
    close_window(qtbot, w)


def test_disable_is_remembered_and_safe_mode(qtbot, tmp_path, with_site):
    from tlstudio.core.settings import load_settings

    w = open_window(qtbot, sample_copy(tmp_path / "proj"), wait_models=False)
    dlg = w.plugins_dialog()
    dlg.set_enabled("frozen-features", False)
    dlg.apply()
    assert "frozen-features" in load_settings().disabled_plugins
    qtbot.waitUntil(lambda: w.studio.plugins is not None and "frozen-features" not in w.studio.techniques(),
                    timeout=60_000)
    qtbot.waitUntil(lambda: dlg.status_of("frozen-features") == "disabled", timeout=10_000)
    dlg.close()
    close_window(qtbot, w)

    w2 = open_window(qtbot, sample_copy(tmp_path / "proj2"), safe_mode=True, wait_models=False)
    pm = w2.studio.plugins
    assert pm.safe_mode
    assert "frozen-features" not in w2.studio.techniques()  # still disabled: remembered
    assert pm.plugins["tl-broken-import"].status == "disabled"  # third-party: off in safe mode
    assert "broken-panel" not in w2.studio.techniques() and "fine-tuning" in w2.studio.techniques()
    dlg2 = w2.plugins_dialog()
    assert dlg2.status_of("tl-broken-panel") == "disabled (safe mode)"
    dlg2.close()
    close_window(qtbot, w2)
