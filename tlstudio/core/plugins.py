"""Plugin discovery and isolation.

Built-in and third-party plugins both arrive through the entry-point group
``tlstudio.plugins``.  Every load and every hook call of a plugin is isolated: a plugin
that fails to import, raises in a hook or returns the wrong type is recorded as failed
(with its message) and the others work on.  Disabled plugins are remembered in the
settings; safe mode starts with every third-party plugin off.
"""
from __future__ import annotations

import importlib.metadata as md
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError
from .settings import Settings, load_settings

BUILTIN_DISTS = {"tlstudio"}


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

    def fail(self, message: str, details: str = "") -> None:
        self.status = "failed"
        self.errors.append(message)
        if details:
            self.details.append(details)


# hook name -> (expected item type, how to name an item)
def _hook_types() -> dict[str, tuple[type, Callable[[Any], str]]]:
    from .tasks.base import Task
    from .techniques.base import Technique

    types: dict[str, tuple[type, Callable[[Any], str]]] = {"tlstudio_tasks": (Task, lambda t: t.id),
                                                           "tlstudio_techniques": (Technique, lambda t: t.id)}
    try:
        from .data import DatasetReader

        types["tlstudio_dataset_readers"] = (DatasetReader, lambda r: r.id)
    except ImportError:  # pragma: no cover - data layer always present in a real install
        pass
    try:
        from .models import Architecture, WeightSource

        types["tlstudio_model_sources"] = (WeightSource, lambda s: s.id)
        types["tlstudio_architectures"] = (Architecture, lambda a: a.name)
    except ImportError:  # pragma: no cover
        pass
    try:
        from .delivery.exporter import Exporter

        types["tlstudio_exporters"] = (Exporter, lambda e: e.id)
    except ImportError:
        pass
    return types


class PluginManager:
    """Loads the plugins once and answers "which techniques/readers/... are there"."""

    def __init__(self, settings: Settings | None = None, safe_mode: bool = False,
                 entry_points: Iterable[md.EntryPoint] | None = None, load: bool = True):
        self.settings = settings if settings is not None else load_settings()
        self.safe_mode = safe_mode
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._cache: dict[str, list] = {}
        if load:
            self.load(entry_points)

    # --- loading ------------------------------------------------------------------------
    def load(self, entry_points: Iterable[md.EntryPoint] | None = None) -> None:
        eps = list(entry_points) if entry_points is not None else list(md.entry_points(group=hookspecs.ENTRY_POINT_GROUP))
        seen: set[str] = set()
        for ep in sorted(eps, key=lambda e: (e.dist.name if e.dist else "", e.name)):
            if ep.name in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist else "?"
            info = PluginInfo(name=ep.name, module=ep.value, dist=dist,
                              version=(ep.dist.version if ep.dist else "?"),
                              builtin=dist.lower().replace("_", "-") in BUILTIN_DISTS)
            self.plugins[ep.name] = info
            if ep.name in self.settings.disabled_plugins or (self.safe_mode and not info.builtin):
                info.status = "disabled"
                continue
            try:
                obj = ep.load()
            except BaseException as e:  # noqa: BLE001 - a plugin must never take the studio down
                if isinstance(e, KeyboardInterrupt):
                    raise
                info.fail(f"could not be loaded: {type(e).__name__}: {e}", traceback.format_exc())
                continue
            try:
                self.pm.register(obj, name=ep.name)
            except Exception as e:  # e.g. a hook name that is not in the spec
                info.fail(f"could not be registered: {e}", traceback.format_exc())
        self._cache.clear()

    def register(self, obj: Any, name: str, builtin: bool = False) -> PluginInfo:
        """Register a plugin object directly (tests, embedded use)."""
        info = PluginInfo(name=name, module=getattr(obj, "__name__", repr(obj)), dist="(direct)", version="", builtin=builtin)
        self.plugins[name] = info
        self.pm.register(obj, name=name)
        self._cache.clear()
        return info

    # --- isolated hook calls ----------------------------------------------------------------
    def _collect(self, hook_name: str) -> list:
        if hook_name in self._cache:
            return self._cache[hook_name]
        expected, ident = _hook_types()[hook_name]
        hook = getattr(self.pm.hook, hook_name)
        out: list = []
        for impl in reversed(hook.get_hookimpls()):  # registration order
            name = self.pm.get_name(impl.plugin) or "?"
            info = self.plugins.get(name)
            try:
                result = impl.function()
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                if info:
                    info.fail(f"{hook_name} raised {type(e).__name__}: {e}", traceback.format_exc())
                continue
            if result is None:
                continue
            if not isinstance(result, (list, tuple)):
                if info:
                    info.fail(f"{hook_name} returned {type(result).__name__}, expected a list of {expected.__name__}")
                continue
            good = []
            for item in result:
                if isinstance(item, expected):
                    good.append(item)
                elif info:
                    info.fail(f"{hook_name} returned a {type(item).__name__}, expected {expected.__name__}")
            if info:
                info.provides[hook_name] = [str(ident(i)) for i in good]
            out.extend(good)
        self._cache[hook_name] = out
        return out

    def techniques(self, task: str | None = None) -> dict[str, Any]:
        ts: dict[str, Any] = {}
        for t in self._collect("tlstudio_techniques"):
            if t.id and t.id not in ts and (task is None or t.task == task):
                ts[t.id] = t
        return ts

    def tasks(self) -> dict[str, Any]:
        """The tasks by id (the first plugin to offer an id keeps it)."""
        ts: dict[str, Any] = {}
        for t in self._collect("tlstudio_tasks"):
            if t.id and t.id not in ts:
                ts[t.id] = t
        return ts

    def task(self, task_id: str):
        ts = self.tasks()
        if task_id not in ts:
            raise PluginError(f"Unknown task '{task_id}'. Available: {', '.join(sorted(ts)) or 'none'}"
                              + self._failure_hint())
        return ts[task_id]

    def technique(self, tid: str):
        ts = self.techniques()
        if tid not in ts:
            raise PluginError(f"Unknown technique '{tid}'. Available: {', '.join(sorted(ts)) or 'none'}"
                              + self._failure_hint())
        return ts[tid]

    def readers(self) -> list:
        return self._collect("tlstudio_dataset_readers")

    def model_sources(self) -> list:
        return self._collect("tlstudio_model_sources")

    def architectures(self) -> list:
        return self._collect("tlstudio_architectures")

    def exporters(self) -> dict[str, Any]:
        if "tlstudio_exporters" not in _hook_types():
            return {}
        return {e.id: e for e in self._collect("tlstudio_exporters")}

    def notify(self, event: dict) -> None:
        """Send a run event to every observer; an observer's error is recorded, never raised."""
        for impl in self.pm.hook.tlstudio_run_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception as e:  # noqa: BLE001
                info = self.plugins.get(self.pm.get_name(impl.plugin) or "")
                if info and not any("tlstudio_run_event" in m for m in info.errors):
                    info.fail(f"tlstudio_run_event raised {type(e).__name__}: {e}", traceback.format_exc())

    def has_observers(self) -> bool:
        return bool(self.pm.hook.tlstudio_run_event.get_hookimpls())

    def collect_all(self) -> None:
        """Call every descriptor hook once, so that failures show in the plugin list."""
        for h in _hook_types():
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


_default: PluginManager | None = None


def get_plugin_manager(safe_mode: bool | None = None, reload: bool = False) -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _default
    if _default is None or reload or (safe_mode is not None and _default.safe_mode != safe_mode):
        _default = PluginManager(safe_mode=bool(safe_mode))
    return _default
