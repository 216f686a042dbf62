"""The main window: the seven pages left to right, menus and shortcuts, the status bar
(device, project, training state), project files and recent projects."""
from __future__ import annotations

import importlib
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget)

from .pages import PAGES
from .studio import Studio
from .tasks import ErrorInfo
from .widgets import error_dialog

APP_TITLE = "Transfer Learning Studio"


def default_size(screen) -> tuple[int, int]:
    """1360 x 880, or less on a smaller screen (a 1366 x 768 laptop keeps its panel and title bar)."""
    w, h = 1360, 880
    if screen.width() >= 1024 and screen.height() >= 600:  # a real screen (offscreen tests have 800 x 800)
        w, h = min(w, screen.width() - 16), min(h, screen.height() - 48)
    return w, h


class MainWindow(QMainWindow):
    firstShown = Signal()

    def __init__(self, safe_mode: bool = False, studio: Studio | None = None):
        super().__init__()
        from .qtguard import install

        install()  # before anything else calls Qt in earnest (see qtguard)
        self.studio = studio or Studio(safe_mode=safe_mode)
        self.pages: dict[str, QWidget] = {}
        self._holders: dict[str, QWidget] = {}
        self._shown_once = False
        self.confirm = True  # ask before closing with unsaved changes or a running run
        self.resize(*default_size(self.screen().availableGeometry()))
        self.setMinimumSize(980, 600)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("pages")
        self.tabs.setDocumentMode(True)
        for i, (key, title, _mod, _cls) in enumerate(PAGES):
            holder = QWidget()
            QVBoxLayout(holder).setContentsMargins(6, 6, 6, 6)
            self._holders[key] = holder
            self.tabs.addTab(holder, f"{i + 1}  {title}")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)
        self._build_menus()
        self._build_status()

        s = self.studio
        s.projectReplaced.connect(self._update_title)
        s.projectEdited.connect(lambda _sec: self._update_title())
        s.deviceChanged.connect(lambda text: self.device_label.setText(text))
        s.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        s.pluginsFailed.connect(lambda info: error_dialog(self, "Plugins could not be loaded", info))
        s.problemsChanged.connect(self._update_actions)
        s.settingsChanged.connect(self._fill_recent)
        self._update_title()
        self._tab_changed(0)

    # --- pages -----------------------------------------------------------------------------------
    def page(self, key: str):
        """The page widget (built on first use: the window opens before heavy pages exist)."""
        if key not in self.pages:
            _k, _title, mod, cls = next(p for p in PAGES if p[0] == key)
            page = getattr(importlib.import_module(mod), cls)(self.studio, self)
            self._holders[key].layout().addWidget(page)
            self.pages[key] = page
        return self.pages[key]

    def show_page(self, key: str):
        page = self.page(key)
        self.tabs.setCurrentIndex([p[0] for p in PAGES].index(key))
        return page

    def _tab_changed(self, index: int) -> None:
        if index < 0:
            return
        key = PAGES[index][0]
        page = self.page(key)
        try:
            page.activated()
        except Exception as e:  # noqa: BLE001 - a page must never take the window down
            error_dialog(self, "Page error", ErrorInfo.from_exception(e))

    # --- menus -----------------------------------------------------------------------------------
    def _action(self, menu, text: str, slot, shortcut=None, name: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        if name:
            a.setObjectName(name)
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "&New project", self.new_project, QKeySequence.StandardKey.New)
        self._action(f, "&Open project…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.sample_menu = f.addMenu("Open &sample")
        self.sample_menu.setObjectName("sampleMenu")
        from .samples import available

        for sample, path in available():
            a = self._action(self.sample_menu, sample.title, lambda _c=False, k=sample.key: self.open_sample(k),
                             name=f"sample_{sample.key}")
            a.setToolTip(f"{sample.description} ({path})")
        self.sample_menu.setToolTipsVisible(True)
        self.sample_menu.setEnabled(bool(self.sample_menu.actions()))
        self.recent_menu = f.addMenu("Open &recent")
        self._action(f, "&Save project", self.save, QKeySequence.StandardKey.Save)
        self._action(f, "Save project &as…", self.save_as, "Ctrl+Shift+S")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        r = mb.addMenu("&Run")
        self.act_train = self._action(r, "&Train", lambda: self.page("train").start(), "F5", "actTrain")
        self.act_pause = self._action(r, "&Pause", lambda: self.page("train").pause(), "F6", "actPause")
        self.act_resume = self._action(r, "&Resume", lambda: self.page("train").resume(), "F7", "actResume")
        self.act_stop = self._action(r, "&Stop", lambda: self.page("train").stop(), "Shift+F5", "actStop")
        r.addSeparator()
        self._action(r, "&Copy as command", lambda: self.page("train").copy_command(), "Ctrl+Shift+C")
        self._action(r, "Find &learning rate…", lambda: self.show_page("technique").find_lr())
        self._action(r, "Compare with training from &scratch…", lambda: self.page("train").compare_with_scratch())
        self._action(r, "Compare with the &plain recipe…",
                     lambda: self.page("train").compare_with_scratch().set_against("baseline"), None, "actCompareBaseline")
        self._action(r, "Find the best &recipe…", self.find_recipe, None, "actFindRecipe")
        v = mb.addMenu("&View")
        for i, (key, title, _m, _c) in enumerate(PAGES):
            self._action(v, title, lambda _c=False, k=key: self.show_page(k), f"Ctrl+{i + 1}")
        t = mb.addMenu("&Tools")
        self._action(t, "&Plugins…", self.plugins_dialog, None, "actPlugins")
        self._action(t, "&Settings…", self.settings_dialog, "Ctrl+,", "actSettings")
        h = mb.addMenu("&Help")
        self._action(h, "&Guide", self.guide, QKeySequence.StandardKey.HelpContents, "actGuide")
        self._action(h, "&About", self._about)
        self._fill_recent()
        self._update_actions()

    def find_recipe(self):
        """Run › Find the best recipe… (tlstudio.gui.recipe)."""
        from .recipe import open_recipe_dialog

        return open_recipe_dialog(self)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.train_label = QLabel("")
        self.project_label = QLabel("")
        self.project_label.setObjectName("statusProject")
        self.device_label = QLabel(self.studio.device_text)
        self.device_label.setObjectName("statusDevice")
        for w in (self.train_label, self.project_label, self.device_label):
            w.setContentsMargins(8, 0, 8, 0)
            sb.addPermanentWidget(w)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = [p for p in self.studio.settings.recent_projects if Path(p).exists()]
        for p in recent:
            a = QAction(p, self)
            a.triggered.connect(lambda _c=False, p=p: self.open_project(p))
            self.recent_menu.addAction(a)
        self.recent_menu.setEnabled(bool(recent))

    def _update_title(self) -> None:
        self.setWindowTitle(f"{APP_TITLE} — {self.studio.title}")
        p = self.studio.project
        self.project_label.setText(f"Project: {p.name}" + (f" ({Path(self.studio.path).name})" if self.studio.path else ""))
        self.project_label.setToolTip(str(self.studio.path or "not saved yet"))

    def _update_actions(self) -> None:
        idle = not self.studio.training_active
        self.act_train.setEnabled(idle and not self.studio.problems())
        self.act_train.setToolTip("; ".join(self.studio.problems()))

    def training_state_changed(self, state: str, paused: bool) -> None:
        """Called by the Train page."""
        self.act_pause.setEnabled(state == "training" and not paused)
        self.act_stop.setEnabled(state in ("training", "following"))
        self.act_resume.setEnabled(paused or state == "idle")
        self.train_label.setText({"training": "Paused" if paused else "Training…", "following": "Following a run"}
                                 .get(state, ""))
        self._update_actions()

    # --- project files ---------------------------------------------------------------------------
    def start(self, project: str | None = None, sample: str | None = None) -> None:
        """After the window shows: open the project or the sample (if any) and load the plugins."""
        if project:
            self.open_project(project)
        elif sample:
            self.open_sample(sample)
        self.studio.load_plugins()

    def open_sample(self, key: str) -> bool:
        """A sample project as an unsaved copy (File › Open sample)."""
        from . import samples

        if not self._maybe_save():
            return False
        try:
            sample, path = samples.find(key)
            self.studio.set_project(samples.load_copy(path), None)
        except Exception as e:  # noqa: BLE001 - a missing or damaged sample is reported, the window stays
            error_dialog(self, "The sample could not be opened", ErrorInfo.from_exception(e))
            return False
        self.statusBar().showMessage(f"Opened the sample {sample.title}: Save project as… keeps your own copy.", 8000)
        return True

    def open_project(self, path: str) -> bool:
        if not self._maybe_save():
            return False
        try:
            self.studio.open_project(path)
        except Exception as e:  # noqa: BLE001 - a bad file is reported, the window stays
            error_dialog(self, "The project could not be opened", ErrorInfo.from_exception(e))
            return False
        self._fill_recent()
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", str(self.studio.project.base_dir),
                                              "Projects (*.toml);;All files (*)")
        if path:
            self.open_project(path)

    def new_project(self) -> None:
        if self._maybe_save():
            self.studio.new_project()

    def save(self) -> bool:
        if self.studio.path is None:
            return self.save_as()
        return self._save_to(self.studio.path)

    def save_as(self) -> bool:
        start = str(self.studio.path or (Path.home() / "project.toml"))
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, "Projects (*.toml)")
        return self._save_to(path) if path else False

    def _save_to(self, path) -> bool:
        for commit in list(self.studio.before_run):
            commit()
        try:
            saved = self.studio.save_project(path)
        except Exception as e:  # noqa: BLE001
            error_dialog(self, "The project could not be saved", ErrorInfo.from_exception(e))
            return False
        self._fill_recent()
        self.statusBar().showMessage(f"Saved {saved}", 5000)
        return True

    def ask(self, title: str, text: str, buttons) -> QMessageBox.StandardButton:
        """A question to the user (tests replace this method)."""
        return QMessageBox.question(self, title, text, buttons)

    def _maybe_save(self) -> bool:
        if not (self.confirm and self.studio.dirty):
            return True
        B = QMessageBox.StandardButton
        ans = self.ask("Unsaved changes", "The project has unsaved changes. Save them?", B.Save | B.Discard | B.Cancel)
        if ans == B.Save:
            return self.save()
        return ans == B.Discard

    # --- dialogs ---------------------------------------------------------------------------------
    def plugins_dialog(self):
        from .dialogs import PluginsDialog

        dlg = PluginsDialog(self.studio, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        return dlg

    def settings_dialog(self):
        from .dialogs import SettingsDialog

        dlg = SettingsDialog(self.studio, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        return dlg

    def guide(self):
        """Help › Guide: what each page is for and how to read the results (offline)."""
        from .guide import GuideDialog

        dlg = getattr(self, "guide_dialog", None)
        if dlg is None:
            self.guide_dialog = dlg = GuideDialog(self)
        dlg.show()
        dlg.raise_()
        return dlg

    def _about(self) -> None:
        from .dialogs import AboutDialog

        AboutDialog(self).open()

    # --- closing ---------------------------------------------------------------------------------
    def closeEvent(self, e) -> None:  # noqa: N802
        train = self.pages.get("train")
        if train is not None and train.state == "training":
            if self.confirm:
                B = QMessageBox.StandardButton
                ans = self.ask("A run is training", "Stop the run and quit? It can be resumed later from its last "
                               "completed epoch.", B.Yes | B.No)
                if ans != B.Yes:
                    e.ignore()
                    return
            train.wait(60000)
        if not self._maybe_save():
            e.ignore()
            return
        follow = getattr(train, "follower", None)
        if follow is not None:
            follow.stop()
        for dlg in (getattr(train, "scratch_dialog", None), getattr(self, "recipe_dialog", None)):
            if dlg is not None:  # a comparison or a recipe search stops after its current batch
                dlg.wait(60000)
        self.studio.tasks.shutdown()
        e.accept()

    def event(self, e) -> bool:
        if not self._shown_once and e.type() in (QEvent.Type.Paint, QEvent.Type.UpdateRequest, QEvent.Type.Expose):
            self._shown_once = True
            QTimer.singleShot(0, self.firstShown.emit)
        return super().event(e)
