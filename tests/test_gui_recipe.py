"""Run › Find the best recipe… and Run › Compare with the plain recipe… in the window: the
search's arms fill the table with their validation metric, interval and time, the winner's
test split is used once, and "Use this recipe" makes it the project's recipe (saved)."""
from __future__ import annotations

from pathlib import Path

from gui_support import close_window, open_window, sample_copy

from tlstudio.core.config import load_project


def test_find_the_best_recipe_from_the_menu(qtbot, tmp_path):
    project = sample_copy(tmp_path / "proj", epochs=2, size=32)
    w = open_window(qtbot, project, wait_models=False)
    act = w.findChild(type(w.act_train), "actFindRecipe")
    assert act is not None and "recipe" in act.text()
    act.trigger()
    dlg = w.recipe_dialog
    assert dlg.isVisible() and not dlg.use_btn.isEnabled()
    dlg.epochs.setValue(2)  # every arm 2 epochs: one rung, the best of six finishes
    dlg.start_btn.click()
    assert dlg.running and not w.page("train").train_btn.isEnabled()  # one training at a time
    qtbot.waitUntil(lambda: not dlg.running, timeout=900_000)
    assert dlg.error_info is None, dlg.error_info and dlg.error_info.details
    s = dlg.search
    assert s.best is not None and s.metric == "accuracy"  # ten digit classes
    assert dlg.table.rowCount() == 6
    rows = [[dlg.table.item(r, c).text() for c in range(6)] for r in range(6)]
    assert all(" to " in r[3] and r[4] != "–" for r in rows)  # every arm: its interval and its time
    assert sum(r[5] == "chosen" for r in rows) == 1
    # the choice saw validation only: only the winner's run has test results
    tested = [a for a in s.arms if (Path(a.run_dir) / "evaluation_test.json").exists()]
    assert tested == [s.best] and s.test.get("accuracy") is not None
    assert s.best.score == max(a.score for a in s.arms if a.epochs_done == a.epochs)
    assert dlg.verdict.isVisible() and "Best on validation" in dlg.verdict.label.text()
    assert w.page("train").train_btn.isEnabled()
    dlg.use_btn.click()
    saved = load_project(project)
    assert saved.technique.id == s.best.technique and saved.training.lr == s.best.lr
    assert saved.data.source == load_project(project).data.source and not w.studio.dirty
    dlg.close()

    # the plain-recipe comparison opens the same Compare dialog, set to the baseline
    w.findChild(type(w.act_train), "actCompareBaseline").trigger()
    cmp = w.page("train").scratch_dialog
    assert cmp.isVisible() and cmp.against.currentData() == "baseline"
    cmp.close()
    close_window(qtbot, w)
