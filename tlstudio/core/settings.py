"""User settings and the studio's folders (platformdirs, overridable).

``TLSTUDIO_HOME`` (environment) puts every folder (config, runs, models, cache) under one
directory: tests and portable installs use it.  Otherwise platformdirs decides.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

import platformdirs
import tomli_w
from pydantic import BaseModel, Field

from .io import atomic_write_bytes

APP = "tlstudio"


def home() -> Path | None:
    h = os.environ.get("TLSTUDIO_HOME")
    return Path(h).expanduser() if h else None


def config_dir() -> Path:
    h = home()
    return (h / "config") if h else Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    h = home()
    return h if h else Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    h = home()
    return (h / "cache") if h else Path(platformdirs.user_cache_dir(APP))


class Settings(BaseModel):
    """What the user sets once for the whole studio (Settings dialog, settings.toml)."""

    runs_dir: str = Field("", description="Where runs are stored (empty: the default folder).")
    models_dir: str = Field("", description="Your own folder of pretrained weights (empty: the default folder).")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    disabled_plugins: list[str] = Field(default_factory=list, description="Plugins switched off.")
    recent_projects: list[str] = Field(default_factory=list)
    model_speed: dict[str, float] = Field(default_factory=dict, description="Measured images/s per model on this machine.")

    # --- folders ----------------------------------------------------------------------
    def runs_path(self) -> Path:
        env = os.environ.get("TLSTUDIO_RUNS_DIR")
        p = Path(env or self.runs_dir or (data_dir() / "runs")).expanduser()
        return p

    def models_path(self) -> Path:
        env = os.environ.get("TLSTUDIO_MODELS_DIR")
        return Path(env or self.models_dir or (data_dir() / "models")).expanduser()

    def add_recent(self, project: str | Path, keep: int = 10) -> None:
        p = str(Path(project).resolve())
        self.recent_projects = [p] + [r for r in self.recent_projects if r != p][: keep - 1]


def settings_file() -> Path:
    return config_dir() / "settings.toml"


def load_settings() -> Settings:
    f = settings_file()
    if not f.exists():
        return Settings()
    try:
        return Settings.model_validate(tomllib.loads(f.read_text(encoding="utf-8")))
    except Exception:  # a damaged settings file must never stop the studio
        return Settings()


def save_settings(s: Settings) -> Path:
    f = settings_file()
    atomic_write_bytes(f, tomli_w.dumps(s.model_dump(exclude_none=True)).encode("utf-8"))
    return f
