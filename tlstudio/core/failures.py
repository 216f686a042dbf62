"""What a user reads when something goes wrong: a plain message that says what and where,
advice where there is some, and the traceback kept apart (``--debug`` on the command line,
Details in the window).

Two promises are kept here for every edge of the studio (the CLI, the window, a failed run):

* a library's advice to load a file unsafely ("re-run torch.load with weights_only=False",
  numpy's "allow_pickle") never reaches the user: such text is replaced by a plain
  refusal;
* a message stays short: long lines are cut, so a damaged CSV never prints the whole file.

The module also keeps the map from a plugin's Python module to the plugin that brought it,
so that an error raised in a plugin's code (a data reader, a technique hook) names the plugin,
and a failure met outside the plugin manager (while reading data) can mark the plugin failed.
"""
from __future__ import annotations

import re
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

from .errors import StudioError, advice_for

MAX_LINE = 600  # characters of one message line shown
MAX_LINES = 40

UNSAFE_LOAD = ("The file holds Python objects or code besides plain data, and such files are never loaded "
               "(loading them could run code). Use a plain weights/state file (safetensors, or a state dict).")

# phrases of libraries that advise loading a file unsafely
_UNSAFE_HINTS = re.compile(
    r"weights_only|allow_pickle|add_safe_globals|safe_globals|arbitrary code execution|load it unsafely|"
    r"trusted source|pickle\.load", re.IGNORECASE)


def mentions_unsafe_load(text: str) -> bool:
    return bool(_UNSAFE_HINTS.search(text or ""))


def scrub(text: str, replacement: str = UNSAFE_LOAD) -> str:
    """``text`` without any advice to load unsafely: a message that carries such advice is
    replaced by ``replacement``; lines are cut to a readable length."""
    if mentions_unsafe_load(text):
        return replacement
    return shorten(text)


def shorten(text: str, max_line: int = MAX_LINE, max_lines: int = MAX_LINES) -> str:
    lines = str(text).splitlines() or [""]
    out = [ln if len(ln) <= max_line else ln[:max_line - 1] + "…" for ln in lines[:max_lines]]
    if len(lines) > max_lines:
        out.append(f"… and {len(lines) - max_lines} more lines")
    return "\n".join(out)


def scrub_details(details: str) -> str:
    """A traceback for Details / --debug, without the lines that advise an unsafe load."""
    return "\n".join(ln if not mentions_unsafe_load(ln) else "  [advice to load the file unsafely removed]"
                     for ln in (details or "").splitlines())


def _last_frame(exc: BaseException):
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame


def _missing_method(exc: NotImplementedError) -> str:
    """'the technique 'x' (plugin p) does not implement build()' for a bare NotImplementedError."""
    frame = _last_frame(exc)
    if frame is None:
        return "a required method is not implemented"
    method = frame.f_code.co_name
    owner = frame.f_locals.get("self")
    if owner is None:
        return f"{method}() is not implemented"
    what = getattr(type(owner), "id", "") or type(owner).__name__
    kind = "technique" if hasattr(owner, "training_step") else "plugin object"
    plugin = plugin_of(owner)
    return (f"the {kind} '{what}'" + (f" (plugin {plugin})" if plugin else "")
            + f" does not implement {method}()")


def plain_message(exc: BaseException) -> str:
    """One readable message for any exception (a :class:`StudioError` speaks for itself)."""
    if isinstance(exc, StudioError):
        return scrub(str(exc))
    if isinstance(exc, NotImplementedError) and not str(exc).strip():
        return _missing_method(exc)
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory."
    if isinstance(exc, SystemExit):
        return f"a plugin or library tried to end the program (exit code {exc.code!r})"
    text = str(exc).strip()
    plugin = plugin_of_traceback(exc)
    where = f" (in plugin {plugin})" if plugin else ""
    return scrub(f"{type(exc).__name__}{where}: {text}" if text else f"{type(exc).__name__}{where}")


@dataclass
class Failure:
    message: str
    advice: str = ""
    details: str = ""


def describe(exc: BaseException, details: str | None = None) -> Failure:
    """The message, the advice and the (scrubbed) traceback of ``exc``."""
    if details is None:
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Failure(plain_message(exc), advice_for(exc), scrub_details(details))


# --- which plugin brought a piece of code -----------------------------------------------------
_modules: dict[str, str] = {}  # module name of a plugin -> plugin name
_managers: "weakref.WeakSet[Any]" = weakref.WeakSet()


def register_plugin_module(module: str, plugin: str) -> None:
    """Remember that ``module`` (and its sub-modules) came with the plugin ``plugin``."""
    if module:
        _modules[module] = plugin


def register_manager(manager: Any) -> None:
    """A plugin manager that wants to hear of failures met outside it (see :func:`plugin_failed`)."""
    _managers.add(manager)


def _plugin_of_module(module: str) -> str | None:
    parts = (module or "").split(".")
    for n in range(len(parts), 0, -1):
        name = _modules.get(".".join(parts[:n]))
        if name:
            return name
    return None


def plugin_of(obj: Any) -> str | None:
    """The name of the plugin whose module defines ``obj``'s class, or None (the studio's own)."""
    return _plugin_of_module(getattr(type(obj), "__module__", ""))


def plugin_of_traceback(exc: BaseException) -> str | None:
    """The third-party plugin whose code raised ``exc`` (the innermost plugin frame), if any."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        name = _plugin_of_module(tb.tb_frame.f_globals.get("__name__", ""))
        if name and not _is_builtin_plugin(name):
            found = name
        tb = tb.tb_next
    return found


def _is_builtin_plugin(name: str) -> bool:
    for m in list(_managers):
        info = getattr(m, "plugins", {}).get(name)
        if info is not None:
            return bool(info.builtin)
    return False


def is_third_party(obj: Any) -> bool:
    """True for an object a third-party (not built-in) plugin brought."""
    name = plugin_of(obj)
    return name is not None and not _is_builtin_plugin(name)


def plugin_failed(obj: Any, message: str, details: str = "") -> str | None:
    """Mark the plugin that brought ``obj`` failed in every live plugin manager (for failures
    met outside the manager's own calls, e.g. a data reader that raises while reading).
    Returns the plugin's name, or None when ``obj`` is not a plugin's."""
    name = plugin_of(obj)
    if name is None:
        return None
    for m in list(_managers):
        info = getattr(m, "plugins", {}).get(name)
        if info is not None and message not in info.errors:
            info.fail(message, scrub_details(details))
    return name
