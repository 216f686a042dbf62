"""The built-in tasks as plugins: image classification, object detection, captioning and text
classification, registered through the entry point ``builtin-tasks`` exactly as a third-party
task is (see docs/plugins.md and the multi-label example).  Their data, metrics and results
are core building blocks; the window's views of their results are here."""
from __future__ import annotations

from pathlib import Path

from tlstudio.api import CaptioningTask, DetectionTask, ImageClassificationTask, TextClassificationTask, hookimpl


class Detection(DetectionTask):
    def result_view(self, run_dir, parent=None):
        from .result_views import DetectionResultView

        return DetectionResultView(Path(run_dir), parent)


class Captioning(CaptioningTask):
    def result_view(self, run_dir, parent=None):
        from .result_views import CaptionResultView

        return CaptionResultView(Path(run_dir), parent)


class TextClassification(TextClassificationTask):
    def result_view(self, run_dir, parent=None):
        from .result_views import TextResultView

        return TextResultView(Path(run_dir), parent)


@hookimpl
def tlstudio_tasks():
    return [ImageClassificationTask(), Detection(), Captioning(), TextClassification()]
