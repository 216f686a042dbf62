"""One operating point, the same decision everywhere: a two-class run whose threshold is chosen
on validation (sensitivity >= 0.9) calls every test image the same in Evaluate's data,
`tlstudio predict --csv`, the exported ONNX package's own predict and the model card; older
runs read as argmax; "Use this operating point" re-calls without retraining; a text run is
calibrated and predicts with its decision too."""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest

from conftest import make_digit_folder, quick_project


@pytest.fixture(scope="module")
def decided_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("decided")
    old = os.environ.get("TLSTUDIO_HOME")
    os.environ["TLSTUDIO_HOME"] = str(root / "home")
    try:
        from tlstudio.core.engine import train
        from tlstudio.core.plugins import PluginManager

        data = make_digit_folder(root / "digits", classes=(3, 8), per_class=45)
        p = quick_project(data, "frozen-features", epochs=3, lr=3e-3, monitor="val_auc")
        p.model.image_size = 32
        p.data.split.val_fraction = 0.3
        p.data.split.test_fraction = 0.3
        p.decision.positive_class = "3"
        p.decision.threshold_method = "sensitivity"
        p.decision.target = 0.9
        final = train(p, runs_dir=root / "runs", plugins=PluginManager())
        assert final["status"] == "done", final
    finally:
        if old is None:
            os.environ.pop("TLSTUDIO_HOME", None)
        else:
            os.environ["TLSTUDIO_HOME"] = old
    return final, root


def _csv_calls(path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["input"]: r["predicted"] for r in csv.DictReader(f)}


def test_one_operating_point_gives_the_same_decision_everywhere(decided_run, tmp_path, capsys):
    from tlstudio.cli import main
    from tlstudio.core.analysis.results import EvaluationResults

    final, _ = decided_run
    run_dir = final["run_dir"]
    dec = json.loads(open(os.path.join(run_dir, "decision.json")).read())
    assert dec["method"] == "sensitivity" and dec["chosen_on"] == "validation" and dec["class_names"][dec["positive"]] == "3"
    assert dec["validation"]["operating_point"]["sensitivity"] >= 0.9  # met where it was chosen
    assert dec["temperature"] != 1.0 and dec["conformal_level"] == 0.9

    res = EvaluationResults.load(run_dir)  # what the Evaluate page shows
    evaluate = {ref: res.class_names[k] for ref, k in zip(res.refs, res.predicted)}
    assert np.array_equal(res.predicted, res.calls_at(res.threshold, res.positive))
    assert len(evaluate) >= 25 and all(os.path.isfile(r) for r in evaluate)

    out = tmp_path / "run.csv"
    assert main(["predict", run_dir, *evaluate, "--csv", str(out)]) == 0
    assert _csv_calls(out) == evaluate
    with open(out, newline="", encoding="utf-8") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    for ref, p in zip(res.refs, res.probs):  # the calibrated probabilities, as Evaluate has them
        assert float(rows[ref]["p_3"]) == pytest.approx(p[0], abs=2e-6)
        assert rows[ref]["set"]

    pkg = tmp_path / "pkg"
    assert main(["export", run_dir, "--format", "onnx", "--out", str(pkg), "--json"]) == 0
    package = json.loads((pkg / "package.json").read_text())
    assert package["decision"]["threshold"] == dec["threshold"] and package["temperature_in_model"] is True
    assert package["parity"]["max_abs_diff_probabilities"] <= 1e-4  # parity of the calibrated probabilities
    shutil.copytree(pkg, tmp_path / "moved")  # the package alone, elsewhere
    out2 = tmp_path / "pkg.csv"
    assert main(["predict", str(tmp_path / "moved"), *evaluate, "--csv", str(out2)]) == 0
    assert _csv_calls(out2) == evaluate

    card = json.loads((pkg / "model_card.json").read_text())
    op = card["metrics"]["test"]["decision"]["operating_point"]
    truth = res.labels == res.positive
    called = res.predicted == res.positive
    assert (op["tp"], op["fn"], op["tn"], op["fp"]) == (int((called & truth).sum()), int((~called & truth).sum()),
                                                        int((~called & ~truth).sum()), int((called & ~truth).sum()))
    md = (pkg / "model_card.md").read_text()
    assert f"Test sensitivity for '3' at the operating point | {op['sensitivity']:.3f} (95% CI" in md
    assert "Calibration on test (ECE / MCE / Brier)" in md and "Prediction sets on test" in md
    assert "probabilities are calibrated" in md


def test_use_this_operating_point_recalls_without_retraining(decided_run, tmp_path, capsys):
    from tlstudio.cli import main
    from tlstudio.core.delivery.predict import Predictor
    from tlstudio.core.delivery.report import html_report
    from tlstudio.core.analysis.results import EvaluationResults

    final, _ = decided_run
    run_dir = shutil.copytree(final["run_dir"], tmp_path / "run")
    before = EvaluationResults.load(run_dir)
    s = np.unique(before.probs[:, before.positive])
    t = float((s[len(s) // 2] + s[len(s) // 2 + 1]) / 2)  # between two test scores, as a slider position is
    assert main(["decide", str(run_dir), "--threshold", f"{t}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"]["threshold"] == pytest.approx(t) and out["decision"]["method"] == "fixed"
    after = EvaluationResults.load(run_dir)
    assert np.array_equal(after.predicted, after.calls_at(t, after.positive))
    assert after.metrics["decision"]["operating_point"]["threshold"] == pytest.approx(t)
    assert after.decision.chosen_on == "the command line"  # where it was set, for the model card's caution
    pred = Predictor.from_run(run_dir)
    got = [r["predicted"] for r in pred.predict_paths(after.refs)]
    assert got == [after.class_names[k] for k in after.predicted]
    html = html_report(run_dir).read_text()
    assert "Decision: operating point, calibration, prediction sets" in html and "Reliability diagram" in html
    # on validation again, another target
    assert main(["decide", str(run_dir), "--method", "specificity", "--target", "0.8"]) == 0
    assert "specificity" in capsys.readouterr().out
    d = json.loads((run_dir / "decision.json").read_text())
    assert d["method"] in ("specificity", "fixed") and d["chosen_on"] == "validation"


def test_a_run_without_a_decision_file_predicts_as_before(decided_run, tmp_path):
    from tlstudio.core.delivery.predict import Predictor

    final, _ = decided_run
    run_dir = shutil.copytree(final["run_dir"], tmp_path / "old-run")
    (run_dir / "decision.json").unlink()
    pred = Predictor.from_run(run_dir)
    files = sorted(str(p) for p in (tmp_path.parent / "digits").rglob("*.png"))[:6] or None
    from tlstudio.core.analysis.results import EvaluationResults

    refs = EvaluationResults.load(run_dir).refs[:6] if files is None else files
    for r in pred.predict_paths(refs):
        assert "set" not in r
        p = r["probabilities"]
        assert r["predicted"] == max(p, key=p.get)  # argmax, uncalibrated


def test_a_text_run_is_calibrated_and_predicts_with_its_decision(tmp_path, capsys):
    from text_helpers import keyword_sentences, make_tiny_model, text_project, write_uci

    from tlstudio.cli import main
    from tlstudio.core.engine import train
    from tlstudio.core.delivery.predict import Predictor

    model = make_tiny_model(tmp_path / "tiny-bert", "bert")
    data = write_uci(tmp_path / "s.txt", keyword_sentences(50))
    p = text_project(data, model, epochs=2)
    p.decision.positive_class = "negative"
    p.decision.threshold_method = "youden"
    res = train(p, runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    run_dir = res["run_dir"]
    dec = json.loads(open(os.path.join(run_dir, "decision.json")).read())
    assert dec["method"] == "youden" and dec["class_names"][dec["positive"]] == "negative"
    assert "ece" in res["test"] and "coverage" in res["test"]
    pred = Predictor.from_run(run_dir)
    texts = ["The screen is great.", "Terrible, broken phone."]
    got = pred.predict(texts)
    thr = dec["threshold"]
    for r in got:
        assert r["predicted"] == ("negative" if r["probabilities"]["negative"] >= thr else "positive")
        assert "set" in r
    out = tmp_path / "export"
    assert main(["export", run_dir, "--format", "onnx", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    package = json.loads((out / "package.json").read_text())
    assert package["parity"]["max_abs_diff_probabilities"] <= 1e-4 and package["decision"]["threshold"] == thr
    assert main(["predict", str(out), *texts, "--json"]) == 0
    assert [r["predicted"] for r in json.loads(capsys.readouterr().out)] == [r["predicted"] for r in got]
