"""Domain shift in the window, on real digits (MNIST against scikit-learn's digits, another
set of writers and a coarser scan; 32 px, a few dozen images): the Data page measures MMD²
with its p-value, explains it and plots both domains; after a DANN run the Evaluate page
shows the shift before and after adaptation."""
from __future__ import annotations

import numpy as np
from conftest import make_digit_folder, quick_project
from gui_support import close_window, open_window


def sklearn_digit_folder(root, classes=(0, 1), per_class=20):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in classes:
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(d.target == c)[:per_class]:
            Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), "L").save(root / str(c) / f"sk{c}-{i}.png")
    return root


def test_measure_shift_on_the_data_page_and_dann_before_after(qtbot, tmp_path):
    from tlstudio.core.engine import train

    source = make_digit_folder(tmp_path / "mnist", classes=(0, 1), per_class=20)
    target = sklearn_digit_folder(tmp_path / "sk", per_class=20)
    p = quick_project(source, technique="dann", epochs=1, lr=2e-3)
    p.model.image_size = 32
    p.augmentation.preset = "none"
    p.technique.settings = {"shift_images": 20}
    p.data.target_source = str(target)
    project = p.save(tmp_path / "project.toml")

    w = open_window(qtbot, project, wait_models=False)
    page = w.show_page("data")
    panel = page.shift_panel
    assert panel.button.isEnabled()  # source and target chosen
    panel.permutations.setValue(100)
    panel.max_images.setValue(30)
    panel.button.click()
    qtbot.waitUntil(lambda: panel.result is not None or panel.error.isVisibleTo(panel), timeout=120_000)
    assert panel.result is not None, panel.error.message.text()
    r = panel.result
    assert r["n_source"] == r["n_target"] == 30 and r["permutations"] == 100
    assert r["p_value"] < 0.05 and r["shifted"]  # two sets of writers and scanners: a real shift
    numbers = panel.view.numbers.text()
    assert f"{r['mmd2']:.4f}" in numbers and "p-value" in numbers and "shifted" in numbers
    assert "real domain shift" in panel.view.explanation.text()
    assert {k: len(v) for k, v in panel.view.points.items()} == {"source": 30, "target": 30}
    assert "PCA" in panel.view.plot.getPlotItem().titleLabel.text
    panel.view.colour_by.setCurrentIndex(1)  # by class: one series per domain and class (0 and 1)
    series = dict(it.name().rsplit(" (", 1) for it in panel.view.plot.getPlotItem().listDataItems())
    assert set(series) == {"source 0", "source 1", "target 0", "target 1"}
    assert sum(int(series[f"source {c}"].rstrip(")")) for c in "01") == 30

    # no target: the button says why it is off
    page._set_target("")
    assert not panel.button.isEnabled() and "target domain" in panel.status.text()
    page._set_target(str(target))

    # a DANN run records the shift before and after adaptation: Evaluate shows both
    res = train(w.studio.run_project(), runs_dir=w.studio.runs_dir())
    assert res["status"] == "done", res
    w.studio.runsChanged.emit()
    ev = w.show_page("evaluate")
    ev.load_run(res["run_dir"])
    view = ev.shift_view
    assert view is not None and ev.tabs.tabText(ev.tabs.indexOf(view)) == "Domain shift"
    import json
    from pathlib import Path

    shift = json.loads((Path(res["run_dir"]) / "domain_shift.json").read_text())
    text = view.summary.text()
    assert f"{shift['before']['mmd2']:.4f}" in text and f"{shift['after']['mmd2']:.4f}" in text
    assert "before adaptation" in text and "after adaptation" in text
    assert sum(len(v) for v in view.after.points.values()) == shift["after"]["n_source"] + shift["after"]["n_target"]
    close_window(qtbot, w)
