"""Plugin discovery and isolation.

Built-in and third-party plugins both arrive through the entry-point group
``tlstudio.plugins``.  Every load and every hook call of a plugin is isolated, and so is
every read of what a plugin returns (an id, a task, a title): a plugin that fails to import,
raises (even ``SystemExit``) in a hook or in a property, or returns the wrong thing is
recorded as failed (with its message) and the others work on.  The built-ins load first and
win: a third-party entry point or item that takes a built-in's name is refused and shown as
failed.  A technique that lacks a required hook, or whose settings' defaults break their own
bounds, is reported naming the plugin and the method or setting.  Each load is timed, and a
slow third-party plugin is named.  Disabled plugins are remembered in the settings; safe
mode starts with every third-party plugin off.
"""
from __future__ import annotations

import importlib.metadata as md
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError
from .failures import register_manager, register_plugin_module
from .settings import Settings, load_settings

BUILTIN_DISTS = {"tlstudio"}
#: a third-party plugin whose import takes longer than this is named in `tlstudio plugins` and the log
SLOW_LOAD_SECONDS = 2.0
#: hooks a technique must implement (the rest have defaults: the task does the data, the step, the evaluation)
REQUIRED_TECHNIQUE_HOOKS = ("build",)

log = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    """What the Plugins dialog and ``tlstudio plugins`` show for one plugin."""

    name: str
    module: str
    dist: str
    version: str
    builtin: bool
    status: str = "loaded"  # loaded | failed | disabled
    errors: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # tracebacks, for a Details expander
    provides: dict[str, list[str]] = field(default_factory=dict)  # hook -> ids offered
    load_seconds: float = 0.0
    from_manifest: bool = False  # listed from its manifest, not imported
    notes: list[str] = field(default_factory=list)  # not failures: a slow load ...

    def fail(self, message: str, details: str = "") -> None:
        self.status = "failed"
        if message not in self.errors:
            self.errors.append(message)
        if details:
            self.details.append(details)


HOOKS = ("tlstudio_tasks", "tlstudio_techniques", "tlstudio_dataset_readers", "tlstudio_model_sources", "tlstudio_architectures",
         "tlstudio_exporters")


def _hook_type(hook_name: str) -> tuple[type, str, str] | None:
    """(expected item type, the attribute that names an item, what an item is called); only
    the module that hook needs is imported (reading data does not import torch)."""
    try:
        if hook_name == "tlstudio_tasks":
            from .tasks.base import Task

            return Task, "id", "task"
        if hook_name == "tlstudio_techniques":
            from .techniques.base import Technique

            return Technique, "id", "technique"
        if hook_name == "tlstudio_dataset_readers":
            from .data import DatasetReader

            return DatasetReader, "id", "data reader"
        if hook_name == "tlstudio_model_sources":
            from .models import WeightSource

            return WeightSource, "id", "weight source"
        if hook_name == "tlstudio_architectures":
            from .models import Architecture

            return Architecture, "name", "architecture"
        if hook_name == "tlstudio_exporters":
            from .delivery.exporter import Exporter

            return Exporter, "id", "exporter"
    except ImportError:  # pragma: no cover - every layer is present in a real install
        return None
    return None


def _builtin_offers(ep: md.EntryPoint, hooks: set[str]) -> bool:
    """Does a built-in entry point implement one of ``hooks``?  Read from its source, without
    importing it (its imports may be heavy: torch)."""
    import importlib.machinery
    import importlib.util

    parts = ep.value.split(":")[0].strip().split(".")
    try:  # the top-level package is imported (light); the modules below it are only looked up
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            locations = spec.submodule_search_locations if spec else None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), locations) if locations else None
        src = open(spec.origin, encoding="utf-8").read() if spec and spec.origin else ""
    except (ImportError, OSError, ValueError, AttributeError):
        return True
    return not src or any(f"def {h}(" in src for h in hooks)


def _is_builtin(ep: md.EntryPoint) -> bool:
    return (ep.dist.name if ep.dist else "?").lower().replace("_", "-") in BUILTIN_DISTS


def _error_text(e: BaseException) -> str:
    """'Type: message' (plain, never advice to load unsafely) for a plugin's own error list."""
    from .errors import StudioError
    from .failures import plain_message, scrub

    if isinstance(e, SystemExit):
        return f"SystemExit: it tried to end the program (exit code {e.code!r})"
    if isinstance(e, StudioError) or (isinstance(e, NotImplementedError) and not str(e).strip()):
        return plain_message(e)
    return scrub(f"{type(e).__name__}: {e}")


def technique_problems(t) -> tuple[list[str], str]:
    """(hooks a technique lacks, the problem of its default settings or ''); reads inside the caller's isolation."""
    from pydantic import BaseModel, ValidationError

    from .techniques.base import Technique

    missing = [h for h in REQUIRED_TECHNIQUE_HOOKS if getattr(type(t), h, None) is getattr(Technique, h)]
    cfg = getattr(t, "Config", None)
    if not (isinstance(cfg, type) and issubclass(cfg, BaseModel)):
        return missing, f"its Config is a {type(cfg).__name__}, not a pydantic model of settings"
    try:
        t.make_config({})
    except ValidationError as e:
        errs = e.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "(settings)"
        return missing, (f"the default of its setting '{where}' ({first.get('input')!r}) breaks its own bounds: "
                         f"{first.get('msg', 'invalid')}")
    return missing, ""


class PluginManager:
    """Loads the plugins once and answers "which techniques/readers/... are there"."""

    def __init__(self, settings: Settings | None = None, safe_mode: bool = False,
                 entry_points: Iterable[md.EntryPoint] | None = None, load: bool = True,
                 only_hooks: Iterable[str] | None = None, manifests: bool = False):
        self.settings = settings if settings is not None else load_settings()
        self.safe_mode = safe_mode
        # only the built-ins that implement these hooks are loaded (validate-data: the readers);
        # every third-party plugin is, since it cannot be known without importing it
        self.only_hooks = set(only_hooks) if only_hooks else None
        # True (`tlstudio plugins`): a plugin with a manifest is listed from it, not imported
        self.use_manifests = manifests
        self._manifest_ids: dict[str, dict[str, str]] = {}  # hook -> {item id: plugin name}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._cache: dict[str, list] = {}
        self._ids: dict[str, dict[str, Any]] = {}  # hook -> {item id: item}, read once inside the isolation
        self._refused: dict[tuple[str, str], str] = {}  # (hook, item id) -> why it is not offered
        register_manager(self)
        if load:
            self.load(entry_points)

    # --- loading ------------------------------------------------------------------------
    def load(self, entry_points: Iterable[md.EntryPoint] | None = None) -> None:
        eps = list(entry_points) if entry_points is not None else list(md.entry_points(group=hookspecs.ENTRY_POINT_GROUP))
        # the built-ins first: their names and items win over a third party's
        for ep in sorted(eps, key=lambda e: (not _is_builtin(e), e.dist.name if e.dist else "", e.name)):
            dist = ep.dist.name if ep.dist else "?"
            if self.only_hooks and _is_builtin(ep) and not _builtin_offers(ep, self.only_hooks):
                continue
            key = ep.name
            taken = self.plugins.get(key)
            if taken is not None:
                if taken.dist == dist:  # the same distribution found twice on sys.path
                    continue
                key = f"{ep.name} ({dist})"
                if key in self.plugins:
                    continue
            info = PluginInfo(name=key, module=ep.value, dist=dist, version=(ep.dist.version if ep.dist else "?"),
                              builtin=_is_builtin(ep))
            self.plugins[key] = info
            if taken is not None:
                info.fail(f"its entry point is named '{ep.name}', like the plugin of {taken.dist}"
                          + (" (built in)" if taken.builtin else "") + ": refused, so that it cannot replace it. "
                          "Its author must rename the entry point.")
                continue
            if key in self.settings.disabled_plugins or (self.safe_mode and not info.builtin):
                info.status = "disabled"
                continue
            if self.use_manifests and self._from_manifest(ep, info):
                continue
            register_plugin_module(ep.value.split(":")[0].strip(), key)
            t0 = time.perf_counter()
            try:
                obj = ep.load()
            except BaseException as e:  # noqa: BLE001 - a plugin must never take the studio down
                if isinstance(e, KeyboardInterrupt):
                    raise
                info.fail(f"could not be loaded: {_error_text(e)}", traceback.format_exc())
                continue
            finally:
                info.load_seconds = time.perf_counter() - t0
                self._note_slow(info)
            try:
                self.pm.register(obj, name=key)
            except BaseException as e:  # noqa: BLE001 - e.g. a hook name that is not in the spec
                if isinstance(e, KeyboardInterrupt):
                    raise
                info.fail(f"could not be registered: {_error_text(e)}", traceback.format_exc())
        self._clear()

    def _from_manifest(self, ep: md.EntryPoint, info: PluginInfo) -> bool:
        """List ``ep`` from its manifest (hook -> items with an "id"), without importing it;
        False when it has none or the manifest cannot be read (the plugin is then imported)."""
        found = [m for m in md.entry_points(group=hookspecs.MANIFEST_GROUP, name=ep.name)
                 if (m.dist.name if m.dist else None) == (ep.dist.name if ep.dist else None)]
        if not found:
            return False
        try:
            manifest = found[0].load()
            provides = {hook: [str(item["id"]) for item in items] for hook, items in dict(manifest).items()}
        except Exception:  # noqa: BLE001 - a broken manifest: the plugin itself says what it offers
            return False
        for hook, ids in provides.items():
            owners = self._manifest_ids.setdefault(hook, {})
            for i in ids:
                owners.setdefault(i, info.name)
        info.provides, info.from_manifest = provides, True
        return True

    def _note_slow(self, info: PluginInfo) -> None:
        if info.builtin or info.load_seconds < SLOW_LOAD_SECONDS:
            return
        note = (f"slow to load: {info.load_seconds:.1f} s (every start of the studio waits for it; switch it off "
                f"with `tlstudio plugins --disable {info.name}`)")
        info.notes.append(note)
        log.warning("plugin %s (%s %s): %s", info.name, info.dist, info.version, note)  # stderr, every command

    def register(self, obj: Any, name: str, builtin: bool = False) -> PluginInfo:
        """Register a plugin object directly (tests, embedded use)."""
        info = PluginInfo(name=name, module=getattr(obj, "__name__", repr(obj)), dist="(direct)", version="", builtin=builtin)
        self.plugins[name] = info
        module = obj.__name__ if isinstance(getattr(obj, "__name__", None), str) and hasattr(obj, "__file__") \
            else type(obj).__module__
        if builtin or not module.startswith(("tlstudio.", "tlstudio_plugins.")):  # the studio's code is not a plugin's
            register_plugin_module(module, name)
        self.pm.register(obj, name=name)
        self._clear()
        return info

    def _clear(self) -> None:
        self._cache.clear()
        self._ids.clear()
        self._refused.clear()

    # --- isolated hook calls ----------------------------------------------------------------
    def _check_item(self, hook_name: str, item: Any, expected: type, id_attr: str, kind: str) -> tuple[str, str]:
        """(the item's id, '') or ('', what is wrong with it): every read of a plugin's
        attributes happens here, inside the isolation."""
        if not isinstance(item, expected):
            return "", f"{hook_name} returned a {type(item).__name__}, expected {expected.__name__}"
        ident = getattr(item, id_attr)
        if not isinstance(ident, str) or not ident.strip():
            return "", (f"{hook_name} returned a {kind} whose {id_attr} is {ident!r} ({type(ident).__name__}); "
                        f"it must be a non-empty text")
        if hook_name == "tlstudio_techniques":
            task, title = item.task, item.title
            tasks = {**self._manifest_ids.get("tlstudio_tasks", {}), **self.tasks()}
            if task not in tasks:
                return ident, (f"technique '{ident}' is for the task {task!r}, which no installed plugin provides "
                               f"({', '.join(sorted(tasks))})")
            if not isinstance(title, str):
                return ident, f"technique '{ident}' has a title that is a {type(title).__name__}, not a text"
            missing, _ = technique_problems(item)
            if missing:
                return ident, (f"technique '{ident}' does not implement {', '.join(m + '()' for m in missing)}, so it "
                            "cannot train: it is left out")
        return ident, ""

    def _collect(self, hook_name: str) -> list:
        if hook_name in self._cache:
            return self._cache[hook_name]
        if not getattr(self.pm.hook, hook_name).get_hookimpls():  # nothing imported offers it (manifests)
            self._cache[hook_name] = []
            self._ids[hook_name] = {}
            return []
        types = _hook_type(hook_name)
        if types is None:
            return []
        expected, id_attr, kind = types
        hook = getattr(self.pm.hook, hook_name)
        out: list = []
        owners: dict[str, str] = dict(self._manifest_ids.get(hook_name, {}))  # listed from manifests
        ids: dict[str, Any] = {}
        order = {n: i for i, n in enumerate(self.plugins)}  # load order: the built-ins first, whatever
        impls = sorted(hook.get_hookimpls(),  # tryfirst/trylast a plugin asks for
                       key=lambda i: order.get(self.pm.get_name(i.plugin) or "", len(order)))
        for impl in impls:
            name = self.pm.get_name(impl.plugin) or "?"
            info = self.plugins.get(name) or PluginInfo(name, "?", "?", "", False)
            try:
                result = impl.function()
                if result is None:
                    continue
                if not isinstance(result, (list, tuple)):
                    info.fail(f"{hook_name} returned {type(result).__name__}, expected a list of {expected.__name__}")
                    continue
                items = list(result)
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                info.fail(f"{hook_name} raised {_error_text(e)}", traceback.format_exc())
                continue
            good = []
            for item in items:
                try:
                    ident, problem = self._check_item(hook_name, item, expected, id_attr, kind)
                    if not problem and hook_name == "tlstudio_techniques":
                        _, default_problem = technique_problems(item)
                        if default_problem:  # reported; the user can still give a valid value
                            info.fail(f"technique '{ident}': {default_problem}")
                except BaseException as e:  # noqa: BLE001 - a property that raises, an unhashable id ...
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    ident, problem = "", f"{hook_name}: reading a {kind} it returned raised {_error_text(e)}"
                if problem:
                    info.fail(problem)
                    if ident:
                        self._refused[(hook_name, ident)] = f"{problem} (plugin {name})"
                    continue
                if ident in owners:
                    other = self.plugins.get(owners[ident])
                    why = (f"offers the {kind} '{ident}', which {owners[ident]}"
                           + (" (built in)" if other and other.builtin else "") + " already provides: refused")
                    info.fail(why)
                    continue
                owners[ident] = name
                ids[ident] = item
                good.append(item)
            info.provides[hook_name] = [i for i, o in owners.items() if o == name]
            out.extend(good)
        self._cache[hook_name] = out
        self._ids[hook_name] = ids
        return out

    def techniques(self, task: str | None = None) -> dict[str, Any]:
        self._collect("tlstudio_techniques")
        ts = self._ids.get("tlstudio_techniques", {})
        return {i: t for i, t in ts.items() if task is None or _safe_attr(t, "task") == task}

    def tasks(self) -> dict[str, Any]:
        """The tasks by id (a built-in's id cannot be taken by a third party)."""
        self._collect("tlstudio_tasks")
        return dict(self._ids.get("tlstudio_tasks", {}))

    def task(self, task_id: str):
        ts = self.tasks()
        if task_id not in ts:
            refused = self._refused.get(("tlstudio_tasks", task_id))
            if refused:
                raise PluginError(f"Task '{task_id}' cannot be used: {refused}; see `tlstudio plugins`.")
            raise PluginError(f"Unknown task '{task_id}'. Available: {', '.join(sorted(ts)) or 'none'}"
                              + self._failure_hint())
        return ts[task_id]

    def technique(self, tid: str):
        ts = self.techniques()
        if tid not in ts:
            refused = self._refused.get(("tlstudio_techniques", tid))
            if refused:
                raise PluginError(f"Technique '{tid}' cannot be used: {refused}; see `tlstudio plugins`.")
            raise PluginError(f"Unknown technique '{tid}'. Available: {', '.join(sorted(ts)) or 'none'}"
                              + self._failure_hint())
        return ts[tid]

    def unavailable_reason(self, tid: str) -> str:
        """Why the technique ``tid`` is not offered ('' when it is, or nothing is known)."""
        self._collect("tlstudio_techniques")
        return self._refused.get(("tlstudio_techniques", tid), "")

    def readers(self) -> list:
        return self._collect("tlstudio_dataset_readers")

    def model_sources(self) -> list:
        return self._collect("tlstudio_model_sources")

    def architectures(self) -> list:
        return self._collect("tlstudio_architectures")

    def exporters(self) -> dict[str, Any]:
        self._collect("tlstudio_exporters")
        return dict(self._ids.get("tlstudio_exporters", {}))

    def notify(self, event: dict) -> None:
        """Send a run event to every observer; an observer's error (even ``sys.exit``) is
        recorded, never raised: observers never stop a run."""
        for impl in self.pm.hook.tlstudio_run_event.get_hookimpls():
            try:
                impl.function(event=event)
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                info = self.plugins.get(self.pm.get_name(impl.plugin) or "")
                if info and not any("tlstudio_run_event" in m for m in info.errors):
                    info.fail(f"tlstudio_run_event raised {_error_text(e)}", traceback.format_exc())

    def has_observers(self) -> bool:
        return bool(self.pm.hook.tlstudio_run_event.get_hookimpls())

    def collect_all(self) -> None:
        """Call every descriptor hook once, so that failures show in the plugin list."""
        for h in HOOKS:
            self._collect(h)

    def _failure_hint(self) -> str:
        failed = [p.name for p in self.plugins.values() if p.status == "failed"]
        return f" (failed plugins: {', '.join(failed)}; see `tlstudio plugins`)" if failed else ""

    # --- enable / disable (remembered) -------------------------------------------------------
    def set_enabled(self, name: str, enabled: bool, save: bool = True) -> None:
        from .settings import save_settings

        dis = [n for n in self.settings.disabled_plugins if n != name]
        if not enabled:
            dis.append(name)
        self.settings.disabled_plugins = dis
        if save:
            save_settings(self.settings)


def _safe_attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except Exception:  # noqa: BLE001 - checked once when collected; a later surprise counts as no match
        return None


_default: PluginManager | None = None


def get_plugin_manager(safe_mode: bool | None = None, reload: bool = False) -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _default
    if _default is None or reload or (safe_mode is not None and _default.safe_mode != safe_mode):
        _default = PluginManager(safe_mode=bool(safe_mode))
    return _default
