"""Damaged run folders, checkpoints and model packages, made from ONE trained run and ONE
export: each tampered copy is refused or recovered with a message that names the file and
the problem, exit codes say so, nothing is loaded that holds code, and the files are left as
they were."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from faultlib import assert_plain, cli, code_carrying_pickle

from conftest import make_digit_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = make_digit_folder(root / "digits", classes=(3, 8), per_class=24)
    o = cli("train", "--data", data, "--model", "mobilenet_v2", "--technique", "fine-tuning", "--image-size", "32",
            "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--deterministic", "--runs-dir", root / "runs",
            "--json")
    assert o.code == 0, o.err
    return Path(o.json()["run_dir"])


@pytest.fixture(scope="module")
def package(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "digits-onnx"
    o = cli("export", trained, "--format", "onnx", "--out", out, "--inputs", "8", "--json")
    assert o.code == 0, o.err
    return out


@pytest.fixture
def image(trained) -> Path:
    return next(Path(json.loads((trained / "data.json").read_text())["source"]).rglob("*.png"))


def copy_run(trained: Path, tmp: Path, stopped: bool = True) -> Path:
    run = tmp / "runs" / trained.name
    shutil.copytree(trained, run)
    if stopped:  # a run stopped after its 2 epochs that is to train a third
        st = json.loads((run / "status.json").read_text())
        st["status"] = "stopped"
        (run / "status.json").write_text(json.dumps(st))
    return run


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def _drop_key(p: Path, key: str = "optimizer") -> None:
    state = torch.load(p, weights_only=True)
    state.pop(key)
    torch.save(state, p)


# what is done to checkpoints/last.pt, words of the message
LAST = [
    ("empty", lambda p: p.write_bytes(b""), "last.pt: empty checkpoint file (0 bytes)"),
    ("truncated", _truncate, "last.pt: truncated checkpoint file"),
    ("no-optimizer", _drop_key, "last.pt: incomplete checkpoint: it lacks 'optimizer'"),
    ("carries-code", lambda p: code_carrying_pickle(p), "last.pt: refused: the file holds Python objects or code"),
    ("missing", lambda p: p.unlink(), "last.pt: the checkpoint file is missing"),
    ("garbage", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(5000)), "last.pt: damaged checkpoint file"),
]


@pytest.mark.parametrize("name, damage, words", LAST, ids=[c[0] for c in LAST])
def test_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, trained, name, damage, words):
    run = copy_run(trained, tmp_path)
    damage(run / "checkpoints" / "last.pt")
    o = cli("train", "--resume", run, "--epochs", "3", "--json")
    assert_plain(o)
    assert o.code == 0, o.err
    assert words in o.err and "Resuming from the previous checkpoint prev.pt (after epoch 1)" in o.err, o.err
    assert o.json()["status"] == "done"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3  # epochs 2 and 3 trained again from epoch 1's checkpoint


def test_both_checkpoints_damaged_says_what_to_do(tmp_path, trained):
    run = copy_run(trained, tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    _truncate(run / "checkpoints" / "prev.pt")
    o = cli("train", "--resume", run, "--epochs", "3")
    assert_plain(o)
    assert o.code == 1 and "last.pt: empty" in o.err and "prev.pt: truncated" in o.err
    assert f"start it again with `tlstudio train {run / 'project.toml'}`" in o.err, o.err


@pytest.mark.parametrize("name, damage, words", [
    ("project-not-toml", lambda r: (r / "project.toml").write_text("[training\n"), "project.toml: not valid TOML"),
    ("no-project", lambda r: (r / "project.toml").unlink(), "stopped before it wrote its project file"),
    ("no-status", lambda r: (r / "status.json").unlink(), "not a run folder (no status.json)"),
])
def test_damaged_run_files_are_named(tmp_path, trained, name, damage, words):
    run = copy_run(trained, tmp_path)
    damage(run)
    o = cli("train", "--resume", run, "--epochs", "3")
    assert_plain(o)
    assert o.code == 1 and words in o.err, o.err


def test_garbled_status_and_metrics_still_list_and_resume(tmp_path, trained):
    run = copy_run(trained, tmp_path)
    (run / "status.json").write_text("{ garbled")
    with open(run / "metrics.jsonl", "a") as f:
        f.write("not json at all\n\x00\x01\n{\"kind\": \"epoch\", \"epoch\": \n")
    o = cli("runs", "--runs-dir", run.parent, "--json")
    assert o.code == 0 and json.loads(o.out)[0]["status"] == "interrupted"
    assert cli("report", run).code == 0
    o = cli("train", "--resume", run, "--epochs", "3", "--json")
    assert_plain(o)
    assert o.code == 0 and o.json()["status"] == "done", o.err


def test_resume_of_a_finished_run_trains_nothing_unless_asked(tmp_path, trained):
    run = copy_run(trained, tmp_path, stopped=False)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    final_before = json.loads((run / "final.json").read_text())
    o = cli("train", "--resume", run, "--json")
    assert_plain(o)
    assert o.code == 0 and "already finished (2 epochs): nothing was trained again" in o.err
    out = o.json()
    assert out["already_finished"] and out["train_seconds"] == final_before["train_seconds"]
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert json.loads((run / "final.json").read_text()) == final_before
    o = cli("train", "--resume", run, "--epochs", "3", "--json")  # asked for more: trains epoch 3
    assert o.code == 0, o.err
    more = o.json()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3
    assert more["train_seconds"] > final_before["train_seconds"]  # the times add up


# --- predicting and exporting with a damaged run ----------------------------------------------------
BEST = [
    ("truncated", _truncate, "best.pt: truncated checkpoint file"),
    ("carries-code", lambda p: code_carrying_pickle(p), "best.pt: refused: the file holds Python objects or code"),
    ("not-a-state-dict", lambda p: torch.save({"model": [1, 2, 3]}, p), "best.pt: the checkpoint's model is not a state dict"),
    ("other-model", lambda p: torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, p), "does not fit the run's model"),
    ("empty", lambda p: p.write_bytes(b""), "best.pt: empty checkpoint file"),
]


@pytest.mark.parametrize("name, damage, words", BEST, ids=[c[0] for c in BEST])
def test_predict_and_export_with_a_damaged_best_checkpoint(tmp_path, trained, image, name, damage, words):
    run = copy_run(trained, tmp_path, stopped=False)
    damage(run / "checkpoints" / "best.pt")
    damaged = (run / "checkpoints" / "best.pt").read_bytes()
    for cmd in (["predict", run, image], ["export", run, "--format", "onnx", "--out", tmp_path / "pkg"]):
        o = cli(*cmd)
        assert_plain(o)
        assert o.code == 1 and words in o.err, (cmd[0], o.err)
    assert (run / "checkpoints" / "best.pt").read_bytes() == damaged
    assert not (tmp_path / "pkg").exists()


def test_predict_without_data_json_and_export_under_a_file(tmp_path, trained, image):
    run = copy_run(trained, tmp_path, stopped=False)
    (run / "data.json").unlink()
    o = cli("predict", run, image)
    assert_plain(o)
    assert o.code == 1 and "data.json is missing" in o.err
    f = tmp_path / "afile"
    f.write_text("x")
    o = cli("export", trained, "--format", "onnx", "--out", f / "pkg")
    assert_plain(o)
    assert o.code == 1 and "is a file, not a folder" in o.err and f.read_text() == "x"


# --- tampered packages ------------------------------------------------------------------------------
def _rehash(pkg: Path) -> None:
    """What an attacker who edits a package also does: write SHA256SUMS again."""
    from tlstudio.core.delivery.export import write_checksums

    write_checksums(pkg)


def _edit_json(pkg: Path, **changes) -> None:
    spec = json.loads((pkg / "package.json").read_text())
    spec.update(changes)
    (pkg / "package.json").write_text(json.dumps(spec))


def _sums_without(pkg: Path, name: str) -> None:
    lines = (pkg / "SHA256SUMS").read_text().splitlines()
    (pkg / "SHA256SUMS").write_text("".join(f"{ln}\n" for ln in lines if not ln.endswith(f"  {name}")))


def _flip_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _outside_model(pkg: Path) -> None:
    shutil.copy(pkg / "model.onnx", pkg.parent / "outside.onnx")
    _edit_json(pkg, model_file="../outside.onnx")
    _rehash(pkg)


def _link_outside(pkg: Path) -> None:
    target = pkg.parent / "elsewhere.onnx"
    shutil.copy(pkg / "model.onnx", target)
    (pkg / "model.onnx").unlink()
    (pkg / "model.onnx").symlink_to(target)
    _rehash(pkg)


def _garbage_model(pkg: Path) -> None:
    (pkg / "model.onnx").write_bytes(b"not an onnx model" * 100)
    _rehash(pkg)


PACKAGES = [
    ("model-changed", lambda k: _flip_byte(k / "model.onnx"), "model.onnx was changed after the export"),
    ("model-line-deleted", lambda k: _sums_without(k, "model.onnx"), "model.onnx is not listed in SHA256SUMS"),
    ("sums-emptied", lambda k: (k / "SHA256SUMS").write_text(""), "SHA256SUMS lists no files"),
    ("sums-deleted", lambda k: (k / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
    ("file-added", lambda k: (k / "extra.py").write_text("import os\n"), "extra.py is not listed in SHA256SUMS"),
    ("model-file-outside", _outside_model, "model file '../outside.onnx' lies outside the package folder"),
    ("model-file-absolute", lambda k: (_edit_json(k, model_file="/etc/hostname"), _rehash(k)),
     "lies outside the package folder"),
    ("package-json-garbled", lambda k: ((k / "package.json").write_text("{ not json"), _rehash(k)),
     "package.json: damaged (not valid JSON"),
    ("package-json-changed", lambda k: (k / "package.json").write_text("{ not json"),
     "package.json was changed after the export"),
    ("sums-path-escapes", lambda k: (k / "SHA256SUMS").write_text("0" * 64 + "  ../../etc/passwd\n"),
     "names '../../etc/passwd', outside the package folder"),
    ("sums-malformed", lambda k: (k / "SHA256SUMS").write_text("this is not a checksum list\n"),
     "is not 'SHA256  FILE'"),
    ("labels-deleted", lambda k: (k / "labels.json").unlink(), "labels.json listed in SHA256SUMS is missing"),
    ("model-link-outside", _link_outside, "model.onnx leads outside the package folder"),
    ("model-garbage", _garbage_model, "the model could not be loaded by onnxruntime"),
]


@pytest.mark.parametrize("name, tamper, words", PACKAGES, ids=[c[0] for c in PACKAGES])
def test_a_tampered_package_is_refused_naming_the_file(tmp_path, package, image, name, tamper, words):
    pkg = tmp_path / "pkg"
    shutil.copytree(package, pkg, symlinks=True)
    tamper(pkg)
    o = cli("predict", pkg, image)
    assert_plain(o)
    assert o.code == 1 and words in o.err, o.err


def test_the_untouched_package_predicts(package, image):
    o = cli("predict", package, image, "--json")
    assert o.code == 0, o.err
    assert json.loads(o.out)[0]["predicted"] in ("3", "8")
