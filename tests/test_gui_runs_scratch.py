"""The negative-transfer check from the Train page: transfer and from-scratch arms trained in a
worker (2 seeds, 1 epoch, frozen features, 32 px), both shown with mean and 95% CI, and the
verdict; a warning banner when scratch does as well as transfer."""
from __future__ import annotations

from gui_support import close_window, open_window, sample_copy


def test_compare_with_scratch_from_the_train_page(qtbot, tmp_path):
    from tlstudio.core.analysis.compare import Arm, ScratchComparison

    project = sample_copy(tmp_path / "proj", epochs=1, size=32, technique="frozen-features")
    w = open_window(qtbot, project, wait_models=False)
    train = w.show_page("train")
    qtbot.waitUntil(lambda: train.scratch_btn.isEnabled(), timeout=60_000)
    train.scratch_btn.click()
    dlg = train.scratch_dialog
    assert dlg is not None and dlg.isVisible()
    dlg.seeds.setValue(2)
    dlg.start_btn.click()
    assert dlg.running and not train.train_btn.isEnabled()  # one training at a time
    qtbot.waitUntil(lambda: not dlg.running, timeout=300_000)
    assert dlg.error_info is None, dlg.error_info and dlg.error_info.details
    cmp = dlg.comparison
    assert len(cmp.transfer.values) == 2 and len(cmp.scratch.values) == 2
    table = {dlg.table.item(r, 0).text(): [dlg.table.item(r, c).text() for c in range(6)]
             for r in range(dlg.table.rowCount())}
    assert table["transfer"][2] == "2" and table["scratch"][2] == "2"
    assert table["transfer"][3] == f"{cmp.transfer.mean:.3f}"[:len(table['transfer'][3])]
    assert " to " in table["transfer"][4] and " to " in table["scratch"][4]  # the 95% CIs
    assert dlg.verdict.isVisible() and dlg.verdict.label.text() == cmp.verdict
    assert dlg.plot is not None and dlg.plot.isVisible()  # the seeds, means and CIs drawn
    assert train.train_btn.isEnabled()

    # the four runs are in the run store
    rp = w.show_page("runs")
    qtbot.waitUntil(lambda: len(rp.rows) == 4 and all(r["status"] == "done" for r in rp.rows), timeout=30_000)

    # scratch as good as transfer: the warning banner says negative transfer
    neg = ScratchComparison("accuracy", Arm("transfer", "imagenet", [0.60, 0.62], [1, 2]),
                            Arm("scratch", "none", [0.70, 0.66], [1, 2]))
    dlg.show_result(neg)
    assert "negative transfer" in dlg.verdict.label.text() and "WARN" in dlg.verdict.label.text()
    assert "fef5e7" in dlg.verdict.styleSheet()  # the warning colours
    dlg.show_result(cmp)
    assert ("fef5e7" in dlg.verdict.styleSheet()) == cmp.negative_transfer
    dlg.close()
    close_window(qtbot, w)
