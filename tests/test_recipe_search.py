"""Find the best recipe: six candidate arms, successive halving on validation within a time
budget, every arm with its interval and time, the test split touched once (the winner's), and
the winner saved as the project's recipe."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlstudio.core.analysis.recipe import (Arm, RecipeSearch, _Search, _within_budget, apply_recipe, candidates,
                                           hanley_mcneil, rung_epochs)
from tlstudio.core.config import Project
from tlstudio.core.plugins import get_plugin_manager


def test_six_candidates_and_their_rungs():
    p = Project()
    p.training.seed, p.training.threads = 5, 2
    arms = candidates(p, get_plugin_manager())
    assert [(a.technique, round(a.lr, 5)) for a in arms] == [
        ("frozen-features", 0.003), ("frozen-features", 0.001), ("fine-tuning", 0.001), ("fine-tuning", 0.00033),
        ("progressive-unfreezing", 0.001), ("progressive-unfreezing", 0.00033)]
    assert {a.technique: a.epochs for a in arms} == {"frozen-features": 30, "fine-tuning": 10,
                                                     "progressive-unfreezing": 10}
    # six arms, a third carry on at each rung: 6 -> 2 -> 1, compared after 2 and 3 of 10 epochs
    assert rung_epochs(10, 6) == [2, 3, 10] and rung_epochs(30, 6) == [3, 10, 30] and rung_epochs(2, 6) == [2]
    # the winner as the project's recipe: its technique with default settings, its training, the project's seed
    r = apply_recipe(p, arms[3])
    assert r.technique.id == "fine-tuning" and r.technique.settings == {}
    assert r.training.lr == pytest.approx(1e-3 / 3) and r.training.class_balance == "weighted_loss"
    assert (r.training.seed, r.training.threads, r.name) == (5, 2, p.name)


def test_intervals_and_the_time_budget():
    lo, hi = hanley_mcneil(0.9, 20, 58)
    assert lo < 0.9 < hi and hanley_mcneil(0.9, 200, 580)[1] - hanley_mcneil(0.9, 200, 580)[0] < hi - lo
    s = _Search(Project(), budget_s=100.0, metric="auc", eta=3, on_event=None, control=None, runs_dir=None,
                plugins=get_plugin_manager())
    fast, slow, best = Arm("frozen-features", 3e-3, 30), Arm("fine-tuning", 1e-3, 10), Arm("fine-tuning", 3e-4, 10)
    for a, secs, done in ((best, 60.0, 2), (slow, 200.0, 2), (fast, 3.0, 3)):
        a.seconds, a.epochs_done = secs, done
    rungs = {a.name: rung_epochs(a.epochs, 6) for a in (fast, slow, best)}
    # to the next rung: the best (30 s more) and what still fits the 100 s (not 100 s more, but 7 s more)
    assert _within_budget(s, [best, slow, fast], rungs, 0) == [best, fast]
    best.seconds = 400.0  # 200 s more: over the budget, and still the best carries on, alone
    assert _within_budget(s, [best, slow, fast], rungs, 0) == [best]
    out = RecipeSearch("auc", [best, slow, fast], rungs, 100.0)
    assert out.verdict.startswith("No recipe chosen")


@pytest.mark.slow
def test_find_recipe_on_the_command_line_saves_the_winner(tmp_path, capsys):
    from conftest import SAMPLE_PROJECT

    from tlstudio.cli import main
    from tlstudio.core.config import load_project

    p = load_project(SAMPLE_PROJECT)
    p.data.source, p.data.split.file = str(p.resolve(p.data.source)), ""
    p.model.image_size, p.training.device = 32, "cpu"
    path = p.save(tmp_path / "project.toml")
    rc = main(["train", str(path), "--find-recipe", "--epochs", "3", "--budget-minutes", "30",
               "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    arms = out["arms"]
    assert len(arms) == 6 and out["metric"] == "accuracy" and out["rungs"]["fine-tuning, lr 0.001"] == [2, 3]
    assert all(a["score"] is not None and a["ci95"][0] <= a["score"] <= a["ci95"][1] and a["seconds"] > 0
               for a in arms)
    stopped = [a for a in arms if a["epochs_done"] < a["epochs"]]
    assert len(stopped) == 4 and all("weaker on validation" in a["status"] for a in stopped)  # 6 -> 2 finish
    winner = arms[out["winner"]]
    assert winner["status"] == "chosen" and winner["score"] == max(a["score"] for a in arms if a not in stopped)
    # the test split, once: only the winner's run has test results; the others held it back
    for a in arms:
        d = Path(a["run_dir"])
        assert (d / "evaluation_test.json").exists() == (a is winner)
        if a not in stopped and a is not winner:
            assert json.loads((d / "final.json").read_text())["test_held_back"] is True
    assert out["test"]["accuracy"] == json.loads((Path(winner["run_dir"]) / "final.json").read_text())["test_accuracy"]
    assert json.loads((Path(winner["run_dir"]) / "recipe_search.json").read_text())["winner_name"] == winner["name"]
    saved = load_project(path)  # the winner is the project's recipe now; the rest of the file as it was
    assert out["saved_to"] == str(path.resolve()) and saved.technique.id == winner["technique"]
    assert saved.training.lr == pytest.approx(winner["lr"]) and saved.training.epochs == 3
    assert saved.data == load_project(path).data and saved.augmentation.mirror_safe is False
