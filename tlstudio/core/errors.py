"""Errors a user reads: each says what is wrong and where."""
from __future__ import annotations


class StudioError(Exception):
    """Base class for errors shown to the user as a plain message (no traceback)."""


class ProjectError(StudioError):
    """A project file or project setting is invalid."""


class DataError(StudioError):
    """The data cannot be used (no images, one class, unreadable CSV ...)."""


class ModelError(StudioError):
    """A model or its weights cannot be used."""


class PluginError(StudioError):
    """A plugin is missing, disabled or failed."""


class RunStopped(Exception):
    """Raised inside the engine when the user pressed Stop (control flow, not a failure)."""


def advice_for(exc: BaseException) -> str:
    """Plain advice for well-known failures (shown under the message)."""
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() or "out of gpu memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return ("The graphics card ran out of memory. Try a smaller batch size, a smaller image size, "
                "or a smaller model; mixed precision (AMP) also halves memory use.")
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory. Try a smaller batch size or image size, or fewer loader workers."
    if isinstance(exc, PermissionError):
        return "A file or folder could not be written: check the runs folder in Settings."
    return ""
