"""Write a PNG of every page of the studio window into docs/screenshots/.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots.py [--out docs/screenshots] [--epochs 3]

Works offscreen (widget grabs): trains the bundled sample project twice (fine-tuning and
frozen features, in a temporary studio home, through the same engine as the window) and a
two-class run for the ROC view, then opens the window on them and grabs each page in a
state that shows it: the data report and augmentation preview, the model catalog, the
technique panel, the training charts, the evaluation with a confusion-matrix cell opened
and its Grad-CAM heat maps, predictions, and two runs compared.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from tlstudio.api import hookimpl

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "sample" / "project.toml"


def _spin(app, seconds: float, until=lambda: False) -> bool:
    from PySide6.QtCore import QEventLoop

    end = time.time() + seconds
    while time.time() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if until():
            return True
        time.sleep(0.01)
    return until()


def sample_project(home: Path, epochs: int, size: int, technique: str = "fine-tuning"):
    from tlstudio.core.config import load_project

    p = load_project(SAMPLE)
    p.data.source = str(p.resolve(p.data.source))
    p.data.split.file = ""
    p.training.epochs = epochs
    p.training.device = "cpu"
    p.model.image_size = size
    if technique != p.technique.id:
        p.technique.id = technique
        p.technique.settings = {}
        p.training.lr = 3e-3
    p.save(home / f"{technique}.toml")
    return p


def binary_project(home: Path, epochs: int, size: int):
    """Digits 3 and 8 of the sample (a hard pair) as a CSV: a two-class run for the ROC view."""
    from tlstudio.core.config import Project

    digits = SAMPLE.parent / "digits"
    rows = [(str(f), c) for c in ("3", "8") for f in sorted((digits / c).glob("*.png"))]
    csv_path = home / "three-or-eight.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    p = Project(name="Three or eight")
    p.data.source = str(csv_path)
    p.data.split.mode = "stratified"
    p.data.split.test_fraction = 0.3
    p.model.image_size = size
    p.technique.id = "frozen-features"
    p.training.epochs = epochs * 4
    p.training.lr = 3e-3
    p.training.device = "cpu"
    p.training.monitor = "val_auc"
    p.save(home / "binary.toml")
    return p


def reused(home: Path) -> dict:
    """The finished runs an earlier call left in ``home`` (by technique; the two-class one as "binary")."""
    from tlstudio.core.runs import list_runs

    out = {}
    for r in list_runs(home / "runs"):
        final = r.final()
        if final.get("status") != "done":
            continue
        key = "binary" if len(final.get("test", {}).get("class_names", []) or []) == 2 else final.get("technique")
        out.setdefault(key, final)
    return out


class ExampleBrokenPlugin:
    """A deliberately broken plugin, to show how a failure looks in the Plugins dialog."""

    @hookimpl
    def tlstudio_techniques(self):
        raise RuntimeError("licence server unreachable (this plugin is broken on purpose)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--home", help="studio home to use (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse the runs an earlier call left in --home")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(args.home or tempfile.mkdtemp(prefix="tlstudio-shots-"))
    os.environ["TLSTUDIO_HOME"] = str(home)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(2)
    from tlstudio.core.engine import train

    runs = reused(home) if args.reuse else {}
    t0 = time.time()
    for tech in ("frozen-features", "fine-tuning"):
        if tech in runs:
            continue
        p = sample_project(home, args.epochs if tech == "fine-tuning" else args.epochs * 3, args.size, tech)
        runs[tech] = train(p)
        print(f"trained {tech}: {runs[tech].get('status')} test accuracy {runs[tech].get('test_accuracy')}", flush=True)
    if "binary" not in runs:
        runs["binary"] = train(binary_project(home, args.epochs, args.size))
        print(f"trained binary: test AUC {runs['binary'].get('test_auc')} ({time.time() - t0:.0f} s)", flush=True)

    from tlstudio.gui.app import make_app
    from tlstudio.gui.mainwindow import MainWindow

    app = make_app()
    w = MainWindow()
    w.confirm = False
    w.resize(1440, 900)
    w.show()
    w.start(str(home / "fine-tuning.toml"))
    s = w.studio
    _spin(app, 180, lambda: s.plugins is not None and s.model_status is not None)

    def shot(name: str, widget=None) -> None:
        _spin(app, 0.6)
        path = out / f"{name}.png"
        (widget or w).grab().save(str(path))
        print("wrote", path, flush=True)

    data = w.show_page("data")
    _spin(app, 120, lambda: data.preview_generation > 0 and len(data.thumbs) > 0)
    data.tabs.setCurrentIndex(0)
    shot("1-data")
    data.tabs.setCurrentIndex(2)
    shot("1-data-classes")
    data.tabs.setCurrentIndex(0)

    model = w.show_page("model")
    if model.rec is not None:
        model.measure_all.setChecked(True)  # the two ready models are timed once on this machine
        task = model.recommend()
        _spin(app, 120, lambda: task is None or task.done)
    shot("2-model")

    tech = w.show_page("technique")
    tech.select("fine-tuning")
    groups = tech.form.editor("trainable_groups")
    groups.lineEdit().setText("99")  # an invalid value: marked inline, Train disabled with the reason
    shot("3-technique")
    groups.lineEdit().setText("-1")

    train_page = w.show_page("train")
    train_page.show_history(runs["fine-tuning"]["run_dir"])
    shot("4-train")

    ev = w.show_page("evaluate")
    ev.load_run(runs["fine-tuning"]["run_dir"])
    _spin(app, 60, lambda: ev.results is not None)
    cm = ev.results.confusion_matrix()
    off = cm.copy()
    for i in range(len(off)):
        off[i, i] = -1
    i, j = divmod(int(off.argmax()), off.shape[1])
    if off[i, j] <= 0:
        i = j = 0
    ev.matrix.setCurrentCell(i, j)
    ev.open_cell(i, j)
    n = min(len(ev.cell_refs), 60)
    _spin(app, 180, lambda: len(ev.cams) >= n)
    if ev.cell_list.count():
        ev.cell_list.setCurrentRow(0)
    shot("5-evaluate")
    ev.load_run(runs["binary"]["run_dir"])
    _spin(app, 60, lambda: ev.results is not None and ev.roc_box.isVisible())
    ev.set_threshold(0.35)
    ev.open_cell(1, 0)
    n = min(len(ev.cell_refs), 60)
    _spin(app, 120, lambda: len(ev.cams) >= n)
    if ev.cell_list.count():
        ev.cell_list.setCurrentRow(0)
    shot("5-evaluate-binary")

    pr = w.show_page("predict")
    pr.set_run(runs["fine-tuning"]["run_dir"])
    digits = SAMPLE.parent / "digits"
    files = [str(sorted((digits / c).glob("*.png"))[-1]) for c in ("2", "5", "7", "9")]
    pr.predict(files)
    _spin(app, 120, lambda: len(pr.results) >= len(files))
    pr.table.selectRow(1)
    _spin(app, 60, lambda: len(pr.cams) >= 1)
    shot("6-predict")

    rp = w.show_page("runs")
    _spin(app, 30, lambda: len(rp.rows) >= 3)
    rp.select(runs["fine-tuning"]["run_dir"], runs["frozen-features"]["run_dir"])
    rp.compare()
    _spin(app, 30, lambda: len(rp.compared) == 2)
    shot("7-runs")

    s.plugins.register(ExampleBrokenPlugin(), "example-broken-plugin")
    s.plugins.collect_all()
    dlg = w.plugins_dialog()
    dlg.table.selectRow(0)
    _spin(app, 1)
    shot("plugins-dialog", dlg)
    dlg.close()
    w.close()
    print(f"done in {time.time() - t0:.0f} s; studio home {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
