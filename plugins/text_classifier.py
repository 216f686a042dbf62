"""BERT text classification: fine-tune any local Hugging Face model (BERT, DistilBERT,
RoBERTa, clinical BERTs, the bundled MiniLM) on the expert's own labelled texts.

The recipe: the model folder's tokenizer and ``AutoModelForSequenceClassification`` with a
new head; optionally the embeddings and the lowest encoder layers stay frozen; each layer
learns at ``layer_lr_decay`` times the rate of the layer above (layer-wise learning-rate
decay); progressive unfreezing opens the encoder from the top, a few layers per stage; the
learning rate warms up, then decays linearly (training settings ``warmup_epochs`` and
``schedule = "linear"``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import Field

from tlstudio.core import TechniqueConfig, TextClassificationTechnique, hookimpl
from tlstudio.core.blocks import discriminative_param_groups, set_trainable
from tlstudio.core.text import build_text_classifier


class TextClassifierConfig(TechniqueConfig):
    max_length: int = Field(
        128, ge=8, le=4096, title="Maximum length (tokens)",
        description="Texts longer than this many tokens are cut (the run reports how many). Longer is slower; most "
                    "sentences need fewer than 64 tokens, clinical notes several hundred.")
    freeze_embeddings: bool = Field(
        False, title="Freeze embeddings",
        description="Keep the word embeddings as pretrained: saves memory and guards a small data set against "
                    "overfitting rare words.")
    frozen_layers: int = Field(
        0, ge=0, le=96, title="Frozen lower layers",
        description="The first N encoder layers keep their pretrained weights (0 = every layer learns).")
    layer_lr_decay: float = Field(
        0.9, gt=0.0, le=1.0, title="Layer-wise learning-rate decay",
        description="Each layer learns at this times the rate of the layer above it; the head learns at the full "
                    "learning rate. 1 = the same rate everywhere.")
    progressive_unfreezing: bool = Field(
        False, title="Progressive unfreezing",
        description="Start with the head alone, then open the encoder from the top, a few layers per stage.")
    layers_per_stage: int = Field(
        2, ge=1, le=96, title="Layers per stage", description="Progressive unfreezing: layers opened at each stage.")
    epochs_per_stage: int = Field(
        1, ge=1, le=100, title="Epochs per stage", description="Progressive unfreezing: epochs before the next stage.")


class TextClassifier(TextClassificationTechnique):
    id = "bert-text-classification"
    title = "Text classification (BERT)"
    explanation = (
        "A language model pretrained on millions of sentences (BERT, or a smaller relative such as MiniLM, or a "
        "domain model such as a clinical BERT you have on this computer) reads each of your texts and learns to "
        "sort them into your classes. The pretrained layers keep learning, the lowest ones slowest, so that what "
        "the model knows about language is adjusted rather than overwritten. A few hundred labelled texts per class "
        "usually suffice. Freeze the lower layers or unfreeze progressively when you have very few texts."
    )
    Config = TextClassifierConfig

    def recommended_training(self) -> dict:
        return {"epochs": 4, "lr": 1e-4, "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.01,
                "schedule": "linear", "warmup_epochs": 0.3, "grad_clip": 1.0}

    # --- model and what trains ---------------------------------------------------------------
    def build(self, ctx):
        return build_text_classifier(ctx)

    def _eligible(self, ctx) -> list:
        """Groups that may ever train, bottom to top (the head excluded)."""
        c = ctx.config
        groups = ctx.model.groups
        emb = [g for g in groups[:1] if g.name == "embeddings"]
        layers = [g for g in groups[:-1] if g.name != "embeddings"]
        if c.frozen_layers > len(layers) and not getattr(self, "_warned", False):
            self._warned = True
            ctx.log(f"Frozen lower layers = {c.frozen_layers}, but the model has {len(layers)}: every encoder layer "
                    "stays frozen.", "warning")
        return ([] if c.freeze_embeddings else emb) + layers[c.frozen_layers:]

    def stage_of(self, ctx, epoch: int) -> tuple[int, int, list]:
        """(stage index, number of stages, groups that train) at ``epoch``."""
        c = ctx.config
        eligible = self._eligible(ctx)
        head = ctx.model.groups[-1]
        if not c.progressive_unfreezing:
            return 0, 1, [*eligible, head]
        stages = 1 + -(-len(eligible) // c.layers_per_stage)
        stage = min(stages - 1, epoch // c.epochs_per_stage)
        k = min(len(eligible), stage * c.layers_per_stage)
        return stage, stages, [*eligible[len(eligible) - k:], head]

    def _apply_stage(self, ctx, epoch: int, rebuild: bool) -> None:
        stage, stages, train = self.stage_of(ctx, epoch)
        names = [g.name for g in train]
        if names == getattr(self, "_training", None):
            return
        self._training = names
        set_trainable(ctx.model.groups, False)
        set_trainable(train, True)
        if rebuild:
            ctx.set_param_groups(self.param_groups(ctx))
        frozen = [g.name for g in ctx.model.groups if g.name not in names]
        what = "the head" + (f" and {_span(names[:-1])}" if len(names) > 1 else " only")
        msg = (f"Stage {stage + 1} of {stages}: training {what}" if stages > 1 else f"Training {what}") + \
              (f"; frozen: {_span(frozen)}" if frozen else "") + "."
        if stages > 1:
            ctx.emit("stage", stage=stage + 1, stages=stages, epoch=epoch + 1, message=msg, trainable=names)
        else:
            ctx.log(msg)

    def on_fit_start(self, ctx) -> None:
        self._training = None
        # ctx.epoch is the last completed epoch on resume: the optimizer state saved then matches these groups
        self._apply_stage(ctx, ctx.epoch, rebuild=False)

    def on_epoch_start(self, ctx, epoch: int) -> None:
        self._apply_stage(ctx, epoch, rebuild=True)

    def param_groups(self, ctx) -> list[dict]:
        return discriminative_param_groups(ctx.model, ctx.training.lr, ctx.config.layer_lr_decay)

    # --- results window ------------------------------------------------------------------------
    def result_view(self, run_dir, parent=None):
        return make_result_view(self, Path(run_dir), parent)


def _span(names: list[str]) -> str:
    """'layer 3', 'layer 4', 'layer 5' -> 'layers 3-5' (embeddings and head named as they are)."""
    nums = [int(n.split()[1]) for n in names if n.startswith("layer ")]
    others = [n for n in names if not n.startswith("layer ")]
    parts = [n for n in others if n == "embeddings"]
    if nums:
        lo, hi = min(nums), max(nums)
        parts.append(f"layer {lo}" if lo == hi else f"layers {lo}-{hi}")
    parts += [n for n in others if n != "embeddings"]
    return ", ".join(parts)


# --- the result view (Qt imported here only) -------------------------------------------------------
def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def make_result_view(technique: TextClassifier, run_dir: Path, parent=None):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QTabWidget,
                                   QVBoxLayout, QWidget)

    def table(headers: list[str], name: str) -> QTableWidget:
        t = QTableWidget(0, len(headers))
        t.setObjectName(name)
        t.setHorizontalHeaderLabels(headers)
        t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        return t

    def fmt(v) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    class TextResultView(QWidget):
        """A finished text-classification run: per-class metrics, texts by class. Trying a
        sentence of one's own is the Predict page's (in the model thread, never the window's)."""

        def __init__(self):
            super().__init__(parent)
            self.run_dir = run_dir
            self.evaluation = _read_json(run_dir / "evaluation_test.json")
            self.data = _read_json(run_dir / "data.json")
            self.rows = _read_rows(run_dir / "test_predictions.csv")
            self.class_names = list(self.evaluation.get("class_names") or self.data.get("class_names") or [])
            tabs = QTabWidget(self)
            tabs.setObjectName("text_result_tabs")
            tabs.addTab(self._metrics_tab(), "Per-class results")
            tabs.addTab(self._texts_tab(), "Texts by class")
            lay = QVBoxLayout(self)
            lay.setContentsMargins(0, 0, 0, 0)
            pointer = QLabel("To try a text of your own — its class, every class's probability and the words that "
                             "drove it — open the Predict page (Ctrl+6).")
            pointer.setObjectName("try_pointer")
            pointer.setWordWrap(True)
            lay.addWidget(pointer)
            lay.addWidget(tabs)
            self.tabs = tabs

        # --- per-class metrics ------------------------------------------------------------------
        def _metrics_tab(self) -> QWidget:
            w = QWidget()
            lay = QVBoxLayout(w)
            ev = self.evaluation
            if not ev:
                lay.addWidget(QLabel("This run has no test results (no test split, or it did not finish)."))
                self.per_class = table(["class"], "per_class_table")
                lay.addWidget(self.per_class)
                return w
            ci = ev.get("accuracy_ci95") or [None, None]
            summary = QLabel(f"Test set: {ev.get('n')} texts — accuracy {fmt(ev.get('accuracy'))} (95% CI "
                             f"{fmt(ci[0])}–{fmt(ci[1])}), balanced accuracy {fmt(ev.get('balanced_accuracy'))}, "
                             f"AUC {fmt(ev.get('auc'))}, macro F1 {fmt(ev.get('f1_macro'))}")
            summary.setObjectName("metrics_summary")
            summary.setWordWrap(True)
            lay.addWidget(summary)
            t = self.truncation_line()
            if t:
                lay.addWidget(QLabel(t))
            self.per_class = table(["class", "sensitivity (recall)", "specificity", "precision", "F1", "support"],
                                   "per_class_table")
            per = ev.get("per_class", {})
            self.per_class.setRowCount(len(per))
            for i, (name, pc) in enumerate(per.items()):
                for j, v in enumerate([name, pc.get("sensitivity"), pc.get("specificity"), pc.get("precision"),
                                       pc.get("f1"), pc.get("support")]):
                    self.per_class.setItem(i, j, QTableWidgetItem(fmt(v)))
            lay.addWidget(self.per_class)
            cm = ev.get("confusion_matrix") or []
            names = ev.get("class_names") or []
            lay.addWidget(QLabel("Confusion matrix (rows: true class, columns: predicted):"))
            self.confusion = table(names, "confusion_table")
            self.confusion.setRowCount(len(cm))
            self.confusion.setVerticalHeaderLabels(names)
            self.confusion.verticalHeader().setVisible(True)
            for i, r in enumerate(cm):
                for j, v in enumerate(r):
                    item = QTableWidgetItem(str(v))
                    if i == j:
                        item.setBackground(QColor(46, 160, 67, 60))
                    self.confusion.setItem(i, j, item)
            lay.addWidget(self.confusion)
            return w

        def truncation_line(self) -> str:
            t = self.data.get("truncation") or {}
            if not t:
                return ""
            return (f"Maximum length {t['max_length']} tokens: {t['truncated']} of {t['texts']} texts were cut "
                    f"(longest {t['longest_tokens']} tokens).")

        # --- texts by class ---------------------------------------------------------------------
        def _texts_tab(self) -> QWidget:
            w = QWidget()
            lay = QVBoxLayout(w)
            row = QHBoxLayout()
            row.addWidget(QLabel("True class:"))
            self.class_filter = QComboBox()
            self.class_filter.setObjectName("class_filter")
            self.class_filter.addItems(["all classes", *self.class_names])
            row.addWidget(self.class_filter)
            row.addWidget(QLabel("Show:"))
            self.outcome_filter = QComboBox()
            self.outcome_filter.setObjectName("outcome_filter")
            self.outcome_filter.addItems(["all", "misclassified", "correct"])
            row.addWidget(self.outcome_filter)
            row.addStretch(1)
            self.count_label = QLabel("")
            row.addWidget(self.count_label)
            lay.addLayout(row)
            self.texts = table(["text", "true class", "predicted", "confidence"], "texts_table")
            self.texts.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            self.texts.setWordWrap(True)
            lay.addWidget(self.texts)
            self.class_filter.currentIndexChanged.connect(self.fill_texts)
            self.outcome_filter.currentIndexChanged.connect(self.fill_texts)
            self.fill_texts()
            return w

        def fill_texts(self) -> None:
            cls = self.class_filter.currentText()
            outcome = self.outcome_filter.currentText()
            rows = [r for r in self.rows if (cls == "all classes" or r.get("label") == cls)
                    and (outcome == "all" or (r.get("correct") == "1") == (outcome == "correct"))]
            self.texts.setRowCount(len(rows))
            for i, r in enumerate(rows):
                conf = r.get(f"p_{r.get('predicted')}")
                cells = [r.get("text", r.get("ref", "")), r.get("label", ""), r.get("predicted", ""),
                         f"{100 * float(conf):.0f}%" if conf else ""]
                for j, v in enumerate(cells):
                    item = QTableWidgetItem(v)
                    if j == 0:
                        item.setToolTip(v)
                    if r.get("correct") == "0":
                        item.setForeground(QColor(200, 40, 40))
                    self.texts.setItem(i, j, item)
            self.count_label.setText(f"{len(rows)} of {len(self.rows)} test texts")

    return TextResultView()


@hookimpl
def tlstudio_techniques():
    return [TextClassifier()]
