"""Exports end to end: each image technique's trained model exported as ONNX and TorchScript,
checked against PyTorch on the run's real validation images, packaged with a model card,
and predicted from the package alone; the run's HTML report.  One short run per technique
(real MNIST digits, real ImageNet MobileNetV2, 64 px, CPU) serves every test here."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_digit_folder, quick_project

from tlstudio.cli import main
from tlstudio.core.engine import train
from tlstudio.core.errors import StudioError
from tlstudio.core.delivery.export import PARITY_TOLERANCE, ExportError, export_run
from tlstudio.core.delivery.package import ModelPackage, is_package
from tlstudio.core.plugins import PluginManager
from tlstudio.core.delivery.predict import Predictor

TECHNIQUES = ("frozen-features", "fine-tuning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{technique: run folder}: one short run per image technique, in a home of their own."""
    root = tmp_path_factory.mktemp("export-runs")
    data = make_digit_folder(root / "digits", classes=(0, 1, 7), per_class=30)
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLSTUDIO_HOME", str(root / "home"))
        for tech in TECHNIQUES:
            p = quick_project(data, technique=tech, epochs=1, batch_size=16, threads=2)
            res = train(p, runs_dir=root / "runs", plugins=PluginManager())
            assert res["status"] == "done", res
            runs[tech] = res["run_dir"]
    return {"runs": runs, "data": data}


def test_builtin_exporters_come_through_the_hook():
    ex = PluginManager().exporters()
    assert {"onnx", "torchscript"} <= set(ex)
    assert ex["onnx"].file_name.endswith(".onnx")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("tech", TECHNIQUES)
def test_export_round_trip_parity_and_package(trained, tmp_path, tech, fmt):
    run_dir = trained["runs"][tech]
    out = tmp_path / f"pkg-{tech}-{fmt}"
    res = export_run(run_dir, fmt, out, n_inputs=12)
    par = res["parity"]
    # checked on real validation images of the run, in a batch of all and a batch of one (dynamic batch)
    n_val = sum(json.loads(open(f"{run_dir}/data.json").read())["split_counts"]["val"].values())
    assert par["split"] == "val" and par["n_inputs"] == min(12, n_val) > 2
    assert par["batch_sizes"] == [par["n_inputs"], 1]
    assert 0.0 <= par["max_abs_diff"] <= PARITY_TOLERANCE
    assert is_package(out)
    names = {p.name for p in out.iterdir()}
    assert {"package.json", "labels.json", "labels.txt", "preprocessing.json", "model_card.md", "model_card.json",
            "SHA256SUMS"} <= names
    spec = json.loads((out / "package.json").read_text())
    assert spec["labels"] == ["0", "1", "7"] and spec["dynamic_batch"] and spec["technique"] == tech
    pre = json.loads((out / "preprocessing.json").read_text())
    assert pre["size"] == [64, 64] and len(pre["mean"]) == 3
    # the model card: data and splits, metrics with intervals, use and limits, config, versions, hashes
    card = (out / "model_card.md").read_text()
    for section in ("## Intended use", "## Limitations", "## Data and splits", "## Test metrics (95% confidence intervals)",
                    "## Run configuration", "## Library versions", "## File hashes (SHA-256)"):
        assert section in card
    assert re.search(r"\| Accuracy \| \d\.\d{3} \| \d\.\d{3}–\d\.\d{3} \|", card)
    assert re.search(r"\| AUC \| \d\.\d{3} \| \d\.\d{3}–\d\.\d{3} \|", card)
    cj = json.loads((out / "model_card.json").read_text())
    model_file = spec["model_file"]
    assert cj["file_hashes_sha256"][model_file] == res["files"][model_file]
    assert cj["metrics"]["confidence_intervals_95"]["auc"] is not None
    sums = (out / "SHA256SUMS").read_text()
    assert f"  {model_file}\n" in sums and "  model_card.md\n" in sums
    # recorded in the run, for the window and the report
    exports = json.loads(open(f"{run_dir}/exports.json").read())["exports"]
    assert any(e["package"] == str(out) and e["format"] == fmt for e in exports)

    # predictions from the package alone equal the run's own (PyTorch) predictions
    images = sorted((trained["data"] / "7").glob("*.png"))[:6] + sorted((trained["data"] / "1").glob("*.png"))[:6]
    pkg = ModelPackage.open(out, plugins=PluginManager())
    got = pkg.predict_paths(images)
    ref = Predictor.from_run(run_dir, plugins=PluginManager()).predict_paths(images)
    assert [r["predicted"] for r in got] == [r["predicted"] for r in ref]
    for g, r in zip(got, ref):
        assert max(abs(g["probabilities"][c] - r["probabilities"][c]) for c in r["probabilities"]) < 1e-4


def test_cli_export_and_predict_from_the_package_alone(trained, tmp_path, capsys):
    run_dir = trained["runs"]["fine-tuning"]
    out = tmp_path / "package"
    assert main(["export", run_dir, "--format", "onnx", "--out", str(out), "--json", "--inputs", "8"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["format"] == "onnx" and res["max_abs_diff"] <= 1e-4 and res["n_inputs"] == 8
    # move the package away from everything: no project, no run, no checkpoint next to it
    alone = tmp_path / "elsewhere" / "pkg"
    shutil.copytree(out, alone)
    shutil.rmtree(out)
    moved_run = tmp_path / "gone"
    shutil.move(run_dir, moved_run)
    try:
        with open(moved_run / "test_predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        refs = [r["ref"] for r in rows]
        pred_csv = tmp_path / "pred.csv"
        assert main(["predict", str(alone), *refs, "--csv", str(pred_csv)]) == 0
        with open(pred_csv, newline="") as f:
            got = {r["input"]: r["predicted"] for r in csv.DictReader(f)}
        # the same classes the run itself gave its test images
        assert [got[r["ref"]] for r in rows] == [r["predicted"] for r in rows]
    finally:
        shutil.move(moved_run, run_dir)


def test_parity_failure_is_loud_and_leaves_nothing(trained, tmp_path):
    """An exporter with a real bug (it exports the model in training mode, so BatchNorm uses
    batch statistics) is caught by the parity check on real images, and no package is left."""
    from tlstudio.api import hookimpl
    from tlstudio_plugins.exporters import TorchScriptExporter

    class TrainModeTorchScript(TorchScriptExporter):
        id = "torchscript-trainmode"

        def export(self, model, example_inputs, spec, path):
            model.train()
            try:
                super().export(model, example_inputs, spec, path)
            finally:
                model.eval()

    class Plugin:
        @hookimpl
        def tlstudio_exporters(self):
            return [TrainModeTorchScript()]

    pm = PluginManager()
    pm.register(Plugin(), "buggy-exporter")
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match=r"Parity check failed: .* differs from the PyTorch model by up to"):
        export_run(trained["runs"]["fine-tuning"], "torchscript-trainmode", out, plugins=pm, n_inputs=8)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]


def test_export_errors_are_plain(trained, tmp_path):
    run_dir = trained["runs"]["frozen-features"]
    with pytest.raises(ExportError, match="Unknown export format 'tflite'. Available: onnx, torchscript"):
        export_run(run_dir, "tflite", tmp_path / "x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.docx").write_text("keep me")
    with pytest.raises(ExportError, match="not empty and holds no exported package"):
        export_run(run_dir, "onnx", busy)
    assert (busy / "thesis.docx").read_text() == "keep me"


def test_a_changed_package_is_refused(trained, tmp_path):
    out = tmp_path / "pkg"
    export_run(trained["runs"]["frozen-features"], "torchscript", out, n_inputs=4)
    blob = bytearray((out / "model.torchscript.pt").read_bytes())
    blob[-100] ^= 0xFF
    (out / "model.torchscript.pt").write_bytes(bytes(blob))
    with pytest.raises(StudioError, match="model.torchscript.pt was changed after the export"):
        ModelPackage.open(out)


def test_html_report_has_charts_and_tables(trained, tmp_path, capsys):
    run_dir = trained["runs"]["fine-tuning"]
    assert main(["report", run_dir, "--out", str(tmp_path / "r.html"), "--json"]) == 0
    path = json.loads(capsys.readouterr().out)["report"]
    html = open(path, encoding="utf-8").read()
    pics = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    titles = [t for t, _ in pics]
    assert "Loss" in titles and "Validation metrics" in titles and "Learning rate" in titles
    assert any(t.startswith("Confusion matrix") for t in titles)
    import base64

    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for _, b in pics)
    for text in ("Test results", "95% CI", "Per class", "sensitivity (95% CI)", "Data and splits", "Epochs",
                 "Run configuration", "Environment"):
        assert text in html
    # the core function the window's Runs page calls
    from tlstudio.core.delivery.report import html_report

    assert html_report(run_dir) == Path(run_dir).resolve() / "report.html"


def test_bootstrap_intervals_agree_with_the_metrics():
    from tlstudio.core.analysis.metrics import _auc_np, auc_score, bootstrap_ci, classification_cis

    rng = np.random.default_rng(1)
    for k in (2, 4):
        y = rng.integers(0, k, 300)
        logits = rng.normal(size=(300, k)) + 1.5 * np.eye(k)[y]
        p = torch.tensor(logits).softmax(1).numpy()
        assert _auc_np(p, y) == pytest.approx(auc_score(torch.tensor(p), torch.tensor(y)), abs=1e-6)
        ci = classification_cis(p, y, [str(i) for i in range(k)], n_boot=500)
        auc = _auc_np(p, y)
        assert ci["auc"][0] < auc < ci["auc"][1]
        assert ci["accuracy"][0] < (p.argmax(1) == y).mean() < ci["accuracy"][1]
    # more cases, narrower intervals
    y = rng.integers(0, 2, 2000)
    s = 1 / (1 + np.exp(-(y + rng.normal(size=2000))))  # overlapping classes: AUC about 0.76
    p = np.stack([1 - s, s], 1)
    auc = lambda a, b: _auc_np(a, b)  # noqa: E731
    wide = bootstrap_ci(auc, p[:100], y[:100], n_boot=300)
    narrow = bootstrap_ci(auc, p, y, n_boot=300)
    assert narrow[0] < _auc_np(p, y) < narrow[1]
    assert narrow[1] - narrow[0] < 0.6 * (wide[1] - wide[0])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exporters_take_several_inputs_and_a_dynamic_sequence(tmp_path, fmt):
    """What a text technique hands over: (token ids, attention mask), batch and sequence length
    dynamic.  Exported with length 7, checked at length 11 and batch 5."""
    from tlstudio.core.delivery.export import check_parity

    class TinyText(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 8)
            self.out = torch.nn.Linear(8, 2)

        def forward(self, ids, mask):
            m = mask.unsqueeze(-1).float()
            return self.out((self.emb(ids) * m).sum(1) / m.sum(1).clamp(min=1))

    torch.manual_seed(0)
    model = TinyText().eval()
    spec = {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits"],
            "dynamic_axes": {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}}
    ex = PluginManager().exporters()[fmt]
    ids, mask = torch.randint(0, 50, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    ex.export(model, (ids, mask), spec, tmp_path / ex.file_name)
    runner = ex.load(tmp_path / ex.file_name, spec)
    ids, mask = torch.randint(0, 50, (5, 11)), torch.ones(5, 11, dtype=torch.long)
    mask[:, 8:] = 0
    res = check_parity(model, runner, (ids, mask))
    assert res["batch_sizes"] == [5, 1] and res["max_abs_diff"] <= 1e-5


def test_report_of_a_failed_run_without_results(trained, tmp_path):
    """A run that failed before its test evaluation still gets a report, saying so."""
    from tlstudio.core.delivery.report import html_report

    run = tmp_path / "failed-run"
    shutil.copytree(trained["runs"]["frozen-features"], run)
    for f in ("final.json", "evaluation_test.json", "test_predictions.csv"):
        (run / f).unlink()
    (run / "status.json").write_text(json.dumps({"status": "failed", "message": "The loss became nan at epoch 1",
                                                 "pid": 1}))
    html = html_report(run).read_text(encoding="utf-8")
    assert "<span class='bad'>failed</span> — The loss became nan at epoch 1" in html
    assert "Test results" not in html and "<img alt='Loss'" in html
