"""Flips only where mirror images show the same thing: a project that has not answered trains
and predicts without mirror images, its run says so; answering yes on the command line brings
the flips and the test-time flip back."""
from __future__ import annotations

import json

import pytest
from conftest import make_digit_folder, quick_project

from tlstudio.core.engine import Trainer
from tlstudio.core.delivery.predict import Predictor
from tlstudio.core.runs import Run

pytestmark = pytest.mark.slow


def _kinds(ctx) -> list[str]:
    return [type(t).__name__ for t in ctx.data.transform(True).transforms]


def test_a_project_without_the_mirror_answer_trains_with_no_flips(tmp_path, capsys):
    data = make_digit_folder(tmp_path / "d", classes=(0, 1, 7), per_class=12)
    p = quick_project(data, epochs=1)
    p.model.image_size = 32
    assert p.augmentation.mirror_safe is None and p.augmentation.preset == "light" and p.augmentation.horizontal_flip
    trainer = Trainer(p, runs_dir=tmp_path / "runs")
    res = trainer.fit()
    assert res["status"] == "done", res
    assert "RandomHorizontalFlip" not in _kinds(trainer.ctx) and "RandomResizedCrop" in _kinds(trainer.ctx)
    run = Run(res["run_dir"])
    assert run.project().augmentation.mirror_safe is False  # the run's file says what it did
    assert "Horizontal flips: not used" in (run.dir / "report.md").read_text()
    assert not Predictor.from_run(run.dir).model.flip_average  # one view per prediction
    # yes, on the command line: flips in training and the test-time flip, and the report says so
    from tlstudio.cli import main

    assert main(["train", "--data", str(data), "--epochs", "1", "--image-size", "32", "--technique", "fine-tuning",
                 "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--mirror-safe", "--json",
                 "--set", "data.split.mode='stratified'"]) == 0
    yes = Run(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"])
    assert yes.project().augmentation.mirror_safe is True
    assert "Horizontal flips: used in training" in (yes.dir / "report.md").read_text()
    assert Predictor.from_run(yes.dir).model.flip_average
    from tlstudio.core.delivery.report import html_report

    assert "Mirror images" in html_report(yes.dir).read_text(encoding="utf-8")
