"""Write a PNG of every page of the studio window into docs/screenshots/, as a radiographer sees
it on a 1366 x 768 screen:

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots.py [--out docs/screenshots] [--epochs 4]

(Debian/Ubuntu: `apt-get install xvfb`; without Xvfb, `QT_QPA_PLATFORM=offscreen` also works, at the
window's size for larger screens.)  Trains, in a temporary studio home and through the same
engine as the window, the medical sample (breast ultrasound) with the recommended technique and
with frozen features, and the digits sample briefly (other data, for the comparison warning);
then opens the window on the medical sample at its default size for this screen and grabs each
page in a state that shows it: the data report and augmentation preview, the recommended model,
the technique's simple path (and its Advanced settings), the training charts, the evaluation
with a confusion-matrix cell opened and its Grad-CAM heat maps, predictions of a folder, two
runs compared, the warning for runs of different data, the Help guide and the Plugins dialog.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tlstudio.api import hookimpl

REPO = Path(__file__).resolve().parents[1]
BREAST = REPO / "resources" / "samples" / "breast-ultrasound" / "project.toml"
DIGITS = REPO / "resources" / "sample" / "project.toml"


def _spin(app, seconds: float, until=lambda: False) -> bool:
    from PySide6.QtCore import QEventLoop

    end = time.time() + seconds
    while time.time() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if until():
            return True
        time.sleep(0.01)
    return bool(until())


def sample_project(path: Path, epochs: int, size: int, technique: str | None = None):
    """A sample's project with absolute paths, CPU, ``epochs`` and ``size`` (mirror images answered)."""
    from tlstudio.core.config import load_project

    p = load_project(path).with_absolute_paths()
    p.training.epochs = epochs
    p.training.device = "cpu"
    p.model.image_size = size
    if p.augmentation.mirror_safe is None:
        p.augmentation.mirror_safe = True  # an ultrasound lump mirrored is still a lump
    if technique and technique != p.technique.id:
        from tlstudio.core.plugins import get_plugin_manager

        tech = get_plugin_manager().technique(technique)
        p.technique.id, p.technique.settings = technique, {}
        for k, v in tech.recommended_training().items():
            if k != "epochs":
                setattr(p.training, k, v)
    return p


def reused(home: Path) -> dict:
    """The finished runs an earlier call left in ``home`` (by the key in their project's name)."""
    from tlstudio.core.runs import list_runs

    out = {}
    for r in list_runs(home / "runs"):
        final = r.final()
        if final.get("status") == "done":
            out.setdefault(r.project().name.split(" · ")[-1], final)
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
    if not os.environ.get("DISPLAY"):
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
    plan = {"recommended": (BREAST, args.epochs, None), "frozen": (BREAST, args.epochs * 3, "frozen-features"),
            "digits": (DIGITS, 2, None)}
    for key, (path, epochs, technique) in plan.items():
        if key in runs:
            continue
        p = sample_project(path, epochs, args.size if key != "digits" else 32, technique)
        p.name = f"{p.name} · {key}"
        runs[key] = train(p)
        print(f"trained {key}: {runs[key].get('status')} test accuracy {runs[key].get('test_accuracy')} "
              f"AUC {runs[key].get('test_auc')} ({time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)

    from tlstudio.gui.app import make_app
    from tlstudio.gui.mainwindow import MainWindow

    app = make_app()
    screen = app.primaryScreen().geometry()
    print(f"screen {screen.width()} x {screen.height()} ({app.platformName()})", flush=True)
    w = MainWindow()
    w.confirm = False
    w.show()
    w.start(None, "breast-ultrasound")
    s = w.studio
    _spin(app, 240, lambda: s.plugins is not None and s.model_status is not None and s.data_table is not None)
    print(f"window {w.width()} x {w.height()}", flush=True)

    def shot(name: str, widget=None) -> None:
        _spin(app, 0.8)
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
    _spin(app, 240, lambda: model._recommended is not None and "Ranking" not in model.rec_text.text())
    shot("2-model")

    tech = w.show_page("technique")
    _spin(app, 240, lambda: bool(tech.plan and tech.plan.images_per_s))
    shot("3-technique")  # the mirror question not answered yet
    tech.answer_mirror(True)
    tech.advanced.set_expanded(True)
    shot("3-technique-advanced")
    tech.advanced.set_expanded(False)

    train_page = w.show_page("train")
    train_page.show_history(runs["recommended"]["run_dir"])
    shot("4-train")

    ev = w.show_page("evaluate")
    ev.load_run(runs["recommended"]["run_dir"])
    _spin(app, 60, lambda: ev.results is not None and ev.roc_box.isVisible())
    cm = ev.results.confusion_matrix()
    i, j = (0, 1) if cm[0][1] > 0 else (0, 0)  # malignant images called normal or benign, if any
    ev.matrix.setCurrentCell(i, j)
    ev.open_cell(i, j)
    n = min(len(ev.cell_refs), 60)
    _spin(app, 240, lambda: len(ev.cams) >= n)
    if ev.cell_list.count():
        ev.cell_list.setCurrentRow(0)
    shot("5-evaluate")

    import numpy as np
    from PIL import Image

    clinic = home / "clinic"
    clinic.mkdir(exist_ok=True)
    with np.load(BREAST.parent / "breastmnist.npz") as z:
        for k in range(8):
            Image.fromarray(z["test_images"][k]).save(clinic / f"scan-{k:02d}.png")
    pr = w.show_page("predict")
    pr.set_run(runs["recommended"]["run_dir"])
    pr.predict([str(clinic)])
    _spin(app, 120, lambda: len(pr.results) >= 8)
    pr.table.selectRow(0)
    _spin(app, 60, lambda: len(pr.cams) >= 1)
    shot("6-predict")

    rp = w.show_page("runs")
    _spin(app, 30, lambda: len(rp.rows) >= 3)
    rp.select(runs["recommended"]["run_dir"], runs["frozen"]["run_dir"])
    rp.compare()
    _spin(app, 30, lambda: len(rp.compared) == 2)
    shot("7-runs")
    rp.select(runs["recommended"]["run_dir"], runs["digits"]["run_dir"])
    rp.compare()
    _spin(app, 30, lambda: rp.compare_warning.isVisible())
    shot("7-runs-different-data")

    guide = w.guide()
    _spin(app, 1)
    shot("help-guide", guide)
    guide.close()

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
