"""Tasks: kinds of problems (see :mod:`tlstudio.core.tasks.base`).  The built-in ones are
plugins (:mod:`tlstudio.core.tasks.builtin`), found like a third party's."""
from __future__ import annotations

from .base import Task

__all__ = ["Task"]
