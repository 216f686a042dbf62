"""Technique: the simple path first — the technique recommended for the data (the list shows
only those that fit the data's task; the others are greyed with the reason), how long to
train (quick / standard / thorough, with the time expected on this computer) and whether
mirror images show the same thing (asked once per project).  Everything else — the chosen
technique's settings panel (generated from its pydantic Config, or the plugin's own widget),
the training settings and the learning-rate finder — is folded under "Advanced", set to the
recommended values."""
from __future__ import annotations

import importlib
import traceback

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSplitter,
                               QVBoxLayout, QWidget)

from tlstudio.core.config import TrainingConfig
from tlstudio.core.manifests import manifest_items

from ..forms import PydanticForm
from ..lrdialog import LRFinderDialog
from ..simplepath import AdviceBar, DurationBox, Fold, MirrorBox
from ..widgets import Banner, ErrorPanel, clear_layout, heading, hint
from . import Page, scrolled

DEVICE_CHOICES = ["auto", "cpu", "cuda", "mps"]
MONITOR_CHOICES = ["auto", "last", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_auc", "val_f1_macro"]
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
        self.advice = None  # the recommended technique (tlstudio.core.analysis.guide.TechniqueAdvice)
        self.plan = None  # quick / standard / thorough for the current technique (a TrainingPlan)
        self._plan_key = None
        self._speeds: dict[tuple, float] = {}  # (model, image size) -> images/s measured here
        root = QVBoxLayout(self)
        root.addWidget(Banner("Choose how the network learns from your images. The recommended choices are already "
                              "made: check them, answer the question about mirror images, and press Train. Every "
                              "other setting is under Advanced."))
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(heading("Techniques"))
        self.list = QListWidget()
        self.list.setObjectName("techniqueList")
        self.list.setWordWrap(True)  # the reason a technique is greyed out wraps within the list
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setStyleSheet("QListWidget::item { padding: 3px 2px; }")
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
        self.advice_bar = AdviceBar("Use the recommended technique")
        self.advice_bar.take.connect(self.use_recommended)
        rv.addWidget(self.advice_bar)
        self.panel_fail = ErrorPanel()
        rv.addWidget(self.panel_fail)
        self.duration = DurationBox()
        self.duration.chosen.connect(self.set_epochs)
        rv.addWidget(self.duration)
        self.mirror = MirrorBox()
        self.mirror.answered.connect(self.answer_mirror)
        rv.addWidget(self.mirror)

        self.advanced = Fold("Advanced settings (already set to the recommended values)")
        self.advanced.setObjectName("techniqueAdvanced")
        av = self.advanced.body_layout
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
        av.addLayout(brow)
        self.panel_box = QGroupBox("Settings")
        self.panel_layout = QVBoxLayout(self.panel_box)
        av.addWidget(self.panel_box)
        tbox = QGroupBox("Training")
        tl = QVBoxLayout(tbox)
        self.training_form = PydanticForm(TrainingConfig, choices={"device": DEVICE_CHOICES, "monitor": MONITOR_CHOICES},
                                          title="Training")
        self.training_form.changed.connect(self._training_changed)
        tl.addWidget(self.training_form)
        av.addWidget(tbox)
        rv.addWidget(self.advanced)
        rv.addStretch(1)
        split.addWidget(scrolled(right))
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([280, 800])
        root.addWidget(split, 1)
        self.status = QLabel()
        self.status.setObjectName("techniqueStatus")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

        studio.pluginsChanged.connect(self.fill)
        studio.pluginsFailed.connect(lambda info: self.plugin_note.setText(f"Plugins could not be loaded: {info.message}"))
        studio.projectReplaced.connect(self.load_project)
        studio.projectEdited.connect(self._project_edited)
        studio.problemsChanged.connect(self._show_status)
        studio.dataRead.connect(lambda _t: self.fill())
        studio.before_run.append(self.commit)
        self.fill()
        self.load_project()
        self._show_status()

    def activated(self) -> None:
        self.refresh_plan()

    # --- list ------------------------------------------------------------------------------------
    def fill(self) -> None:
        """The techniques by title: the recommended one first, then those that fit the data's task,
        then the others greyed out with the reason."""
        from tlstudio.core.analysis.guide import recommend_technique, smallest_training_class, split_sizes

        techs = self.studio.techniques()
        data_task = self.studio.data_task()
        table = self.studio.data_table
        self.advice = None
        if techs and data_task is not None:
            try:
                sp = self.studio.project.data.split
                sized = self.studio.traits(data_task).can("technique-advice")  # advice from the numbers
                n_train = split_sizes(table, sp)["train"] if sized else None
                smallest = smallest_training_class(table, sp) if sized else None
            except Exception:  # noqa: BLE001 - a split the engine will explain: no numbers in the advice
                n_train = smallest = None
            self.advice = recommend_technique(techs, data_task, n_train, smallest,
                                              bool(self.studio.project.data.target_source), self.studio.plugins)
        rec = self.advice.id if self.advice else None
        order = sorted(techs.items(), key=lambda kv: (kv[0] != rec, data_task is not None and kv[1].task != data_task))
        self.list.blockSignals(True)
        self.list.clear()
        for tid, t in order:
            fits = data_task is None or t.task == data_task
            if tid == rec:
                sub = "★ recommended for your data"
            elif fits:
                sub = f"for {self.studio.traits(t.task).noun}"
            else:
                sub = f"for {self.studio.traits(t.task).noun}:\nyour data are {self.studio.traits(data_task).noun}"
            it = QListWidgetItem(f"{t.title or tid}\n{sub}")
            it.setData(Qt.ItemDataRole.UserRole, tid)
            it.setToolTip((t.explanation or "") + ("" if fits else f"\n\nNot for these data: it is "
                                                   f"{sub.replace(chr(10), ' ')}. Choose such data on the Data page first."))
            if not fits:
                it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEnabled & ~Qt.ItemFlag.ItemIsSelectable)
            self.list.addItem(it)
        pm = self.studio.plugins
        if pm is None:  # while the plugins load: the techniques their manifests list, not yet to choose
            for item in manifest_items("tlstudio_techniques"):
                it = QListWidgetItem(f"{item.get('title') or item['id']}\nfor {self.studio.traits(item.get('task')).noun}"
                                     " (loading…)")
                it.setData(Qt.ItemDataRole.UserRole, item["id"])
                it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEnabled & ~Qt.ItemFlag.ItemIsSelectable)
                self.list.addItem(it)
        self.list.blockSignals(False)
        if pm is None:
            self.plugin_note.setText("Loading plugins…")
        else:
            failed = [p.name for p in pm.plugins.values() if p.status == "failed"]
            disabled = [p.name for p in pm.plugins.values() if p.status == "disabled"]
            note = []
            if failed:
                note.append(f"{len(failed)} plugin{'s' if len(failed) != 1 else ''} failed: {', '.join(failed)} "
                            "(Tools › Plugins…)")
            if disabled:
                note.append(f"{len(disabled)} disabled" + (" (safe mode)" if pm.safe_mode else ""))
            self.plugin_note.setText("; ".join(note))
        self._select_current()

    def fits(self, tid: str) -> bool:
        """Whether a technique is offered (not greyed out) for the data read."""
        for i in range(self.list.count()):
            it = self.list.item(i)
            if it.data(Qt.ItemDataRole.UserRole) == tid:
                return bool(it.flags() & Qt.ItemFlag.ItemIsEnabled)
        return False

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

    def _picked(self, cur, prev) -> None:
        if cur is None:
            return
        tid = cur.data(Qt.ItemDataRole.UserRole)
        if tid != self.studio.project.technique.id:
            self.commit()
            old = self.studio.technique()
            tech = self.studio.technique(tid)
            self.studio.set_technique(tid, task=tech.task if tech is not None else None)
            self._apply_training_of(tech, old)
        self._show_technique(tid)

    def use_recommended(self) -> None:
        if self.advice is not None:
            self.select(self.advice.id)

    # --- the chosen technique ----------------------------------------------------------------------
    def _show_technique(self, tid: str) -> None:
        tech = self.studio.technique(tid)
        clear_layout(self.panel_layout)
        self.form = None
        self.custom = None
        self.panel_fail.clear()
        self.panel_error = None
        self._show_advice(tid)
        self._show_questions()
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

    def _show_advice(self, tid: str) -> None:
        a = self.advice
        if a is None:
            self.advice_bar.hide()
            return
        t = self.studio.technique(a.id)
        title = (t.title if t is not None else "") or a.id
        taken = a.id == tid
        head = "★ Recommended for your data." if taken else f"Recommended for your data: {title}."
        self.advice_bar.show_advice(f"<b>{head}</b> {a.reason}", a.detail, taken=taken)

    def _show_questions(self) -> None:
        p = self.studio.project
        self.mirror.setVisible(self.studio.traits().can("augmentation"))
        self.mirror.set_answer(p.augmentation.mirror_safe)
        self.refresh_plan()

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

    # --- the simple path: how long, mirror images ------------------------------------------------------
    def answer_mirror(self, value: bool) -> None:
        """Mirror images show the same thing (True) or not: saved in the project, and the training
        flips follow the answer."""
        self.studio.edit("augmentation", mirror_safe=bool(value), horizontal_flip=bool(value))
        self.mirror.set_answer(bool(value))

    def set_epochs(self, epochs: int) -> None:
        if epochs and epochs != self.studio.project.training.epochs:
            self.studio.edit("training", epochs=int(epochs))
            self.training_form.set_values(self.studio.project.training)
        self._show_plan()

    def _recommended_epochs(self, tech) -> int:
        try:
            rec = dict(tech.recommended_training() or {}) if tech is not None else {}
        except Exception:  # noqa: BLE001 - a plugin's broken recommendation: the default
            rec = {}
        return int(rec.get("epochs") or TrainingConfig().epochs)

    def refresh_plan(self) -> None:
        """Quick / standard / thorough for this technique, data and model; the model's speed is
        measured on this computer once (remembered) in a worker."""
        from tlstudio.core.analysis.guide import split_sizes, training_plan

        p = self.studio.project
        tech = self.studio.technique()
        table = self.studio.data_table
        if tech is None or table is None or self.studio.data_task() is None:
            self.plan = None
            self._show_plan("The times appear once the data are read." if tech is not None else "")
            return
        try:
            counts = split_sizes(table, p.data.split)
        except Exception:  # noqa: BLE001 - the engine explains a bad split when it trains
            counts = {"train": len(table.items), "val": 0, "test": 0}
        rec_epochs = self._recommended_epochs(tech)
        frozen = tech.id == "frozen-features" and bool(p.technique.settings.get("cache_features", True))
        flip = p.augmentation.flips_at_test
        arch, size = p.model.architecture, int(p.model.image_size)
        key = (tech.id, arch, size, tuple(sorted(counts.items())), frozen, flip)
        estimated = self.studio.traits().can("time-estimate")
        measure = not self.studio.training_active and estimated
        self.plan = training_plan(rec_epochs, counts, None, frozen, flip)
        self._show_plan()
        if not estimated:
            self._show_plan("The expected times are measured for image models.")
            return
        self._plan_key = key
        if self._speeds.get(key[1:3]):
            self.plan = training_plan(rec_epochs, counts, self._speeds[key[1:3]], frozen, flip)
            self._show_plan("")
            return
        device = self.studio.settings.device

        def work():
            from tlstudio.core.analysis.recommend import speed_of

            return speed_of(arch, size, device, measure=measure, library=self.studio.library())

        def done(speed):
            if speed:
                self._speeds[key[1:3]] = speed
            if self._plan_key != key:
                return
            self.plan = training_plan(rec_epochs, counts, speed, frozen, flip)
            self._show_plan("" if speed else "The speed of this model is measured when nothing trains.")

        if measure:
            self._show_plan(f"Measuring how fast {arch} trains on this computer (once)…")
        self.studio.tasks.submit(work, pool="model", name="speed", on_done=done,
                                 on_error=lambda info: self._show_plan(f"The speed could not be measured: {info.message}"))

    def _show_plan(self, note: str | None = None) -> None:
        if note is None:
            note = self.duration.note.text()
        self.duration.set_plan(self.plan, self.studio.project.training.epochs, note)

    def _apply_training_of(self, tech, old) -> None:
        """A technique picked in the list: its recommended training settings, and the same length
        (quick / standard / thorough) as before, or the same epochs when they were set by hand."""
        if tech is None:
            return
        from tlstudio.core.analysis.guide import duration_epochs

        before = self.studio.project.training.epochs
        kept = next((k for k, e in duration_epochs(self._recommended_epochs(old)).items() if e == before), None) \
            if old is not None else None
        self.apply_recommended(quiet=True)
        epochs = duration_epochs(self._recommended_epochs(tech))[kept] if kept else before
        self.set_epochs(epochs)

    def _project_edited(self, section: str) -> None:
        if section in ("model", "data"):
            self.refresh_plan()
        elif section == "augmentation":
            self.mirror.set_answer(self.studio.project.augmentation.mirror_safe)
        elif section == "training" and self.plan is not None:
            self._show_plan()

    # --- training settings -----------------------------------------------------------------------
    def load_project(self) -> None:
        self.training_form.set_values(self.studio.project.training)
        self.fill()

    def _training_changed(self) -> None:
        self.studio.set_form_problems("Training", self.training_form.problems())
        vals = self.training_form.values()
        if vals is not None and vals != self.studio.project.training.model_dump(mode="json"):
            self.studio.replace("training", vals)

    def apply_recommended(self, quiet: bool = False) -> None:
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
        if rec and not quiet:
            self.studio.message.emit(f"Training settings recommended by {tech.title or tech.id} applied: "
                                     + ", ".join(f"{k} {v}" for k, v in rec.items()))
        self._show_plan()

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
