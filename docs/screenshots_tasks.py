"""PNGs of the window's views for tasks other than image classification and of the domain
shift panel, into docs/screenshots/ (offscreen widget grabs, a temporary studio home):

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots_tasks.py [--out docs/screenshots]
    (or QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots_tasks.py: the window's size for larger screens)

Builds its data the way the tests do (tests/ helpers): a small text CSV, digit scenes with
boxes, MNIST against scikit-learn digits for the shift, and a tiny randomly initialised BERT
trained one epoch for the Predict page (its word scores are a tiny model's, not a real one's).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio-shots-"))
    os.environ["TLSTUDIO_HOME"] = str(tmp / "home")
    sys.path.insert(0, str(REPO / "tests"))
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from conftest import make_digit_folder
    from test_gui_tasks_data import _write_notes
    from test_gui_tasks_shift import sklearn_digit_folder
    from text_helpers import keyword_sentences, make_tiny_model, text_project, write_uci

    from tlstudio.core.data.digit_scenes import write_digit_scenes
    from tlstudio.core.engine import train
    from tlstudio.gui.mainwindow import MainWindow

    def spin(cond=lambda: False, seconds: float = 120.0) -> None:
        end = time.time() + seconds
        while not cond() and time.time() < end:
            app.processEvents()
            time.sleep(0.02)
        for _ in range(25):
            app.processEvents()
            time.sleep(0.01)

    w = MainWindow()
    w.confirm = False
    w.show()
    w.start(None)
    spin(lambda: w.studio.plugins is not None)
    page = w.show_page("data")

    w.studio.set_technique("bert-text-classification", task="text-classification")
    notes = _write_notes(tmp / "notes.csv")
    page.set_source(str(notes))
    spin(lambda: page.label_column.count() > 1, 30)
    page._column_chosen("label_column", "finding")
    spin(lambda: page.table is not None)
    page.tabs.setCurrentIndex(0)
    spin(seconds=0.5)
    w.grab().save(str(out / "1-data-text.png"))
    page.tabs.setCurrentIndex(2)
    spin(seconds=0.5)
    w.grab().save(str(out / "1-data-text-preview.png"))

    scenes = write_digit_scenes(tmp / "scenes", n=12, per_image=(2, 2))
    page._column_chosen("label_column", None)
    w.studio.set_technique("faster-rcnn", task="detection")
    page.set_source(str(scenes / "boxes.csv"))
    spin(lambda: page.table is not None and bool(page.annotated))
    page.tabs.setCurrentIndex(2)
    spin(seconds=0.5)
    w.grab().save(str(out / "1-data-detection.png"))

    w.studio.set_technique("fine-tuning", task="image-classification")
    w.studio.edit("model", image_size=32)
    page.set_source(str(make_digit_folder(tmp / "mnist", classes=(0, 1), per_class=20)))
    page._set_target(str(sklearn_digit_folder(tmp / "sk", per_class=20)))
    spin(lambda: page.table is not None)
    page.tabs.setCurrentWidget(page.shift_tab)
    page.shift_panel.max_images.setValue(30)
    page.shift_panel.permutations.setValue(200)
    page.shift_panel.start()
    spin(lambda: page.shift_panel.result is not None or page.shift_panel.task is None and page.shift_panel.error.isVisible())
    w.grab().save(str(out / "1-data-shift.png"))

    model = make_tiny_model(tmp / "tiny-bert", "bert")
    res = train(text_project(write_uci(tmp / "kw.txt", keyword_sentences(30)), model, epochs=2),
                runs_dir=w.studio.runs_dir())
    w.studio.runsChanged.emit()
    pp = w.show_page("predict")
    pp.set_run(res["run_dir"])
    pp.text_panel.predict("The battery was excellent and I love the screen, but the service was awful.")
    spin(lambda: pp.text_panel.last is not None)
    w.grab().save(str(out / "6-predict-text.png"))
    print("\n".join(str(out / n) for n in ("1-data-text.png", "1-data-text-preview.png", "1-data-detection.png",
                                           "1-data-shift.png", "6-predict-text.png")))
    w.studio.tasks.shutdown()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
