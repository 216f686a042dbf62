""""Find the best recipe…": the recipe search of ``tlstudio.core.analysis.recipe`` in a dialog.

Settings (time budget, the validation metric, epochs), Start/Stop, a table of the six arms
that fills in as the search goes (recipe, epochs trained, validation metric with its 95%
interval, time, outcome), the verdict with the winner's test figures, and "Use this recipe",
which makes the winner the project's technique and training (and saves the project when it
has a file).  The search runs in a worker thread; the window never touches torch.
"""
from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFormLayout, QHeaderView, QLabel,
                               QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout)

from .scratch import CompareWorker, WorkerDialog
from .widgets import Banner, fmt_seconds, hint

COLUMNS = ["Recipe", "Epochs", "Validation", "95% CI", "Time", "Outcome"]


class RecipeDialog(WorkerDialog):
    prefix, what = "recipe", "recipe search"

    def __init__(self, studio, parent=None):
        super().__init__(studio, parent)
        self.search = None
        self.setWindowTitle("Find the best recipe")
        self.resize(920, 520)
        v = QVBoxLayout(self)
        v.addWidget(hint("Which recipe suits these images? Frozen features, fine-tuning and progressive unfreezing, each "
                         "at two learning rates, train on your data; the weaker ones stop early (successive halving) "
                         "and the best on the validation images runs its whole schedule. The choice never looks at the "
                         "test images: they are used once, at the end, for the winner."))
        form = QFormLayout()
        self.budget = QDoubleSpinBox()
        self.budget.setObjectName("recipeBudget")
        self.budget.setRange(0, 24 * 60)
        self.budget.setDecimals(0)
        self.budget.setSuffix(" min")
        self.budget.setSpecialValueText("no limit")
        self.budget.setValue(0)
        self.budget.setToolTip("Arms carry on only while their expected time fits; the best one always finishes")
        form.addRow("Time budget", self.budget)
        self.metric_box = QComboBox()
        self.metric_box.setObjectName("recipeMetric")
        for key, title in (("auto", "AUC for two classes, else accuracy"), ("auc", "AUC"), ("accuracy", "Accuracy")):
            self.metric_box.addItem(title, key)
        form.addRow("Choose on validation", self.metric_box)
        self.epochs = QSpinBox()
        self.epochs.setObjectName("recipeEpochs")
        self.epochs.setRange(0, 1000)
        self.epochs.setSpecialValueText("each recipe's own")
        form.addRow("Epochs", self.epochs)
        v.addLayout(form)
        self.stage = QLabel("")
        self.stage.setObjectName("recipeStage")
        self.stage.setWordWrap(True)
        v.addWidget(self.stage)
        self.verdict = Banner("")
        self.verdict.hide()
        v.addWidget(self.verdict)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("recipeTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        v.addWidget(self.table, 1)
        self.use_btn, = self._add_buttons(v, "Use this recipe")
        self.use_btn.setObjectName("recipeUse")
        self.use_btn.setEnabled(False)
        self.use_btn.clicked.connect(self.use_recipe)

    def start(self) -> bool:
        if not self._can_start():
            return False
        from tlstudio.core.analysis.recipe import find_recipe

        self.verdict.hide()
        self.search = None
        self.use_btn.setEnabled(False)
        self.stage.setText("Starting…")
        self._launch(CompareWorker(find_recipe, self.studio.run_project(), self.budget.value() or None,
                                   self.metric_box.currentData(), epochs=self.epochs.value() or None,
                                   runs_dir=self.studio.runs_dir(), plugins=self.studio.plugins, parent=self))
        return True

    def inputs(self) -> list:
        return [self.budget, self.metric_box, self.epochs]

    def _on_event(self, e: dict) -> None:
        k = e.get("kind")
        if k == "stage":
            self._what = str(e.get("message", ""))
            self.stage.setText(self._what)
        elif k == "epoch":
            self.stage.setText(f"{getattr(self, '_what', '')} — epoch {e.get('epoch')}/{e.get('epochs')}")
        elif k == "recipe":
            self._fill(e.get("arms", []), e.get("metric", ""))

    def _fill(self, arms: list[dict], metric: str) -> None:
        self.table.setHorizontalHeaderItem(2, QTableWidgetItem(f"Validation {metric.replace('_', ' ')}"))
        self.table.setRowCount(len(arms))
        for r, a in enumerate(arms):
            lo, hi = a.get("ci95") or (None, None)
            score = a.get("score")
            vals = [a["name"], f"{a['epochs_done']}/{a['epochs']}", "–" if score is None else f"{score:.3f}",
                    "–" if lo is None else f"{lo:.3f} to {hi:.3f}", fmt_seconds(a.get("seconds")), a.get("status", "")]
            for c, text in enumerate(vals):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)

    def show_result(self, search) -> None:
        self.search = search
        self._fill([a.to_dict() for a in search.arms], search.metric)
        self.verdict.set_text(search.verdict, warn=search.best is None)
        self.stage.setText("Done." if search.best is not None else "")
        self.use_btn.setEnabled(search.best is not None)

    def use_recipe(self) -> bool:
        """The winner becomes the project's technique and training; saved when the project has a file."""
        if self.search is None or self.search.best is None:
            return False
        from tlstudio.core.analysis.recipe import apply_recipe

        recipe = apply_recipe(self.studio.project, self.search.best, self.studio.plugins)
        self.studio.set_technique(recipe.technique.id, {})
        self.studio.replace("training", recipe.training.model_dump())
        if self.studio.path is not None:
            self.studio.save_project()
            self.stage.setText(f"{self.search.best.name} is now the project's recipe (saved).")
        else:
            self.stage.setText(f"{self.search.best.name} is now the project's recipe: save the project to keep it.")
        return True


def open_recipe_dialog(window) -> RecipeDialog:
    """The main window's "Find the best recipe…" action: one dialog per window, shown and raised."""
    dlg = getattr(window, "recipe_dialog", None)
    if dlg is None:
        dlg = window.recipe_dialog = RecipeDialog(window.studio, window)
    dlg.show()
    dlg.raise_()
    return dlg
