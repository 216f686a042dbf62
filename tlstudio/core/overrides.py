"""Settings given as ``KEY=VALUE`` (``--set training.lr=0.001``, ``--option text_column=review``)
and the settings a project keeps when its technique is switched.

Every problem is reported against what the user typed ("--set training.lr.x=1: training.lr is
a setting (a number), not a section"), never against the project file, and nothing is dropped
silently: a value with a line break is refused rather than cut at it.
"""
from __future__ import annotations

import tomllib
from typing import Any

from .errors import ProjectError

_TYPE_WORDS = {bool: "a yes/no value", int: "a number", float: "a number", str: "a text", list: "a list"}


def parse_value(text: str) -> Any:
    """A TOML value (``0.001``, ``true``, ``[1, 2]``, ``"text"``), else the text itself."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if set(parsed) == {"v"} else text


def split_assignment(text: str, flag: str = "--set", example: str = "training.lr=0.001") -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], parsed value), or :class:`ProjectError` saying what is wrong."""
    shown = text.splitlines()[0][:80] if text else text
    if "\n" in text or "\r" in text:
        raise ProjectError(f"{flag} {shown!r}…: the value holds a line break; give it on one line "
                           "(nothing after the break would be used)")
    key, sep, value = text.partition("=")
    if not sep:
        raise ProjectError(f"{flag} expects KEY=VALUE (for example {example}), got {shown!r}")
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ProjectError(f"{flag} {shown}: '{key.strip()}' is not a setting name (names are joined by single dots, "
                           f"for example {example.split('=')[0]})")
    return parts, parse_value(value.strip())


def apply_assignment(data: dict, text: str, flag: str = "--set", example: str = "training.lr=0.001") -> list[str]:
    """Apply one ``KEY=VALUE`` to the nested dict ``data``; returns the key's parts."""
    parts, value = split_assignment(text, flag, example)
    d = data
    for i, p in enumerate(parts[:-1]):
        if p not in d:
            d[p] = {}
        elif not isinstance(d[p], dict):
            here = ".".join(parts[:i + 1])
            what = _TYPE_WORDS.get(type(d[p]), f"a {type(d[p]).__name__}")
            raise ProjectError(f"{flag} {text}: {here} is a setting ({what}), not a section with "
                               f"'{'.'.join(parts[i + 1:])}' in it; did you mean {here}=VALUE?")
        d = d[p]
    d[parts[-1]] = value
    return parts


def switch_technique(data: dict, tid: str, plugins) -> str:
    """``train project.toml --technique X``: the file's settings of its own technique that X
    also has (same name) are kept, the others dropped; returns the note that says which ('' when
    nothing was dropped)."""
    old = data["technique"]["id"]
    settings = data["technique"].get("settings") or {}
    if tid == old or not settings:
        return ""
    try:
        new = plugins.technique(tid)
    except Exception:  # noqa: BLE001 - an unknown technique is reported by the engine
        return ""
    fields = getattr(getattr(new, "Config", None), "model_fields", {}) or {}
    kept = {k: v for k, v in settings.items() if k in fields}
    dropped = sorted(k for k in settings if k not in fields)
    data["technique"]["settings"] = kept
    if not dropped:
        return ""
    return (f"--technique {tid} replaces the project's {old}: its settings {', '.join(dropped)} are not settings "
            f"of {tid} and were dropped" + (f"; kept: {', '.join(sorted(kept))}" if kept else "") + ".")


def check_technique_settings(project, plugins, where: str) -> None:
    """The project's technique settings validated by its technique's own Config, blamed on
    ``where``; an unknown technique is left for the run to report (it lists the known ones)."""
    from pydantic import ValidationError

    from .config import format_validation_error

    try:
        technique = plugins.technique(project.technique.id)
    except Exception:  # noqa: BLE001 - unknown or failed: the engine says which are available
        return
    try:
        technique.make_config(project.technique.settings)
    except ValidationError as e:
        raise ProjectError(format_validation_error(e, where, prefix="technique.settings")) from None
