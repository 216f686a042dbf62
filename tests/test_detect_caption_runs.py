"""Detection and captioning end to end on real handwritten digits placed on canvases:
`tlstudio train` learns (mAP@0.5 and BLEU-4 well above the untrained model's), `tlstudio
predict` prints boxes and captions, and the result views show them.

Each run is CI-sized (64 px, about a hundred images, a few epochs, one thread);
bench/detection_captioning.py has the longer runs."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from tlstudio.cli import main
from tlstudio.core.data.digit_scenes import write_digit_scenes

pytestmark = pytest.mark.slow

DETECTION_TOML = """
name = "Digits on canvases (detection)"
task = "detection"

[data]
source = "scenes/boxes.csv"

[data.split]
val_fraction = 0.15
test_fraction = 0.15

[model]
architecture = "mobilenet_v2"
image_size = 64

[technique]
id = "faster-rcnn"

[technique.settings]
trainable_backbone_groups = 0
fpn_channels = 64
box_head_size = 128
rois_per_image = 64

[augmentation]
preset = "none"

[training]
epochs = 8
batch_size = 8
lr = 0.002
warmup_epochs = 0.5
grad_clip = 10.0
device = "cpu"
threads = 1
"""

CAPTION_TOML = """
name = "Digits side by side (captioning)"
task = "captioning"

[data]
source = "pairs/captions.csv"

[model]
architecture = "mobilenet_v2"
image_size = 64

[technique]
id = "captioning"

[technique.settings]
decoder = "{decoder}"
embed_size = 128
hidden_size = 256
decoding = "beam"
beam_size = 3

[training]
epochs = {epochs}
batch_size = 32
lr = 0.003
grad_clip = 5.0
device = "cpu"
threads = 1
"""


def _cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def untrained_test_metrics(project_file: Path) -> dict:
    """The same project's model before any training, evaluated on the same test images."""
    from tlstudio.core.config import load_project
    from tlstudio.core.engine import open_context

    ctx = open_context(load_project(project_file), device="cpu")
    return ctx.evaluate("test")


@contextlib.contextmanager
def _home(path: Path):
    """A studio home for a module's runs; torch's thread count restored afterwards."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLSTUDIO_HOME", str(path))
        import tlstudio.core.plugins as plugins_mod

        mp.setattr(plugins_mod, "_default", None)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def _train(folder: Path, toml: str, name: str) -> dict:
    project = folder / f"{name}.toml"
    project.write_text(toml)
    code, out = _cli("train", str(project), "--json", "--runs-dir", str(folder / "runs"))
    assert code == 0, out
    final = json.loads(out)
    final["untrained"] = untrained_test_metrics(project)
    return final


@pytest.fixture(scope="module")
def det_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detection")
    write_digit_scenes(folder / "scenes", n=120, canvas_size=64, digits=(1, 3, 7), per_image=(1, 2), seed=1)
    with _home(folder / "home"):
        yield _train(folder, DETECTION_TOML, "detection")


@pytest.fixture(scope="module")
def cap_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("captioning")
    write_digit_scenes(folder / "pairs", n=120, canvas_size=64, digits=(1, 3, 7), per_image=(2, 2), seed=2)
    with _home(folder / "home"):
        final = _train(folder, CAPTION_TOML.format(decoder="lstm", epochs=6), "captioning")
        final["folder"] = folder
        yield final


def test_detection_learns_well_above_the_untrained_model(det_run):
    run = Path(det_run["run_dir"])
    untrained = det_run["untrained"]
    print(f"detection test mAP@0.5 {det_run['test_map_50']:.3f} (untrained {untrained['map_50']:.3f}), "
          f"mAP@[.5:.95] {det_run['test_map']:.3f} (untrained {untrained['map']:.3f}), "
          f"{det_run['train_seconds']:.0f} s")
    assert untrained["map_50"] < 0.05
    assert det_run["test_map_50"] >= 0.3 and det_run["test_map_50"] > untrained["map_50"] + 0.25
    assert det_run["test_map"] > untrained["map"]
    per_class = det_run["test"]["per_class"]
    assert set(per_class) == {"1", "3", "7"} and all(pc["boxes"] > 0 for pc in per_class.values())
    assert sum((pc["ap50"] or 0) > 0.2 for pc in per_class.values()) >= 2
    for f in ("report.md", "test_predictions.json", "test_predictions.csv", "evaluation_test.json", "data.json",
              "split.json", "checkpoints/best.pt"):
        assert (run / f).exists(), f
    report = (run / "report.md").read_text()
    assert "mAP@0.5" in report and "| 3 |" in report
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    assert len(epochs) == 8 and "val_map_50" in epochs[-1] and "map" in epochs[-1]["series"]
    assert set(epochs[-1]["lr"]) == {"fpn", "rpn", "roi_heads"}  # frozen backbone: only the new parts learn
    preds = json.loads((run / "test_predictions.json").read_text())
    assert preds["class_names"] == ["1", "3", "7"] and len(preds["images"]) == 18
    im = preds["images"][0]
    assert im["width"] == 64 and im["truth"] and all(len(d["box"]) == 4 for d in im["predicted"])


def test_detection_predict_prints_boxes(det_run, tmp_path):
    from PIL import Image

    preds = json.loads((Path(det_run["run_dir"]) / "test_predictions.json").read_text())
    images = [im["ref"] for im in preds["images"][:4]]
    big = tmp_path / "bigger.png"  # another size: boxes come back in that image's pixels
    Image.open(images[0]).resize((128, 128)).save(big)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, out = _cli("predict", det_run["run_dir"], *images, str(big), str(bad), "--json")
    results = json.loads(out)
    assert code == 1 and "error" in results[-1] and results[-1]["ref"] == str(bad)  # the bad one is named
    first = results[0]
    assert first["detections"], first
    truth = preds["images"][0]["truth"]
    best = max(first["detections"], key=lambda d: d["score"])
    assert best["label"] in {t["label"] for t in truth}
    scaled = max(results[4]["detections"], key=lambda d: d["score"])
    assert scaled["label"] == best["label"]
    assert [round(v / 2) for v in scaled["box"]] == pytest.approx([round(v) for v in best["box"]], abs=3)
    code, text = _cli("predict", det_run["run_dir"], images[0])
    assert code == 0 and f"\t{best['label']} " in text and "[" in text


def test_detection_inference_model_is_a_plain_module(det_run):
    from tlstudio.core.delivery.predict import Predictor

    p = Predictor.from_run(det_run["run_dir"])
    model = p.task.inference_model(p.ctx)
    assert isinstance(model, torch.nn.Module)
    with torch.no_grad():
        out = model.eval()(torch.rand(2, 3, 64, 64))
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def _colour_pixels(widget, rgb, tol=40) -> int:
    img = widget.canvas.pixmap().toImage()
    n = 0
    for y in range(0, img.height(), 2):
        for x in range(0, img.width(), 2):
            c = img.pixelColor(x, y)
            n += abs(c.red() - rgb[0]) + abs(c.green() - rgb[1]) + abs(c.blue() - rgb[2]) < tol
    return n


def test_detection_result_view_draws_boxes_and_follows_the_slider(det_run, qtbot, tmp_path):
    from tlstudio_plugins.tasks import Detection

    view = Detection().result_view(det_run["run_dir"])
    qtbot.addWidget(view)
    assert view.list.count() == 18 and view.list.currentRow() == 0
    view.slider.setValue(5)
    some = len(view.visible_detections())
    assert some >= 1
    assert _colour_pixels(view, (40, 200, 80)) > 10  # true boxes, green
    assert _colour_pixels(view, (255, 140, 0)) > 10  # detections, orange
    view.slider.setValue(100)
    assert len(view.visible_detections()) <= some and "score >= 1.00" in view.caption.text()
    if not view.visible_detections():
        assert _colour_pixels(view, (255, 140, 0)) == 0
    view.list.setCurrentRow(3)
    assert view.caption.text().startswith(Path(json.loads(
        (Path(det_run["run_dir"]) / "test_predictions.json").read_text())["images"][3]["ref"]).name)
    empty = Detection().result_view(tmp_path)  # a run without results: a message, no crash
    qtbot.addWidget(empty)
    assert "No test predictions" in empty.canvas.text()


def test_captioning_learns_well_above_the_untrained_model(cap_run):
    run = Path(cap_run["run_dir"])
    untrained = cap_run["untrained"]
    print(f"captioning test BLEU-4 {cap_run['test_bleu_4']:.3f} (untrained {untrained['bleu_4']:.3f}), "
          f"CIDEr-D {cap_run['test_cider']:.2f} (untrained {untrained['cider']:.2f}), {cap_run['train_seconds']:.0f} s")
    assert untrained["bleu_4"] < 0.05
    assert cap_run["test_bleu_4"] >= 0.35 and cap_run["test_bleu_4"] > untrained["bleu_4"] + 0.3
    assert cap_run["test_cider"] > untrained["cider"] + 1.0
    assert cap_run["test_bleu_1"] >= cap_run["test_bleu_4"]
    preds = json.loads((run / "test_predictions.json").read_text())
    assert preds["decoding"] == "beam" and len(preds["images"]) == 18
    words = {w for im in preds["images"] for w in im["caption"].split()}
    assert {"a", "of"} <= words or {"a", "above"} <= words or {"a", "below"} <= words
    assert all(len(im["references"]) == 2 for im in preds["images"])
    report = (run / "report.md").read_text()
    assert "BLEU-4" in report and "Examples" in report
    desc = json.loads((run / "data.json").read_text())
    assert desc["vocabulary"][:4] == ["<pad>", "<start>", "<end>", "<unk>"] and "left" in desc["vocabulary"]


def test_captioning_predict_prints_captions(cap_run, tmp_path):
    preds = json.loads((Path(cap_run["run_dir"]) / "test_predictions.json").read_text())
    images = [im["ref"] for im in preds["images"][:3]]
    code, out = _cli("predict", cap_run["run_dir"], *images)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for line, im in zip(lines, preds["images"]):
        ref, caption = line.split("\t")[:2]
        assert ref == im["ref"] and caption == im["caption"]  # the same beam search as the test


def test_captioning_inference_model_is_the_greedy_generator(cap_run):
    from tlstudio.core.delivery.predict import Predictor

    p = Predictor.from_run(cap_run["run_dir"])
    gen = p.task.inference_model(p.ctx)
    assert isinstance(gen, torch.nn.Module)
    preds = json.loads((Path(cap_run["run_dir"]) / "test_predictions.json").read_text())
    from tlstudio.core.data import decode_image

    x = p.ctx.data.preprocess([decode_image(im["ref"]) for im in preds["images"][:4]])
    with torch.no_grad():
        ids = gen.eval()(x)
        greedy = p.model.model.generate(p.model.model.encoder(x), p.ctx.data.max_length, 1)
    assert [p.ctx.data.vocabulary.decode(r) for r in ids.tolist()] == [p.ctx.data.vocabulary.decode(g) for g in greedy]


def test_caption_result_view_shows_caption_and_references(cap_run, qtbot):
    from tlstudio_plugins.tasks import Captioning

    view = Captioning().result_view(cap_run["run_dir"])
    qtbot.addWidget(view)
    preds = json.loads((Path(cap_run["run_dir"]) / "test_predictions.json").read_text())
    assert view.list.count() == len(preds["images"])
    view.list.setCurrentRow(2)
    im = preds["images"][2]
    assert im["caption"] in view.generated.text()
    assert all(r in view.references.text() for r in im["references"])
    assert not view.picture.pixmap().isNull()


def test_transformer_decoder_learns_too_from_quick_flags(cap_run):
    """`tlstudio train --data captions.csv --technique captioning`: the task follows the technique."""
    folder = cap_run["folder"]
    with _home(folder / "home"):
        code, out = _cli("train", "--data", str(folder / "pairs" / "captions.csv"), "--technique", "captioning",
                         "--image-size", "64", "--epochs", "4", "--batch-size", "32", "--lr", "0.003", "--threads", "1",
                         "--device", "cpu", "--set", 'technique.settings.decoder="transformer"',
                         "--set", "technique.settings.embed_size=128", "--json", "--runs-dir", str(folder / "runs"))
        assert code == 0, out
        final = json.loads(out)
        untrained = untrained_test_metrics(Path(final["run_dir"]) / "project.toml")
    print(f"transformer BLEU-4 {final['test_bleu_4']:.3f} (untrained {untrained['bleu_4']:.3f})")
    assert final["test_bleu_4"] > untrained["bleu_4"] + 0.25
    from tlstudio.core.runs import Run

    project = Run(final["run_dir"]).project()
    assert project.task == "captioning" and project.technique.settings["decoder"] == "transformer"


def test_captioning_with_a_learning_encoder(cap_run):
    """encoder_trainable_groups = 1: no feature cache; the encoder's top group learns, slower
    than the decoder."""
    from tlstudio.core.config import load_project
    from tlstudio.core.engine import train

    folder = cap_run["folder"]
    events: list[dict] = []
    with _home(folder / "home"):
        project = load_project(folder / "captioning.toml")
        project.training.epochs = 1
        project.technique.settings["encoder_trainable_groups"] = 1
        final = train(project, on_event=events.append, runs_dir=folder / "runs-encoder")
    assert final["status"] == "done", final
    assert not any(e["kind"] == "progress" and e["task"].startswith("Extracting") for e in events)
    lr = next(e for e in events if e["kind"] == "epoch")["lr"]
    assert set(lr) == {"encoder.head_conv", "decoder"}
    assert lr["encoder.head_conv"] == pytest.approx(0.3 * lr["decoder"])
    state = torch.load(Path(final["run_dir"]) / "checkpoints" / "last.pt", weights_only=True)["model"]
    from tlstudio.core.models import ModelLibrary

    ref = ModelLibrary().load_pretrained_state("mobilenet_v2")
    key = "features.18.0.weight"
    assert not torch.equal(state[f"encoder.backbone.{key}"], ref[key])  # the top group learned
    assert torch.equal(state["encoder.backbone.features.0.0.weight"], ref["features.0.0.weight"])  # the rest did not
