"""A task written entirely outside the studio: the multi-label example plugin
(docs/examples/tlstudio-multilabel) pip-installs, is discovered, trains on real MNIST digits
(two per image; labels "contains 3" and "contains 7"), reports per-label AUC, sensitivity and
specificity at thresholds chosen on validation, predicts, exports and shows its own view."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, mnist_arrays, quick_project
from plugin_packages import pip_install

EXAMPLE = REPO / "docs" / "examples" / "tlstudio-multilabel"


def write_pairs(root, n: int = 240, seed: int = 0):
    """``n`` images of two real handwritten digits side by side and a CSV of their labels."""
    from PIL import Image

    X, y = mnist_arrays()
    rng = np.random.default_rng(seed)
    by_digit = {d: np.flatnonzero(y == d) for d in range(10)}
    (root / "img").mkdir(parents=True)
    rows = ["path,labels"]
    for i in range(n):
        # about 40 % of the images show a 3, about 40 % a 7 (some both, some neither)
        digits = [int(rng.choice([3, 7])) if rng.random() < 0.4 else int(rng.choice([0, 1, 2, 4, 5, 6, 8, 9]))
                  for _ in range(2)]
        pair = np.concatenate([X[rng.choice(by_digit[d])] for d in digits], axis=1)
        Image.fromarray(pair, "L").save(root / "img" / f"{i:04d}.png")
        rows.append(f"img/{i:04d}.png," + ";".join(sorted({str(d) for d in digits if d in (3, 7)})))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel")
    site = root / "site"
    pip_install(EXAMPLE, site)
    csv_file = write_pairs(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.setenv("TLSTUDIO_HOME", str(root / "home"))
        from tlstudio.core.engine import train
        from tlstudio.core.plugins import PluginManager

        pm = PluginManager()
        p = quick_project(csv_file, technique="multilabel-fine-tuning", epochs=4, lr=2e-3)
        p.task = "multi-label-classification"
        p.model.image_size = 56
        events: list = []
        res = train(p, on_event=events.append, runs_dir=root / "runs", plugins=pm)
        yield {"res": res, "events": events, "pm": pm, "root": root, "site": site, "csv": csv_file}


@pytest.mark.slow
def test_the_task_plugin_is_found_and_trains_with_per_label_results(multilabel_run):
    pm, res = multilabel_run["pm"], multilabel_run["res"]
    assert pm.plugins["multilabel"].status == "loaded" and not pm.plugins["multilabel"].builtin
    assert "multi-label-classification" in pm.tasks() and "multilabel-fine-tuning" in pm.techniques()
    assert res["status"] == "done", res
    test = res["test"]
    assert set(test["per_label"]) == {"3", "7"}
    for name, pl in test["per_label"].items():
        assert pl["auc"] > 0.8, (name, pl)  # chance is 0.5
        assert 0.0 <= pl["threshold"] <= 1.0 and pl["sensitivity"] is not None and pl["specificity"] is not None
    assert res["test_auc"] == pytest.approx(np.mean([pl["auc"] for pl in test["per_label"].values()]))
    from pathlib import Path

    report = (Path(res["run_dir"]) / "report.md").read_text()
    assert "| 3 |" in report and "| 7 |" in report and "Youden" in report


@pytest.mark.slow
def test_predict_and_the_exported_package_agree_on_the_labels_found(multilabel_run, tmp_path):
    from tlstudio.core.delivery.export import export_run
    from tlstudio.core.delivery.package import ModelPackage
    from tlstudio.core.delivery.predict import Predictor

    res, pm = multilabel_run["res"], multilabel_run["pm"]
    images = sorted((multilabel_run["csv"].parent / "img").glob("*.png"))[:12]
    pred = Predictor.from_run(res["run_dir"], plugins=pm)
    direct = pred.predict_paths(images)
    assert all(set(r["probabilities"]) == {"3", "7"} for r in direct)
    export_run(res["run_dir"], "onnx", tmp_path / "pkg", plugins=pm)
    pkg = ModelPackage.open(tmp_path / "pkg", plugins=pm)
    packaged = pkg.predict_paths(images)
    assert [r["labels"] for r in packaged] == [r["labels"] for r in direct]
    for a, b in zip(direct, packaged):
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4


@pytest.mark.slow
def test_the_task_brings_its_own_result_view(multilabel_run, qtbot):
    task = multilabel_run["pm"].task("multi-label-classification")
    view = task.result_view(multilabel_run["res"]["run_dir"])
    qtbot.addWidget(view)
    assert view.table.rowCount() == 2
    assert {view.table.item(r, 0).text() for r in range(2)} == {"3", "7"}
