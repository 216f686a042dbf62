"""Project files: round trip, and bad files get messages naming the file and the field."""
from __future__ import annotations

import pytest

from tlstudio.core.config import Project, load_project
from tlstudio.core.errors import ProjectError


def test_round_trip(tmp_path):
    p = Project()
    p.name = "Chest X-rays"
    p.data.source = "images"
    p.training.epochs = 7
    p.technique.settings = {"trainable_groups": 2}
    f = p.save(tmp_path / "project.toml")
    q = load_project(f)
    assert q.model_dump() == p.model_dump()
    assert q.resolve(q.data.source) == tmp_path / "images"
    assert q.with_absolute_paths().data.source == str(tmp_path / "images")


def test_wrong_type_names_file_and_field(tmp_path):
    f = tmp_path / "project.toml"
    f.write_text('[training]\nepochs = "many"\n')
    with pytest.raises(ProjectError) as e:
        load_project(f)
    msg = str(e.value)
    assert str(f) in msg and "training.epochs" in msg and "integer" in msg and "'many'" in msg


def test_out_of_range_and_unknown_setting(tmp_path):
    f = tmp_path / "project.toml"
    f.write_text("[training]\nepochs = 0\nlearning_rate = 0.1\n")
    with pytest.raises(ProjectError) as e:
        load_project(f)
    msg = str(e.value)
    assert "training.epochs" in msg and "greater than or equal to 1" in msg
    assert "training.learning_rate" in msg and "unknown setting" in msg


def test_not_toml(tmp_path):
    f = tmp_path / "project.toml"
    f.write_text("this is = = not toml")
    with pytest.raises(ProjectError, match="not valid TOML"):
        load_project(f)


def test_missing_file(tmp_path):
    with pytest.raises(ProjectError, match="no such project file"):
        load_project(tmp_path / "nope.toml")


def test_technique_settings_validated_by_its_config(tmp_path, tiny_digits):
    from conftest import quick_project

    from tlstudio.core.engine import train

    p = quick_project(tiny_digits)
    p.technique.settings = {"trainable_groups": "all of them"}
    p.save(tmp_path / "project.toml")
    events = []
    res = train(load_project(tmp_path / "project.toml"), on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "failed"
    assert "technique.settings.trainable_groups" in res["message"] and str(tmp_path / "project.toml") in res["message"]
    assert events[-1]["kind"] == "failed"


def test_a_run_from_before_the_test_time_flip_keeps_single_view_predictions(tmp_path):
    from tlstudio.core.runs import Run

    p = Project()
    p.augmentation.mirror_safe = True  # the test-time flip applies where mirror images show the same thing
    assert p.augmentation.flips_at_test
    run = Run(tmp_path / "run")
    run.dir.mkdir()
    run.save_project(p)
    assert run.project().augmentation.flips_at_test
    text = run.project_file.read_text(encoding="utf-8")
    run.project_file.write_text("\n".join(line for line in text.splitlines() if "test_time_flip" not in line), encoding="utf-8")
    assert not run.project().augmentation.flips_at_test  # as it was trained and evaluated


def test_the_mirror_question_in_run_files_old_and_new(tmp_path):
    """A new project has not answered whether mirror images show the same thing: it does not
    flip, and its run's file says so (mirror_safe = false). A run from before the question
    (its file does not name it) keeps predicting as it was trained: with the flips it had."""
    from tlstudio.core.runs import Run

    p = Project()
    assert p.augmentation.mirror_safe is None and p.augmentation.horizontal_flip
    assert not p.augmentation.flips_in_training and not p.augmentation.flips_at_test
    assert "mirror_safe" not in p.to_toml()  # TOML has no null: not answered is not written
    run = Run(tmp_path / "new")
    run.dir.mkdir()
    run.save_project(p)
    assert "mirror_safe = false" in run.project_file.read_text(encoding="utf-8")
    assert p.augmentation.mirror_safe is None  # the caller's project keeps its open question
    assert run.project().augmentation.mirror_safe is False and not run.project().augmentation.flips_at_test
    old = Run(tmp_path / "old")
    old.dir.mkdir()
    text = run.project_file.read_text(encoding="utf-8").replace("mirror_safe = false\n", "")
    old.project_file.write_text(text, encoding="utf-8")
    kept = old.project()
    assert kept.augmentation.mirror_safe is True and kept.augmentation.flips_in_training
    assert kept.augmentation.flips_at_test  # trained and evaluated with the test-time flip
    unticked = Run(tmp_path / "old-unticked")
    unticked.dir.mkdir()
    unticked.project_file.write_text(text.replace("horizontal_flip = true", "horizontal_flip = false"), encoding="utf-8")
    assert not unticked.project().augmentation.flips_at_test
