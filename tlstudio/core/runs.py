"""The run store: one folder per run.

``runs/<id>/`` holds ``project.toml`` (repeatable with ``tlstudio train``), ``split.json``,
``env.json`` (versions, device, seed, data fingerprint), ``metrics.jsonl`` (one event per
line, appended and flushed as the run goes), ``status.json``, ``checkpoints/`` (last.pt,
best.pt), ``final.json`` (test metrics), ``report.md`` and, for classification,
``test_predictions.csv``.  Another process (the window) follows a run from its files alone.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .config import Project, load_project
from .errors import StudioError
from .io import atomic_write_json

RUNNING, DONE, FAILED, STOPPED, INTERRUPTED = "running", "done", "failed", "stopped", "interrupted"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in s.lower()).strip("-")[:40] or "run"


class Run:
    """One run folder."""

    def __init__(self, path: str | Path):
        self.dir = Path(path)
        self._batch_written = 0.0

    # --- creation ---------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, project: Project) -> "Run":
        root = Path(root)
        check_runs_folder(root)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for _ in range(100):
            rid = f"{stamp}-{_slug(project.technique.id)}-{secrets.token_hex(2)}"
            d = root / rid
            try:
                d.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise StudioError(f"Could not create a run folder in {root}")
        (d / "checkpoints").mkdir()
        run = cls(d)
        run.set_status(RUNNING)
        return run

    @property
    def id(self) -> str:
        return self.dir.name

    # --- files ------------------------------------------------------------------------
    @property
    def project_file(self) -> Path:
        return self.dir / "project.toml"

    @property
    def metrics_file(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def last_checkpoint(self) -> Path:
        return self.dir / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.dir / "checkpoints" / "best.pt"

    def project(self) -> Project:
        """The run's project. A run from before the test-time flip existed (its file does not
        name the setting) was trained and evaluated on single images, and predicts so. A run
        from before the mirror question (its file does not name ``mirror_safe``; every later
        run's file does, see :meth:`save_project`) flipped wherever its flips were ticked."""
        project = load_project(self.project_file)
        aug = project.augmentation
        if "test_time_flip" not in aug.model_fields_set:
            aug.test_time_flip = False
        if "mirror_safe" not in aug.model_fields_set:
            aug.mirror_safe = aug.horizontal_flip
        return project

    def save_project(self, project: Project) -> None:
        """The run's copy of the project; the mirror question not answered is written as
        ``mirror_safe = false`` (what the run did: no flips), so that the file says it."""
        if project.augmentation.mirror_safe is None:
            copy = project.model_copy(deep=True)
            copy.augmentation.mirror_safe = False
            copy.save(self.project_file)
            project._path = copy.path
            return
        project.save(self.project_file)

    def write_env(self, **extra: Any) -> None:
        import torch

        env = {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        for mod in ("torchvision", "transformers", "timm", "numpy", "torchmetrics", "pydantic"):
            m = sys.modules.get(mod)
            if m is not None:
                env[mod] = getattr(m, "__version__", "?")
        try:
            from tlstudio import __version__

            env["tlstudio"] = __version__
        except ImportError:  # pragma: no cover
            pass
        env.update(extra)
        atomic_write_json(self.dir / "env.json", env)

    def env(self) -> dict:
        return self._read_json("env.json")

    # --- status -----------------------------------------------------------------------
    def set_status(self, status: str, **extra: Any) -> None:
        cur = self._read_json("status.json")
        cur.update(extra)
        cur.update(status=status, pid=os.getpid(), updated=time.time())
        atomic_write_json(self.dir / "status.json", cur)

    def status(self) -> str:
        s = self._read_json("status.json")
        st = s.get("status", INTERRUPTED)
        if st == RUNNING and not pid_alive(int(s.get("pid", -1))):
            return INTERRUPTED
        return st

    def status_info(self) -> dict:
        s = self._read_json("status.json")
        s["status"] = self.status()
        return s

    def resumable(self) -> bool:
        """Stopped, interrupted or failed with a checkpoint to continue from (``last.pt``, or
        the previous one a kill during its write left).  A run stopped before its first
        checkpoint restarts from epoch 1 with ``tlstudio train --resume`` (its project file is
        written first)."""
        return self.status() in (STOPPED, INTERRUPTED, FAILED) and (
            self.last_checkpoint.exists() or (self.last_checkpoint.parent / "prev.pt").exists())

    # --- events -------------------------------------------------------------------------
    def append_event(self, event: dict) -> None:
        """Append an event to metrics.jsonl (batch events at most once a second)."""
        if event.get("kind") == "batch":
            now = time.monotonic()
            if now - self._batch_written < 1.0:
                return
            self._batch_written = now
        line = json.dumps(event, default=_json_default) + "\n"
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            if event.get("kind") != "batch":
                os.fsync(f.fileno())

    def events(self, kinds: set[str] | None = None) -> list[dict]:
        return list(self.iter_events(kinds))

    def iter_events(self, kinds: set[str] | None = None, start: int = 0) -> Iterator[dict]:
        if not self.metrics_file.exists():
            return
        with open(self.metrics_file, encoding="utf-8") as f:
            f.seek(start)
            for line in f:
                if not line.endswith("\n"):
                    break  # a line being written right now
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if kinds is None or e.get("kind") in kinds:
                    yield e

    def read_events_from(self, offset: int = 0) -> tuple[list[dict], int]:
        """The complete events written after byte ``offset`` of metrics.jsonl, and the offset
        to read on from: a follower (the window tailing a run another process writes) calls
        it again and again.  A line being written right now waits for the next call."""
        try:
            with open(self.metrics_file, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            return [], offset
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], offset
        events = []
        for line in chunk[:end].split(b"\n"):
            try:
                e = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(e, dict):
                events.append(e)
        return events, offset + end + 1

    def epochs(self) -> list[dict]:
        """The epoch events, the latest one per epoch number (a resumed run rewrites some)."""
        by: dict[int, dict] = {}
        for e in self.iter_events({"epoch"}):
            by[int(e.get("epoch", 0))] = e
        return [by[k] for k in sorted(by)]

    def final(self) -> dict:
        return self._read_json("final.json")

    def write_final(self, final: dict) -> None:
        atomic_write_json(self.dir / "final.json", final)

    def _read_json(self, name: str) -> dict:
        try:
            return json.loads((self.dir / name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def __repr__(self) -> str:  # pragma: no cover
        return f"<Run {self.dir}>"


def _json_default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "item"):
        return o.item()
    return str(o)


@dataclass
class RunSummary:
    id: str
    path: str
    status: str
    technique: str
    model: str
    data: str
    created: str
    best_metric: str
    best_value: float | None
    test: dict


def summarize(run: Run) -> RunSummary:
    final = run.final()
    try:
        p = run.project()
        tech, model, data = p.technique.id, p.model.architecture, p.data.source
    except Exception:  # noqa: BLE001 - a damaged run still lists
        tech = model = data = "?"
    st = run.status_info()
    return RunSummary(
        id=run.id, path=str(run.dir), status=st["status"], technique=tech, model=model, data=data,
        created=run.env().get("created", ""), best_metric=final.get("monitor", st.get("monitor", "")),
        best_value=final.get("best_value", st.get("best_value")), test=final.get("test", {}),
    )


def check_runs_folder(root: str | Path) -> Path:
    """``root`` as a runs folder, or a plain error when it cannot be one (a file, or under a file)."""
    root = Path(root)
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == root else f"lies under {p}, which is a file"
                raise StudioError(f"runs folder {root} {what}: give a folder (--runs-dir, or Settings).")
            break
    return root


def list_runs(root: str | Path) -> list[Run]:
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(d) for d in root.iterdir() if d.is_dir() and (d / "status.json").exists()]
    return sorted(runs, key=lambda r: r.id, reverse=True)


def open_run(ref: str | Path, root: str | Path | None = None) -> Run:
    """A run by folder path or by id within ``root``."""
    p = Path(ref)
    if p.is_file() and p.name == "project.toml":
        p = p.parent
    if not p.is_dir() and root is not None:
        p = Path(root) / str(ref)
    if not (p / "status.json").exists():
        if (p / "package.json").exists():
            raise StudioError(f"{ref}: an exported model package, not a run folder (its package.json is damaged "
                              "or from another program, see `tlstudio predict`)")
        raise StudioError(f"{ref}: not a run folder (no status.json)")
    return Run(p)
