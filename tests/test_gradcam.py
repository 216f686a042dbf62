"""Grad-CAM (core, Qt-free): the heat map lies where the object is; overlays are images;
reading a run's metrics.jsonl on from an offset (how the window follows a run)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tlstudio.core.analysis.gradcam import _spatial, colorize, grad_cam, overlay


@pytest.fixture(scope="module")
def imagenet_mobilenet():
    """MobileNetV2 as a ClassifierModel whose head is the ImageNet classifier (real weights)."""
    from tlstudio.core.models import ModelLibrary

    lib = ModelLibrary()
    model, _ = lib.build("mobilenet_v2", 1000, weights="imagenet")
    sd = lib.load_pretrained_state("mobilenet_v2")
    with torch.no_grad():
        model.head[0].weight.copy_(sd["classifier.1.weight"])
        model.head[0].bias.copy_(sd["classifier.1.bias"])
    return model.eval()


def _normalise(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    return (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.mark.parametrize("corner", [(0, 0), (1, 1)])
def test_heat_map_lies_on_the_cat(imagenet_mobilenet, corner):
    from skimage.data import chelsea

    from tlstudio.core.data import resize_image

    torch.set_num_threads(2)
    canvas = np.full((192, 192, 3), 128, np.uint8)
    r, c = corner[0] * 96, corner[1] * 96
    canvas[r:r + 96, c:c + 96] = resize_image(chelsea(), 96)
    heat, probs = grad_cam(imagenet_mobilenet, _normalise(canvas))
    h = heat[0]
    assert h.shape == (192, 192) and h.dtype == np.float32
    assert 0.0 <= h.min() and h.max() == pytest.approx(1.0)
    cat_classes = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(probs[0].argmax()) in cat_classes
    share = h[r:r + 96, c:c + 96].sum() / h.sum()
    assert share > 0.6, share  # most of the heat on the quadrant with the cat
    assert all(p.grad is None for p in imagenet_mobilenet.parameters())  # the model's gradients untouched


def test_flip_averaged_model_treats_an_image_and_its_mirror_alike(imagenet_mobilenet):
    """Test-time flip: the mirror image gets the same prediction and the mirrored heat map
    (the cat on the left or on the right is the same cat)."""
    from skimage.data import chelsea

    from tlstudio.core.data import resize_image

    canvas = np.full((128, 128, 3), 128, np.uint8)
    canvas[16:112, :96] = resize_image(chelsea(), 96)  # off-centre: the mirror differs
    x = _normalise(canvas)
    model = imagenet_mobilenet
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(-1))
    assert not torch.allclose(plain, mirrored, atol=1e-3)
    model.flip_average = True
    try:
        with torch.no_grad():
            a, b = model(x), model(x.flip(-1))
            assert torch.allclose(a, b, atol=1e-4) and torch.allclose(a, (plain + mirrored) / 2, atol=1e-4)
        heat, probs = grad_cam(model, x)
        heat_m, probs_m = grad_cam(model, x.flip(-1))
        assert model.flip_average and not model.training
        assert np.allclose(probs, probs_m, atol=1e-4)
        assert np.allclose(heat[0], heat_m[0][:, ::-1], atol=1e-3) and heat.max() == pytest.approx(1.0)
        assert heat[0][:, :64].sum() > heat[0][:, 64:].sum()  # still on the cat's side
    finally:
        model.flip_average = False
        model.eval()


def test_explain_a_given_class_and_overlay():
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[:4, :4] = 1.0
    out = overlay(img, heat)
    assert out.shape == (50, 70, 3) and out.dtype == np.uint8
    col = colorize(np.array([[0.0, 1.0]]))
    assert col[0, 0, 2] > col[0, 0, 0] and col[0, 1, 0] > col[0, 1, 2]  # cold blue, hot red


def test_transformer_tokens_become_a_grid():
    tokens = torch.arange(2 * 17 * 5, dtype=torch.float32).reshape(2, 17, 5)  # class token + 4 x 4
    grid = _spatial(tokens)
    assert grid.shape == (2, 5, 4, 4)
    assert torch.equal(grid[:, :, 0, 0], tokens[:, 1, :])


def test_read_events_from_an_offset(tmp_path):
    from tlstudio.core.runs import Run

    run = Run(tmp_path)
    with open(run.metrics_file, "w") as f:
        f.write(json.dumps({"kind": "start"}) + "\n" + json.dumps({"kind": "epoch", "epoch": 1}) + "\n")
        f.write('{"kind": "epo')  # a line being written right now
    events, off = run.read_events_from(0)
    assert [e["kind"] for e in events] == ["start", "epoch"]
    events, off2 = run.read_events_from(off)
    assert events == [] and off2 == off
    with open(run.metrics_file, "a") as f:
        f.write('ch", "epoch": 2}\nnot json\n')
    events, off3 = run.read_events_from(off)
    assert events == [{"kind": "epoch", "epoch": 2}] and off3 == run.metrics_file.stat().st_size
