"""Every model whose weights are present builds with them and trains (forward + backward)
on the CPU at a small size; timm models join the catalog when their weights are on disk."""
from __future__ import annotations

import json

import timm
import torch
from safetensors.torch import save_file

from tlstudio.core.techniques.blocks import freeze_all_but_top, set_trainable
from tlstudio.core.models import ModelLibrary


def _train_step(model, size: int) -> None:
    model.train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_every_ready_model_builds_with_its_weights_and_trains_on_cpu():
    torch.set_num_threads(2)
    lib = ModelLibrary()
    ready = [s for s in lib.list_status() if s.ready]
    # the offline weight packages of the studio's install
    assert {"mobilenet_v2", "efficientnet_lite0"} <= {s.name for s in ready}
    for st in ready:
        arch = lib.arch(st.name)
        model, info = lib.build(st.name, num_classes=3)
        assert info["weights_path"] == st.path and info["weights_sha256"]
        size = arch.preprocessing.image_size if arch.preprocessing.fixed_size else 64
        _train_step(model, size)
        every = {id(p) for p in model.parameters()}
        grouped = [id(p) for g in model.groups for p in g.parameters()]
        assert len(grouped) == len(set(grouped)) and set(grouped) == every, st.name


def _timm_file(folder, name: str, arch: str):
    folder.mkdir(parents=True, exist_ok=True)
    m = timm.create_model(arch, pretrained=False)
    path = folder / name
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return m, path


def test_timm_weights_in_the_models_folder_join_the_catalog(tmp_path, studio_home):
    models = studio_home / "models"
    ref, _ = _timm_file(models, "test_efficientnet.r160_in1k.safetensors", "test_efficientnet")
    _timm_file(models / "timm", "test_vit.safetensors", "test_vit")
    (models / "not_a_timm_model.safetensors").write_bytes(b"x")
    lib = ModelLibrary()
    ready = {s.name: s for s in lib.list_status() if s.ready}
    assert {"timm/test_efficientnet.r160_in1k", "timm/test_vit"} <= set(ready)
    assert not any("not_a_timm_model" in n for n in lib.architectures)

    model, info = lib.build("timm/test_efficientnet.r160_in1k", num_classes=3)
    # the pretrained weights are those of the file (the backbone equals the saved model)
    sd = model.backbone.state_dict()
    assert torch.equal(sd["conv_stem.weight"], ref.state_dict()["conv_stem.weight"])
    assert [g.name for g in model.groups][0] == "stem" and model.groups[-1].name == "head"
    assert len(model.groups) <= 9
    _train_step(model, 64)
    # freezing by group reaches BatchNorm layers (their statistics stay ImageNet's)
    freeze_all_but_top(model, 2)
    assert not any(p.requires_grad for p in model.groups[0].parameters())
    from tlstudio.core.techniques.blocks import keep_frozen_bn_in_eval

    model.train()
    keep_frozen_bn_in_eval(model)
    assert not model.backbone.bn1.training

    vit, _ = lib.build("timm/test_vit", num_classes=3)
    assert lib.arch("timm/test_vit").preprocessing.fixed_size
    _train_step(vit, lib.arch("timm/test_vit").preprocessing.image_size)
    loose = [p for g in vit.groups for p in g.params]
    assert any(p is vit.backbone.cls_token for p in loose)
    set_trainable(vit.groups[:1], False)  # loose parameters freeze with their group
    assert not vit.backbone.cls_token.requires_grad and not vit.backbone.pos_embed.requires_grad


def test_timm_folder_in_the_hugging_face_cache_is_found(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    snap = cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc123"
    _timm_file(snap, "model.safetensors", "test_resnet")
    (snap / "config.json").write_text(json.dumps({"architecture": "test_resnet.r160_in1k", "num_classes": 1000}))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    lib = ModelLibrary()
    st = lib.status("timm/test_resnet.r160_in1k")
    assert st.ready and st.source == "timm models on this computer"
    model, _ = lib.build("timm/test_resnet.r160_in1k", num_classes=3)
    _train_step(model, 64)


def test_a_catalog_name_stays_the_catalogs(studio_home):
    models = studio_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "resnet18.safetensors").write_bytes(b"not checked here")
    lib = ModelLibrary()
    assert "timm/resnet18" not in lib.architectures and lib.arch("resnet18").source == "torchvision"
