"""The window's state: the open project, the settings, the plugins, and what stops a run.

Pages edit the project only through :class:`Studio` and listen to its signals; the studio
checks the project the way the engine will (technique settings against the technique's
Config, data chosen, model ready) and collects the problems of forms that hold an invalid
edit, so the Train button can say exactly why it is disabled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import QObject, Signal

from tlstudio.core.config import ModelConfig, Project, TrainingConfig, load_project
from tlstudio.core.settings import Settings, load_settings, save_settings
from tlstudio.core.tasks.traits import TaskTraits, table_task, task_traits

from .forms import friendly_error, humanize
from .tasks import ErrorInfo, TaskRunner


class Studio(QObject):
    projectReplaced = Signal()  # a project was opened or created: pages read everything again
    projectEdited = Signal(str)  # a section changed: data, model, technique, augmentation, training
    problemsChanged = Signal()
    pluginsChanged = Signal()  # the plugin manager was (re)loaded
    pluginsFailed = Signal(object)  # ErrorInfo
    modelsChanged = Signal()  # the catalog's ready/not ready status is known (again)
    settingsChanged = Signal()
    deviceChanged = Signal(str)
    runsChanged = Signal()  # a run was created, finished or removed
    currentRunChanged = Signal(str)  # the run the Evaluate/Predict pages show
    dataRead = Signal(object)  # the ImageTable the Data page read (for the Model page's recommendation)
    message = Signal(str)  # a line for the status bar

    def __init__(self, safe_mode: bool = False, parent: QObject | None = None):
        super().__init__(parent)
        self.safe_mode = safe_mode
        self.settings: Settings = load_settings()
        self.project: Project = Project()
        self.path: Path | None = None
        self.dirty = False
        self.plugins = None
        self.plugins_loading = False
        self.plugin_error: ErrorInfo | None = None
        self.device_text = "Device: detecting…"
        self.model_status: dict[str, Any] | None = None
        self.text_models: list | None = None  # Hugging Face folders found here (HFModelChoice), for text techniques
        self.data_table = None
        self.data_error: str | None = None  # why the Data page could not read the data
        self.current_run: str | None = None
        self.tasks = TaskRunner(self)
        self._form_problems: dict[str, list[str]] = {}
        self._tech_settings: dict[str, dict] = {}
        self._models_by_task: dict[str, str] = {}  # the model each task had, restored when a technique returns to it
        self.training_active = False
        self.before_run: list = []  # callables that commit pending edits before a run starts

    # --- plugins and machine (background) -----------------------------------------------------
    def load_plugins(self) -> None:
        """Load the plugins (and with them torch) off the GUI thread; ``pluginsChanged`` when ready."""
        if self.plugins_loading:
            return
        self.plugins_loading = True
        device_pref = self.settings.device

        def work():
            from tlstudio.core.plugins import get_plugin_manager

            pm = get_plugin_manager(safe_mode=self.safe_mode, reload=True)
            pm.collect_all()
            # what the pages import later, imported now while nobody waits
            import tlstudio.core.engine as engine
            import tlstudio.core.analysis.metrics  # noqa: F401
            import tlstudio.core.data.transforms  # noqa: F401 (imported for later, not used here)

            try:
                dev = engine.describe_device(engine.select_device(device_pref))
            except Exception as e:  # noqa: BLE001 - a device the settings name but this machine lacks
                dev = f"{device_pref}: not available ({e})"
            return pm, dev

        self.tasks.submit(work, pool="plugins", name="plugins", on_done=self._plugins_ready,
                          on_error=self._plugins_failed)

    def _plugins_ready(self, result) -> None:
        self.plugins, dev = result
        self.plugins_loading = False
        self.plugin_error = None
        self.device_text = dev
        self.deviceChanged.emit(dev)
        self.pluginsChanged.emit()
        self.problemsChanged.emit()
        self.refresh_models()

    def _plugins_failed(self, info: ErrorInfo) -> None:
        self.plugins_loading = False
        self.plugin_error = info
        self.pluginsFailed.emit(info)
        self.problemsChanged.emit()

    def reload_plugins(self) -> None:
        self.settings = load_settings()
        self.load_plugins()

    def library(self):
        """A model library with the plugins' sources and architectures (call off the GUI thread)."""
        from tlstudio.core.models import ModelLibrary

        pm = self.plugins
        return ModelLibrary(sources=(pm.model_sources() if pm else None) or None,
                            extra_architectures=(pm.architectures() if pm else None) or None)

    def refresh_models(self) -> None:
        def work():
            from tlstudio.core.models.huggingface import hf_model_choices

            try:
                text = hf_model_choices()
            except Exception:  # noqa: BLE001 - a broken cache folder: no text models offered
                text = []
            return {s.name: s for s in self.library().list_status()}, text

        self.tasks.submit(work, pool="plugins", name="models", on_done=self._models_ready,
                          on_error=lambda info: self.message.emit(f"Model catalog: {info.message}"))

    def _models_ready(self, result) -> None:
        self.model_status, self.text_models = result
        self._take_text_model()
        self.modelsChanged.emit()
        self.problemsChanged.emit()

    def traits(self, task: str | None = None) -> TaskTraits:
        """What ``task`` (default: the project's) is like: its words and the tools that apply,
        from its plugin's manifest until the plugins have loaded, then from the task itself."""
        return task_traits(task or self.project.task, self.plugins)

    def text_model(self, name: str):
        """The text model (HFModelChoice) that ``name`` means: a found folder's name or path."""
        for c in self.text_models or []:
            if name in (c.name, str(c.path), c.path.name, f"{c.path.parent.name}/{c.path.name}"):
                return c
        return None

    def _take_text_model(self) -> None:
        """A text technique with an image model named: the one text model found is taken."""
        p = self.project
        if not self.traits().texts or self.text_models is None or self.text_model(p.model.architecture):
            return
        if Path(p.resolve(p.model.architecture)).is_dir() and p.model.architecture not in ("", "auto"):
            return  # a folder the user chose
        if len(self.text_models) == 1:
            p.model.architecture = self.text_models[0].name
            self.message.emit(f"Text model: {self.text_models[0].name} (the one found on this computer).")

    def techniques(self) -> dict:
        if self.plugins is None:
            return {}
        try:
            return self.plugins.techniques()
        except Exception:  # noqa: BLE001 - the manager isolates hooks; belt and braces
            return {}

    def technique(self, tid: str | None = None):
        return self.techniques().get(tid or self.project.technique.id)

    def tasks_by_id(self) -> dict:
        if self.plugins is None:
            return {}
        try:
            return self.plugins.tasks()
        except Exception:  # noqa: BLE001 - the manager isolates hooks; belt and braces
            return {}

    def task(self, task_id: str | None = None):
        """The Task plugin of ``task_id`` (default: the project's), or None."""
        return self.tasks_by_id().get(task_id or self.project.task)

    # --- project file ---------------------------------------------------------------------------
    def open_project(self, path: str | Path) -> None:
        """Open a project file; raises ProjectError (a readable message) when it is bad."""
        project = load_project(path)
        self._set_project(project, project.path)
        self.settings.add_recent(project.path)
        self._save_settings_quietly()

    def new_project(self) -> None:
        """A new project: the default technique (the best recipe measured) with the training
        settings it recommends, as the technique page's Recommended button would set them."""
        project = Project()
        tech = self.technique(project.technique.id)
        try:
            rec = dict(tech.recommended_training() or {}) if tech is not None else {}
            project.training = TrainingConfig.model_validate(project.training.model_dump(mode="json") | rec)
        except Exception:  # noqa: BLE001 - a plugin's bad recommendation: the plain defaults stay
            pass
        self._set_project(project, None)

    def set_project(self, project: Project, path: Path | None) -> None:
        """Show this project (a sample's copy, ...): the pages read everything again."""
        self._set_project(project, path)

    def _set_project(self, project: Project, path: Path | None) -> None:
        self.project = project
        self.path = Path(path) if path else None
        self.dirty = False
        self._form_problems.clear()
        self._tech_settings = {project.technique.id: dict(project.technique.settings)}
        self._models_by_task = {}
        self.data_table = None
        self.data_error = None
        self.projectReplaced.emit()
        self.problemsChanged.emit()

    def save_project(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.path
        if target is None:
            raise ValueError("no file name")
        saved = self.project.save(target)
        self.path = saved
        self.dirty = False
        self.settings.add_recent(saved)
        self._save_settings_quietly()
        self.projectEdited.emit("file")
        return saved

    def _save_settings_quietly(self) -> None:
        try:
            save_settings(self.settings)
        except OSError as e:
            self.message.emit(f"Settings could not be saved: {e}")

    def save_settings(self, settings: Settings) -> None:
        device_changed = settings.device != self.settings.device
        self.settings = settings
        save_settings(settings)
        self.settingsChanged.emit()
        if device_changed and self.plugins is not None:
            def work():
                from tlstudio.core import engine

                try:
                    return engine.describe_device(engine.select_device(settings.device))
                except Exception as e:  # noqa: BLE001
                    return f"{settings.device}: not available ({e})"

            self.tasks.submit(work, on_done=self._device_known)
        self.refresh_models()

    def _device_known(self, text: str) -> None:
        self.device_text = text
        self.deviceChanged.emit(text)

    # --- editing --------------------------------------------------------------------------------
    def edit(self, section: str, **changes: Any) -> None:
        """Set fields of a project section ("data", "data.split", "model", "augmentation",
        "training", "technique"); values are validated by the project's own models."""
        target: Any = self.project
        for part in section.split("."):
            target = getattr(target, part)
        for k, v in changes.items():
            setattr(target, k, v)
        self._edited(section.split(".")[0])

    def replace(self, section: str, values: dict) -> None:
        """Replace a whole section ("training", "augmentation", "data.split") with validated values."""
        *head, last = section.split(".")
        target: Any = self.project
        for part in head:
            target = getattr(target, part)
        setattr(target, last, values)
        self._edited(section.split(".")[0])

    def set_technique(self, tid: str, settings: dict | None = None, task: str | None = None) -> None:
        cur = self.project.technique
        self._tech_settings[cur.id] = dict(cur.settings)
        if settings is None:
            settings = self._tech_settings.get(tid, {})
        self.project.technique.id = tid
        self.project.technique.settings = dict(settings)
        if task and task != self.project.task:
            self._models_by_task[self.project.task] = self.project.model.architecture
            self.project.task = task
            if task in self._models_by_task:  # back to a task: the model it had
                self.project.model.architecture = self._models_by_task[task]
            elif not self.traits(task).texts and self.text_model(self.project.model.architecture):
                self.project.model.architecture = ModelConfig().architecture  # an image model, not a text one
            self._take_text_model()
        self._edited("technique")

    def set_technique_settings(self, settings: dict) -> None:
        self.project.technique.settings = dict(settings)
        self._tech_settings[self.project.technique.id] = dict(settings)
        self._edited("technique")

    def _edited(self, section: str) -> None:
        self.dirty = True
        self.projectEdited.emit(section)
        self.problemsChanged.emit()

    # --- the data the Data page read ------------------------------------------------------------
    def set_data(self, table=None, error: str | None = None) -> None:
        """The Data page's reading: started (nothing), finished (``table``) or failed (``error``)."""
        self.data_table, self.data_error = table, error
        self.dataRead.emit(table)
        self.problemsChanged.emit()

    def data_task(self) -> str | None:
        """The task the data were read for, when they hold something usable (else None)."""
        t = self.data_table
        return table_task(t) if t is not None and getattr(t, "items", None) else None

    def _data_problem(self) -> str | None:
        """Why the data read cannot train (no usable image, one class ...), in the engine's words."""
        from tlstudio.core.errors import DataError

        from .taskdata import table_kind

        if self.data_error:
            return f"Data: {self.data_error}"
        t = self.data_table
        if t is None:
            return None
        try:
            kind = table_kind(t)
            if kind == "text":
                from tlstudio.core.data.text import check_trainable_texts

                check_trainable_texts(t)
            elif kind == "image":
                from tlstudio.core.data import check_trainable

                check_trainable(t)
            elif not t.items:
                raise DataError(f"no usable images found in {t.source}")
        except DataError as e:
            return f"Data: {e} (see the Data page)."
        return None

    # --- problems -------------------------------------------------------------------------------
    def set_form_problems(self, key: str, problems: list[str]) -> None:
        """Problems of a form holding an invalid edit (``key`` names the form, e.g. "Training")."""
        old = self._form_problems.get(key, [])
        if problems:
            self._form_problems[key] = list(problems)
        else:
            self._form_problems.pop(key, None)
        if old != list(problems):
            self.problemsChanged.emit()

    def problems(self) -> list[str]:
        """Everything that would stop a run, one readable line each."""
        out = [f"{key}: {p}" for key, items in self._form_problems.items() for p in items]
        p = self.project
        if not p.data.source:
            out.append("Data: choose a folder or file of images on the Data page.")
        elif not p.resolve(p.data.source).exists():
            out.append(f"Data: {p.resolve(p.data.source)} does not exist.")
        elif (problem := self._data_problem()) is not None:
            out.append(problem)
        if self.plugins is None:
            out.append("Plugins are still loading…" if self.plugin_error is None
                       else f"Plugins could not be loaded: {self.plugin_error.message}")
        else:
            tech = self.technique()
            if tech is None:
                why = self.plugins.unavailable_reason(p.technique.id)
                out.append(f"Technique: '{p.technique.id}' cannot be used: {why}. Choose another on the Technique page."
                           if why else f"Technique: '{p.technique.id}' is not available (see Plugins…); choose "
                           "another on the Technique page.")
            else:
                if tech.task != p.task:
                    out.append(f"Technique: {tech.title or tech.id} is for {tech.task}, the project is {p.task}.")
                if "Technique settings" not in self._form_problems:
                    try:
                        tech.make_config(p.technique.settings)
                    except ValidationError as e:
                        out += [f"Technique settings: {_field_title(tech.Config, err)}: {friendly_error(err)}"
                                for err in e.errors()]
                    except Exception as e:  # noqa: BLE001 - a plugin's Config that raises
                        out.append(f"Technique settings: {type(e).__name__}: {e}")
        if self.traits().texts:
            if self.text_models is not None and not self.text_model(p.model.architecture) \
                    and not p.resolve(p.model.architecture).is_dir():
                found = ", ".join(c.name for c in self.text_models) or "none is on this computer"
                out.append(f"Model: '{p.model.architecture}' is not a text model; choose one on the Model page "
                           f"({found}).")
        elif self.model_status is not None:
            st = self.model_status.get(p.model.architecture)
            if st is None:
                out.append(f"Model: '{p.model.architecture}' is not in the catalog; choose one on the Model page.")
            elif p.model.weights == "imagenet" and not st.ready:
                out.append(f"Model: no pretrained weights for {st.title} on this computer; import them on the Model "
                           "page, or choose another model.")
        return out

    # --- runs -----------------------------------------------------------------------------------
    def runs_dir(self) -> Path:
        return self.settings.runs_path()

    def run_project(self) -> Project:
        """The project a run gets: a copy, with the studio's device when the project says auto."""
        p = self.project.model_copy(deep=True)
        p._path = self.project.path
        if p.training.device == "auto" and self.settings.device not in ("", "auto"):
            p.training.device = self.settings.device
        return p

    def set_current_run(self, run_dir: str | Path | None) -> None:
        self.current_run = str(run_dir) if run_dir else None
        self.currentRunChanged.emit(self.current_run or "")

    @property
    def title(self) -> str:
        name = self.project.name or "Untitled"
        where = f" — {self.path}" if self.path else " (not saved)"
        return f"{'*' if self.dirty else ''}{name}{where}"


def _field_title(model_cls, err: dict) -> str:
    loc = [str(x) for x in err.get("loc", ())]
    if not loc:
        return "settings"
    info = getattr(model_cls, "model_fields", {}).get(loc[0])
    return (info.title if info and info.title else humanize(loc[0])) + ("." + ".".join(loc[1:]) if loc[1:] else "")
