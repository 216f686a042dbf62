"""The edges of the command line: bad project files, --set values, devices, folders, options
and weight files.  Each is refused before anything runs, blamed on where it came from (the
file, the flag, the --set), with exit code 1 and no traceback; --debug shows the traceback."""
from __future__ import annotations

import pytest
from faultlib import assert_plain, cli, code_carrying_pickle

from conftest import SAMPLE_PROJECT

PROJECT_FILES = [
    ("not-toml", "name = \n[training\n", "not valid TOML"),
    ("wrong-type", '[training]\nbatch_size = "big"\n', "training.batch_size"),
    ("unknown-key", "[training]\nlearning_rate = 0.1\n", "training.learning_rate: unknown setting"),
    ("out-of-bounds", "[training]\nepochs = 0\n", "training.epochs"),
    ("unknown-task", 'task = "segmentation"\n', "task"),
    ("bad-device", '[training]\ndevice = "gpu"\n', "training.device: unknown device 'gpu'"),
    ("binary", b"\xff\xfe\x00\x01\x02", "not a text file"),
    ("section-as-value", 'training = 3\n', "training"),
    ("bad-split-share", "[data.split]\nval_fraction = 0.9\n", "data.split.val_fraction"),
    ("bad-image-size", "[model]\nimage_size = 4\n", "model.image_size"),
]


@pytest.mark.parametrize("name, content, words", PROJECT_FILES, ids=[c[0] for c in PROJECT_FILES])
def test_bad_project_file_names_the_file_and_the_field(tmp_path, name, content, words):
    f = tmp_path / "project.toml"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    o = cli("train", f, "--runs-dir", tmp_path / "runs")
    assert_plain(o)
    assert o.code == 1 and str(f) in o.err and words in o.err, o.err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_missing_project_and_a_folder_without_one(tmp_path):
    for ref in (tmp_path / "nope.toml", tmp_path):
        o = cli("train", ref, "--runs-dir", tmp_path / "runs")
        assert_plain(o)
        assert o.code == 1 and "no such project file" in o.err, o.err


SETS = [
    ("training.lr.x=1", "--set training.lr.x=1: training.lr is a setting (a number), not a section"),
    ("name.first=1", "--set name.first=1: name is a setting (a text), not a section"),
    ("training.lr=0.1\njunk=2", "the value holds a line break"),
    ("training.lr", "--set expects KEY=VALUE"),
    ("training.lrr=0.1", "--set training.lrr=0.1: training.lrr: unknown setting"),
    ("training.epochs=many", "--set training.epochs=many: training.epochs"),
    (".lr=1", "is not a setting name"),
    ("=1", "is not a setting name"),
    ("training=1", "--set training=1: training"),
    ("training.device=tpu", "--set training.device=tpu: training.device: unknown device 'tpu'"),
    ("augmentation.rotation=400", "--set augmentation.rotation=400: augmentation.rotation"),
    ("technique.settings.nonsense=1", "--set technique.settings.nonsense=1: technique.settings.nonsense: unknown setting"),
]


@pytest.mark.parametrize("assignment, words", SETS, ids=[s[0].replace("\n", "\\n") for s in SETS])
def test_bad_set_is_blamed_on_the_set_not_the_file(tmp_path, assignment, words):
    o = cli("train", SAMPLE_PROJECT, "--set", assignment, "--runs-dir", tmp_path / "runs")
    assert_plain(o)
    assert o.code == 1 and words in o.err, o.err
    assert str(SAMPLE_PROJECT) not in o.err  # the file is fine: the --set is not
    assert not (tmp_path / "runs").exists()


def test_quick_flags_with_a_bad_value_are_blamed_on_the_command_line(tmp_path, tiny_digits):
    o = cli("train", "--data", tiny_digits, "--device", "gpu", "--runs-dir", tmp_path / "runs")
    assert_plain(o)
    assert o.code == 1 and "command line: training.device: unknown device 'gpu'" in o.err, o.err
    o = cli("train", "--data", tiny_digits, "--image-size", "5", "--runs-dir", tmp_path / "runs")
    assert o.code == 1 and "command line: model.image_size" in o.err


def test_switching_technique_drops_the_other_techniques_settings_and_says_so(tmp_path):
    from tlstudio.cli import build_project, make_parser
    from tlstudio.core.plugins import get_plugin_manager

    args = make_parser().parse_args(["train", str(SAMPLE_PROJECT), "--technique", "frozen-features"])
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        project = build_project(args, get_plugin_manager())
    assert project.technique.id == "frozen-features"
    from tlstudio.core.config import load_project

    old = load_project(SAMPLE_PROJECT).technique.settings
    kept = set(project.technique.settings)
    assert kept <= set(old) and set(old) - kept, (old, kept)  # some settings are not frozen-features'
    assert "were dropped" in err.getvalue() and all(k in err.getvalue() for k in set(old) - kept)
    get_plugin_manager().technique("frozen-features").make_config(project.technique.settings)  # valid for it


def test_runs_dir_that_is_a_file_or_under_one(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for runs in (f, f / "runs"):
        o = cli("train", SAMPLE_PROJECT, "--runs-dir", runs, "--epochs", "1")
        assert_plain(o)
        assert o.code == 1 and "is a file" in o.err and str(runs) in o.err, o.err
    assert f.read_text() == "x"


def test_resume_of_something_that_is_not_a_run(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "package.json").write_text("{ not json")
    for ref, words in ((tmp_path, "not a run folder"), (tmp_path / "missing", "not a run folder"),
                       (tmp_path / "pkg", "an exported model package, not a run folder")):
        for cmd in (["train", "--resume", ref], ["report", ref], ["export", ref, "--out", tmp_path / "o"]):
            o = cli(*cmd)
            assert_plain(o)
            assert o.code == 1 and words in o.err, (cmd, o.err)


def test_validate_data_of_nothing(tmp_path):
    o = cli("validate-data", tmp_path / "nothing")
    assert_plain(o)
    assert o.code == 1 and "no such file or folder" in o.err


WEIGHTS = [
    ("folder", lambda p: p.mkdir() or p, "a folder; import-weights takes one weights file"),
    ("missing", lambda p: p, "no such file"),
    ("text", lambda p: _write(p, b"these are not weights"), "not a weights file"),
    ("empty", lambda p: _write(p, b""), "not a weights file"),
    ("code", lambda p: code_carrying_pickle(p), "refused to load"),
    ("truncated", lambda p: _truncated_weights(p), "damaged"),
    ("hash-in-name", lambda p: _weights(p.with_name("resnet18-00000000.pth")), "do not match the hash in its name"),
]


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


def _weights(p):
    import torch

    torch.save({"fc.weight": torch.zeros(2, 2)}, p)
    return p


def _truncated_weights(p):
    _weights(p)
    p.write_bytes(p.read_bytes()[:200])
    return p


@pytest.mark.parametrize("name, make, words", WEIGHTS, ids=[w[0] for w in WEIGHTS])
def test_import_weights_refuses_in_plain_words(tmp_path, name, make, words):
    path = make(tmp_path / "w.pth")
    o = cli("import-weights", path)
    assert_plain(o)
    assert o.code == 1 and words in o.err, o.err


def test_debug_shows_the_traceback_and_only_then(tmp_path, monkeypatch):
    import tlstudio.cli as C

    def broken(args, plugins):
        raise ZeroDivisionError("a bug in a command")

    monkeypatch.setattr(C, "cmd_runs", broken)
    o = cli("runs", "--runs-dir", tmp_path)
    assert o.code == 1 and "error: ZeroDivisionError: a bug in a command" in o.err
    assert "Traceback" not in o.err and "--debug" in o.err
    o = cli("--debug", "runs", "--runs-dir", tmp_path)
    assert o.code == 1 and "Traceback (most recent call last)" in o.err
    o = cli("runs", "--runs-dir", tmp_path, "--debug")  # anywhere on the line
    assert o.code == 1 and "Traceback (most recent call last)" in o.err
