"""The architecture catalog: every model builds, splits into layer groups that hold every
parameter exactly once, and trains (forward + backward) on the CPU.  No weights needed."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tlstudio.core.errors import ModelError
from tlstudio.core.models import CATALOG, ClassifierModel, LayerGroup, ModelLibrary, Preprocessing, architectures, make_head


@pytest.fixture(autouse=True)
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSTUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("TLSTUDIO_MODELS_DIR", raising=False)


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


EXPECTED = {f"resnet{d}" for d in (18, 34, 50, 101, 152)} | {"vgg16", "vgg16_bn", "densenet121"} | {
    f"efficientnet_b{i}" for i in range(8)} | {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "vit_b_16",
                                               "convnext_tiny"} | {f"efficientnet_lite{i}" for i in range(3)}


def test_catalog_lists_the_promised_architectures_with_their_facts():
    assert set(CATALOG) == EXPECTED
    for a in CATALOG.values():
        assert a.source in ("torchvision", "timm") and a.title and a.params_m > 0
        assert isinstance(a.preprocessing, Preprocessing) and len(a.preprocessing.mean) == 3
        assert a.weight_files and all(f.endswith(".pth") for f in a.weight_files), a.name
        assert a.categories and len(a.categories) == 1000
        assert a.imagenet_top1 and 60 < a.imagenet_top1 < 90
    mb = CATALOG["mobilenet_v2"]
    assert "mobilenet_v2-b0353104.pth" in mb.weight_files and mb.gflops == pytest.approx(0.301)
    assert CATALOG["vit_b_16"].preprocessing == Preprocessing(mb.preprocessing.mean, mb.preprocessing.std, 224, True)
    assert "vit_b_16_swag-9ac1b537.pth" not in CATALOG["vit_b_16"].weight_files  # 384 px: does not fit the model
    assert not any("features" in f for f in CATALOG["vgg16"].weight_files)  # VGG's features-only file has no classifier
    lite = CATALOG["efficientnet_lite1"]
    assert lite.preprocessing == Preprocessing((0.5,) * 3, (0.5,) * 3, 240, False)
    assert lite.weight_files == ["efficientnet-lite1-77cc7160.pth"]
    assert CATALOG["efficientnet_b7"].preprocessing.image_size == 600


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_architecture_builds_splits_and_trains(name):
    torch.manual_seed(0)
    model, info = ModelLibrary(sources=[]).build(name, num_classes=3, weights="none")
    assert info["weights"] == "none" and info["weights_path"] == ""
    assert isinstance(model, ClassifierModel) and model.num_classes == 3 and model.arch_name == name

    # groups: input -> output, head last, every parameter exactly once
    assert 4 <= len(model.groups) - 1 <= 7, [g.name for g in model.groups]
    assert model.groups[-1].name == "head" and model.groups[-1].modules == [model.head]
    ids = [id(p) for g in model.groups for p in g.parameters()]
    assert len(ids) == len(set(ids)), "a parameter sits in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter sits in no group"
    assert all(k.startswith(("backbone.", "head.")) for k in model.state_dict())

    size = 224 if CATALOG[name].preprocessing.fixed_size else 64
    x = torch.randn(2, 3, size, size)
    seen = []
    hook = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model.train()
    feats = model.features(x)
    assert feats.shape == (2, model.feature_dim)
    logits = model.head(feats)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert model.head[-1].weight.grad is not None
    assert next(model.backbone.parameters()).grad is not None
    hook.remove()
    assert len(seen[0]) == (3 if name == "vit_b_16" else 4), seen  # tokens for ViT, a feature map for CNNs
    assert any(m is model.cam_layer for m in model.backbone.modules())


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "vgg16", "efficientnet_b0", "convnext_tiny", "efficientnet_lite0"])
def test_cnns_accept_small_images(name):
    model, _ = ModelLibrary(sources=[]).build(name, 2, weights="none")
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 2)


def test_backbones_keep_the_pretrained_classifier_layers_but_not_the_last_linear():
    lib = ModelLibrary(sources=[])
    vgg, _ = lib.build("vgg16", 2, weights="none")
    assert vgg.feature_dim == 4096
    assert [type(m) for m in vgg.backbone.classifier] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU]
    v3, _ = lib.build("mobilenet_v3_large", 2, weights="none")
    assert v3.feature_dim == 1280 and v3.groups[-2].name == "fc"
    cn, _ = lib.build("convnext_tiny", 2, weights="none")
    assert cn.feature_dim == 768 and cn.groups[-2].name == "norm"
    assert [g.name for g in lib.build("mobilenet_v2", 2, weights="none")[0].groups] == [
        "stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head_conv", "head"]
    # the backbone's keys are the ImageNet model's, less the last layer: pretrained files load as they are
    full = set(CATALOG["vgg16"].reference_shapes())
    assert {k.removeprefix("backbone.") for k in vgg.state_dict() if k.startswith("backbone.")} == full - {
        "classifier.6.weight", "classifier.6.bias"}


def test_heads():
    h = make_head(32, 4)
    assert isinstance(h, nn.Sequential) and [type(m) for m in h] == [nn.Linear]
    assert [type(m) for m in make_head(32, 4, dropout=0.3)] == [nn.Dropout, nn.Linear]
    bn = make_head(32, 4, "bn_dropout", dropout=0.5, hidden=16)
    assert [type(m) for m in bn] == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert bn[2].out_features == 16 and bn[-1].out_features == 4 and bn[1].p == 0.5
    with pytest.raises(ModelError, match="Unknown head kind 'mlp'.*linear, bn_dropout"):
        make_head(32, 4, "mlp")


def test_replace_head_and_copies_keep_groups_in_sync():
    model, _ = ModelLibrary(sources=[]).build("resnet18", 3, weights="none", head="bn_dropout", dropout=0.2, hidden=8)
    assert model.num_classes == 3 and [g.name for g in model.groups][:5] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    new = make_head(model.feature_dim, 7)
    model.replace_head(new)
    assert model.head is new and model.groups[-1].modules == [new] and model.num_classes == 7
    twin = copy.deepcopy(model)
    assert twin.groups[-1].modules[0] is twin.head and twin.groups[1].modules[0] is twin.backbone.layer1
    assert twin.cam_layer is twin.backbone.layer4
    assert set(twin.state_dict()) == set(model.state_dict())


def test_unknown_architecture_and_plugin_architectures():
    with pytest.raises(ModelError, match="Unknown model architecture 'resnet9'.*mobilenet_v2"):
        ModelLibrary(sources=[]).build("resnet9", 2)
    base = CATALOG["resnet18"]
    extra = copy.copy(base)
    extra.name, extra.title = "my_resnet", "My ResNet"
    dup = copy.copy(base)
    dup.title = "impostor"
    archs = architectures([extra, dup])
    assert archs["my_resnet"] is extra and archs["resnet18"] is base
    model, _ = ModelLibrary(sources=[], extra_architectures=[extra]).build("my_resnet", 2, weights="none")
    assert model.arch_name == "my_resnet"


def test_layer_group_loose_parameters():
    p = nn.Parameter(torch.zeros(2))
    g = LayerGroup("embed", [nn.Linear(2, 2)], [p])
    assert sum(1 for _ in g.parameters()) == 3 and list(g.parameters())[-1] is p
