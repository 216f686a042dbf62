"""Technique: every technique plugin with its explanation for the expert, the chosen one's
settings panel (generated from its pydantic Config, or the plugin's own widget), and the
training settings; a learning-rate finder."""
from __future__ import annotations

import importlib
import traceback

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGroupBox, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSplitter, QVBoxLayout, QWidget)

from tlstudio.core.config import TrainingConfig

from ..forms import PydanticForm
from ..tasks import ErrorInfo
from ..widgets import Banner, ErrorPanel, clear_layout, heading, hint
from . import Page, scrolled

DEVICE_CHOICES = ["auto", "cpu", "cuda", "mps"]
MONITOR_CHOICES = ["auto", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_auc", "val_f1_macro"]
NOT_AVAILABLE = "not available yet"


def lrfinder_module():
    try:
        return importlib.import_module("tlstudio.core.analysis.lrfinder")
    except ImportError:
        return None


def plugin_of(plugins, item_id: str, hook: str = "tlstudio_techniques"):
    """The PluginInfo that provides a technique (or, with ``hook``, a task ...), to record a
    failure of its panel or view."""
    if plugins is None:
        return None
    for info in plugins.plugins.values():
        if item_id in info.provides.get(hook, []):
            return info
    return None


class TechniquePage(Page):
    key = "technique"

    def __init__(self, studio, window, parent=None):
        super().__init__(studio, window, parent)
        self.form: PydanticForm | None = None
        self.custom = None  # (widget, config) of a plugin's own panel
        self.panel_error: str | None = None
        root = QVBoxLayout(self)
        root.addWidget(Banner("A technique is the recipe for adapting the network. Each one explains when to use it; "
                              "its settings appear below. Hover over a setting for what it does."))
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(heading("Techniques"))
        self.list = QListWidget()
        self.list.setObjectName("techniqueList")
        self.list.currentItemChanged.connect(self._picked)
        lv.addWidget(self.list, 1)
        self.plugin_note = hint("")
        lv.addWidget(self.plugin_note)
        split.addWidget(left)

        right = QWidget()
        rv = QVBoxLayout(right)
        self.title = heading("", 3)
        self.title.setObjectName("techniqueTitle")
        rv.addWidget(self.title)
        self.explanation = QLabel()
        self.explanation.setObjectName("techniqueExplanation")
        self.explanation.setWordWrap(True)
        self.explanation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.explanation)
        self.panel_box = QGroupBox("Settings")
        self.panel_layout = QVBoxLayout(self.panel_box)
        rv.addWidget(self.panel_box)
        self.panel_fail = ErrorPanel()
        rv.addWidget(self.panel_fail)
        brow = QHBoxLayout()
        self.recommended_btn = QPushButton("Use this technique's recommended training settings")
        self.recommended_btn.clicked.connect(self.apply_recommended)
        brow.addWidget(self.recommended_btn)
        self.lr_btn = QPushButton("Find learning rate…")
        self.lr_btn.setObjectName("findLR")
        self.lr_btn.clicked.connect(self.find_lr)
        if lrfinder_module() is None:
            self.lr_btn.setEnabled(False)
            self.lr_btn.setToolTip(f"Learning-rate finder: {NOT_AVAILABLE} in this build.")
        brow.addWidget(self.lr_btn)
        brow.addStretch(1)
        rv.addLayout(brow)
        tbox = QGroupBox("Training")
        tl = QVBoxLayout(tbox)
        self.training_form = PydanticForm(TrainingConfig, choices={"device": DEVICE_CHOICES, "monitor": MONITOR_CHOICES},
                                          title="Training")
        self.training_form.changed.connect(self._training_changed)
        tl.addWidget(self.training_form)
        rv.addWidget(tbox)
        rv.addStretch(1)
        split.addWidget(scrolled(right))
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([260, 800])
        root.addWidget(split, 1)
        self.status = QLabel()
        self.status.setObjectName("techniqueStatus")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

        studio.pluginsChanged.connect(self.fill)
        studio.pluginsFailed.connect(lambda info: self.plugin_note.setText(f"Plugins could not be loaded: {info.message}"))
        studio.projectReplaced.connect(self.load_project)
        studio.problemsChanged.connect(self._show_status)
        studio.before_run.append(self.commit)
        self.fill()
        self.load_project()
        self._show_status()

    # --- list ------------------------------------------------------------------------------------
    def fill(self) -> None:
        techs = self.studio.techniques()
        self.list.blockSignals(True)
        self.list.clear()
        for tid, t in techs.items():
            it = QListWidgetItem(f"{t.title or tid}\n{t.task}")
            it.setData(Qt.ItemDataRole.UserRole, tid)
            it.setToolTip(t.explanation or "")
            self.list.addItem(it)
        self.list.blockSignals(False)
        pm = self.studio.plugins
        if pm is None:
            self.plugin_note.setText("Loading plugins…")
        else:
            failed = [p.name for p in pm.plugins.values() if p.status == "failed"]
            disabled = [p.name for p in pm.plugins.values() if p.status == "disabled"]
            note = []
            if failed:
                note.append(f"{len(failed)} plugin(s) failed: {', '.join(failed)} (Tools › Plugins…)")
            if disabled:
                note.append(f"{len(disabled)} disabled" + (" (safe mode)" if pm.safe_mode else ""))
            self.plugin_note.setText("; ".join(note))
        self._select_current()

    def _select_current(self) -> None:
        tid = self.studio.project.technique.id
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == tid:
                self.list.blockSignals(True)
                self.list.setCurrentRow(i)
                self.list.blockSignals(False)
                break
        self._show_technique(tid)

    def select(self, tid: str) -> None:
        """Choose a technique (as a click in the list does)."""
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == tid:
                self.list.setCurrentRow(i)
                return
        raise KeyError(tid)

    def _picked(self, cur, _prev) -> None:
        if cur is None:
            return
        tid = cur.data(Qt.ItemDataRole.UserRole)
        if tid != self.studio.project.technique.id:
            self.commit()
            tech = self.studio.technique(tid)
            self.studio.set_technique(tid, task=tech.task if tech is not None else None)
        self._show_technique(tid)

    # --- the chosen technique's panel ------------------------------------------------------------
    def _show_technique(self, tid: str) -> None:
        tech = self.studio.technique(tid)
        clear_layout(self.panel_layout)
        self.form = None
        self.custom = None
        self.panel_fail.clear()
        self.panel_error = None
        if tech is None:
            self.title.setText(tid)
            self.explanation.setText("This technique is not available: its plugin is missing, disabled or failed "
                                     "(Tools › Plugins…)." if self.studio.plugins is not None else "Loading plugins…")
            self.panel_box.hide()
            return
        self.panel_box.show()
        self.title.setText(tech.title or tech.id)
        self.explanation.setText(tech.explanation or "(This plugin gives no explanation.)")
        self.panel_box.setTitle(f"Settings of {tech.title or tech.id}")
        settings = dict(self.studio.project.technique.settings)
        widget = None
        try:
            try:
                cfg = tech.make_config(settings)
            except Exception:  # noqa: BLE001 - invalid saved settings: the generated form shows why
                cfg = None
            if cfg is not None:
                widget = tech.config_panel(cfg, self.panel_box)
                if widget is not None and not isinstance(widget, QWidget):
                    raise TypeError(f"config_panel returned a {type(widget).__name__}, not a Qt widget")
                if widget is not None:
                    self.custom = (widget, cfg)
        except Exception as e:  # noqa: BLE001 - a plugin's panel must never break the page
            widget = None
            self.custom = None
            self._panel_failed(tech, e, traceback.format_exc())
        if widget is not None:
            self.panel_layout.addWidget(widget)
            sig = getattr(widget, "changed", None)
            if sig is not None and hasattr(sig, "connect"):
                try:
                    sig.connect(self.commit)
                except Exception:  # noqa: BLE001
                    pass
            self.studio.set_form_problems("Technique settings", [])
            return
        try:
            self.form = PydanticForm(tech.Config, settings, title="Technique settings")
        except Exception as e:  # noqa: BLE001 - a Config the form cannot read
            self._panel_failed(tech, e, traceback.format_exc())
            return
        self.form.setObjectName("techniqueForm")
        self.form.changed.connect(self._tech_changed)
        if not self.form.field_names:
            self.panel_layout.addWidget(hint("This technique has no settings of its own."))
        self.panel_layout.addWidget(self.form)
        self._tech_changed(initial=True)

    def _panel_failed(self, tech, exc: BaseException, details: str) -> None:
        msg = f"The settings panel of {tech.title or tech.id} failed: {type(exc).__name__}: {exc}"
        self.panel_error = msg
        info = plugin_of(self.studio.plugins, tech.id)
        if info is not None:
            info.fail(f"config_panel raised {type(exc).__name__}: {exc}", details)
        self.panel_fail.show_error(msg + ". The generated panel is shown instead.", details,
                                   title=f"Plugin {info.name if info else tech.id}: panel failed")

    def _tech_changed(self, *_a, initial: bool = False) -> None:
        if self.form is None:
            return
        self.studio.set_form_problems("Technique settings", self.form.problems())
        vals = self.form.values()
        if vals is not None and vals != self.studio.project.technique.settings and not initial:
            self.studio.set_technique_settings(vals)

    def commit(self) -> None:
        """Take the values of a plugin's own panel (it edits its config object in place)."""
        if self.custom is None:
            return
        _w, cfg = self.custom
        try:
            vals = cfg.model_dump(mode="json")
        except Exception as e:  # noqa: BLE001
            self.studio.set_form_problems("Technique settings", [f"the plugin's panel holds invalid values ({e})"])
            return
        if vals != self.studio.project.technique.settings:
            self.studio.set_technique_settings(vals)

    # --- training settings -----------------------------------------------------------------------
    def load_project(self) -> None:
        self.training_form.set_values(self.studio.project.training)
        self.fill()

    def _training_changed(self) -> None:
        self.studio.set_form_problems("Training", self.training_form.problems())
        vals = self.training_form.values()
        if vals is not None and vals != self.studio.project.training.model_dump(mode="json"):
            self.studio.replace("training", vals)

    def apply_recommended(self) -> None:
        tech = self.studio.technique()
        if tech is None:
            return
        try:
            rec = dict(tech.recommended_training() or {})
        except Exception as e:  # noqa: BLE001
            self.panel_fail.show_error(f"recommended_training of {tech.id} failed: {e}", traceback.format_exc())
            return
        vals = self.studio.project.training.model_dump(mode="json") | rec
        try:
            self.studio.replace("training", TrainingConfig.model_validate(vals).model_dump(mode="json"))
        except Exception as e:  # noqa: BLE001
            self.panel_fail.show_error(f"The recommended settings of {tech.id} are invalid: {e}")
            return
        self.training_form.set_values(self.studio.project.training)
        self.studio.message.emit(f"Training settings recommended by {tech.title or tech.id} applied: "
                                 + ", ".join(f"{k} {v}" for k, v in rec.items()))

    def _show_status(self) -> None:
        probs = self.studio.problems()
        if probs:
            self.status.setText("<span style='color:#b03a2e'>Train is disabled: " + "; ".join(probs) + "</span>")
        else:
            self.status.setText("<span style='color:#1e8449'>Ready to train (Train page, or F5).</span>")

    # --- learning-rate finder --------------------------------------------------------------------
    def find_lr(self, steps: int = 100):
        """Open the learning-rate finder and start the range test (in a worker)."""
        mod = lrfinder_module()
        if mod is None or self.studio.plugins is None:
            return None
        if self.studio.training_active:
            self.studio.message.emit("The learning-rate finder runs while nothing trains.")
            return None
        if self.studio.problems():
            self.studio.message.emit("Fix what stops Train first: " + "; ".join(self.studio.problems()))
            return None
        self.commit()
        dlg = LRFinderDialog(self.studio, mod, self)
        dlg.applied.connect(self._lr_applied)
        dlg.open()
        dlg.start(steps)
        self.lr_dialog = dlg
        return dlg

    def _lr_applied(self, lr: float) -> None:
        self.studio.edit("training", lr=float(lr))
        self.training_form.set_values(self.studio.project.training)


class LRFinderDialog(QDialog):
    """Runs the LR range test in a worker, plots loss against learning rate, offers the
    suggestion."""

    applied = Signal(float)

    def __init__(self, studio, module, parent=None):
        super().__init__(parent)
        self.studio = studio
        self.module = module
        self.found = None
        self.setWindowTitle("Find a learning rate")
        self.resize(640, 460)
        v = QVBoxLayout(self)
        v.addWidget(hint("The range test trains briefly while raising the learning rate from very small to large and "
                         "records the loss. A good rate lies where the loss falls fastest, before it climbs."))
        from ..charts import styled_plot

        self.plot = styled_plot("Loss against learning rate", xlabel="learning rate", ylabel="loss")
        self.plot.getPlotItem().setLogMode(x=True)
        v.addWidget(self.plot, 1)
        self.progress = QProgressBar()
        v.addWidget(self.progress)
        self.text = QLabel("Starting…")
        self.text.setWordWrap(True)
        v.addWidget(self.text)
        self.error = ErrorPanel()
        v.addWidget(self.error)
        self.buttons = QDialogButtonBox()
        self.apply_btn = self.buttons.addButton("Use the suggested rate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_btn.setEnabled(False)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.accepted.connect(self._apply)
        self.buttons.rejected.connect(self.reject)
        v.addWidget(self.buttons)
        self.control = None

    def start(self, steps: int = 100) -> None:
        from tlstudio.core.engine import RunControl

        self.control = RunControl()
        project = self.studio.run_project()

        def work(task):
            def on_event(e):
                if e.get("kind") == "progress" and e.get("total"):
                    task.report(e.get("done", 0), e.get("total", 1))

            return self.module.find_lr(project, plugins=self.studio.plugins, on_event=on_event, control=self.control,
                                       steps=steps)

        self.task = self.studio.tasks.submit(work, pool="model", pass_task=True, on_done=self._done,
                                             on_error=self._failed, on_progress=self._progress)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def reject(self) -> None:
        if self.control is not None:
            self.control.stop()
        super().reject()

    def _done(self, result) -> None:
        self.found = result
        lrs, losses = list(result.get("lrs", [])), list(result.get("losses", []))
        self.plot.plot(lrs, losses, pen={"color": "#0072B2", "width": 2})
        s = result.get("suggested")
        if s:
            import math

            import pyqtgraph as pg

            self.plot.addItem(pg.InfiniteLine(pos=math.log10(s), angle=90, pen=pg.mkPen("#D55E00", width=2),
                                              label=f"suggested {s:.2g}", labelOpts={"position": 0.9}))
            self.text.setText(f"Suggested learning rate: {s:.3g}")
            self.apply_btn.setEnabled(True)
        else:
            self.text.setText(result.get("note") or "No clear suggestion: the loss did not fall steadily.")
        self.progress.hide()

    def _failed(self, info: ErrorInfo) -> None:
        self.progress.hide()
        self.text.setText("The range test stopped.")
        self.error.show_info(info, "The learning-rate finder failed")

    def _apply(self) -> None:
        if self.found and self.found.get("suggested"):
            self.applied.emit(float(self.found["suggested"]))
        self.accept()
