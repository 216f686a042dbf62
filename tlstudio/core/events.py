"""Run events: what a run tells the window, the command line, the run store and observers.

The engine emits typed events (the classes below); the CLI, the window, the run store, the
HTML report and observer plugins all read the same classes.  Between processes and on disk
(``metrics.jsonl``) an event travels as a plain dict, ``{"kind": ..., "v": 1, ...}``:
:meth:`Event.to_dict` writes it and :func:`event_from_dict` reads it back, also from run
folders written before the events were versioned (no ``"v"``).

==========  =================  ==============================================================
kind        class              when
==========  =================  ==============================================================
start       RunStarted         the run begins (or resumes): what runs where, planned epochs
progress    Progress           a long preparation step advances (decoding, caching features)
batch       BatchEnded         a training batch is done (throttled: see :class:`Throttle`)
epoch       EpochEnded         an epoch is done: training and validation figures, chart series
stage       StageChanged       a technique changes what trains (progressive unfreezing)
log         Log                a line for the user (info, warning, error)
done        RunDone            the run finished: the final summary (:class:`RunResult`)
stopped     RunWasStopped      Stop was pressed; the run can be resumed
failed      RunFailed          the run failed: a readable message, advice, the details
lr_find     LrStep             the learning-rate finder took a step (its curve)
lr_found    LrFound            the learning-rate finder's suggestion
==========  =================  ==============================================================

One throttling rule for every consumer: the engine emits ``batch`` and ``progress`` events at
most :data:`EVENTS_PER_SECOND` times a second, and always the last one of an epoch or of a
step; every other event always.  Consumers take what they receive.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: version of the dict form; readers accept this and older (unversioned) dicts
SCHEMA_VERSION = 1
#: batch and progress events per second (the last one of an epoch or step always passes)
EVENTS_PER_SECOND = 4.0
TERMINAL = ("done", "stopped", "failed")


def _clean(v: Any) -> Any:
    """JSON-safe: tensors and numpy scalars become floats, NaN/inf stay floats (json writes them)."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:
        return v.item()
    return v


@dataclass(eq=False)
class Event(Mapping):
    """Base of every event: its ``kind`` and the wall-clock ``time`` it was made.  Its fields
    read by name too, as in the dict form (``event["val_auc"]``, ``event.get("loss")``)."""

    kind: ClassVar[str] = ""
    #: a dict field whose entries stand at the top level of the dict form (the metrics of an
    #: epoch, a log line's detail), as run folders have always had them
    spread: ClassVar[str | None] = None
    time: float = field(default_factory=time.time, kw_only=True)

    @property
    def terminal(self) -> bool:
        """The run is over (done, stopped or failed)."""
        return self.kind in TERMINAL

    # read access by name, as in the dict form ("kind", "loss", "val_auc" ...)
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "v": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            d[f.name] = _clean(getattr(self, f.name))
        if self.spread:
            d.update(d.pop(self.spread))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        names = {f.name for f in dataclasses.fields(cls)}
        ev = cls(**{k: v for k, v in d.items() if k in names and k != cls.spread})
        if cls.spread:
            setattr(ev, cls.spread, {k: v for k, v in d.items() if k not in names | {"kind", "v"}})
        return ev


@dataclass(eq=False)
class RunStarted(Event):
    kind: ClassVar[str] = "start"
    run_dir: str = ""
    run_id: str = ""
    technique: str = ""
    model: str = ""
    device: str = ""
    epochs: int = 0
    resumed: bool = False
    monitor: str = ""
    series: dict[str, str] = field(default_factory=dict)  # technique chart series: name -> title
    processes: int = 1
    task: str = ""


@dataclass(eq=False)
class Progress(Event):
    kind: ClassVar[str] = "progress"
    task: str = ""  # what is being done, in words ("Decoding images")
    done: int = 0
    total: int = 0


@dataclass(eq=False)
class BatchEnded(Event):
    kind: ClassVar[str] = "batch"
    epoch: int = 0  # 1-based
    batch: int = 0  # 1-based
    batches: int = 0
    step: int = 0
    loss: float = math.nan
    values: dict[str, float] = field(default_factory=dict)  # the technique's other scalars
    lr: dict[str, float] = field(default_factory=dict)  # learning rate per parameter group
    images_per_s: float = 0.0


@dataclass(eq=False)
class EpochEnded(Event):
    """``metrics`` holds ``train_*``, ``val_*``, ``train_images_per_s``, ``data_wait_share``;
    in the dict form they stand at the top level (as run folders have always had them)."""

    kind: ClassVar[str] = "epoch"
    spread: ClassVar[str | None] = "metrics"
    epoch: int = 0  # 1-based
    epochs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    series: dict[str, float] = field(default_factory=dict)  # the technique's chart series
    seconds: float = 0.0
    best: bool = False
    monitor: str = ""



@dataclass(eq=False)
class StageChanged(Event):
    kind: ClassVar[str] = "stage"
    message: str = ""
    stage: int = 0  # 1-based
    stages: int = 0
    epoch: int = 0
    trainable: list[str] = field(default_factory=list)
    lr_factor: float = 1.0


@dataclass(eq=False)
class Log(Event):
    kind: ClassVar[str] = "log"
    spread: ClassVar[str | None] = "data"  # event["oom"]
    message: str = ""
    level: str = "info"  # info | warning | error
    data: dict = field(default_factory=dict)  # machine-readable detail (e.g. an out-of-memory step)



@dataclass(eq=False)
class RunResult(Mapping):
    """The final summary of a finished run (``final.json``): what it was, how it ended, its
    test figures.  ``test`` holds the task's full test metrics; ``extra`` what a technique or
    task adds (forgetting of an earlier task, target-domain figures ...)."""

    status: str = "done"
    run_dir: str = ""
    run_id: str = ""
    technique: str = ""
    model: str = ""
    monitor: str = ""
    best_value: float | None = None
    best_epoch: int | None = None
    train_seconds: float = 0.0
    device: str = ""
    processes: int = 1
    test: dict = field(default_factory=dict)
    message: str = ""  # why a run failed
    extra: dict = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """The test figures that are single numbers, as ``test_<name>``."""
        from .analysis.metrics import scalar_metrics

        return {f"test_{k}": v for k, v in scalar_metrics(self.test).items()}

    def to_dict(self) -> dict:
        d = {f.name: _clean(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        if not d["message"]:
            del d["message"]
        return {**d, **self.scalars(), **_clean(self.extra)}

    # read access by name, as in final.json ("status", "test_auc" ...)
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        names = {f.name for f in dataclasses.fields(cls)}
        r = cls(**{k: v for k, v in d.items() if k in names and k != "extra"})
        r.extra = {k: v for k, v in d.items() if k not in names and not k.startswith("test_")}
        return r


@dataclass(eq=False)
class RunDone(Event):
    """The run finished; ``test`` holds the scalar test figures (the full ones are in final.json)."""

    kind: ClassVar[str] = "done"
    spread: ClassVar[str | None] = "extra"
    run_dir: str = ""
    run_id: str = ""
    technique: str = ""
    model: str = ""
    monitor: str = ""
    best_value: float | None = None
    best_epoch: int | None = None
    train_seconds: float = 0.0
    device: str = ""
    processes: int = 1
    test: dict[str, float] = field(default_factory=dict)
    status: str = "done"
    extra: dict = field(default_factory=dict)  # test_<figure> scalars and what a technique added, at the top level

    @classmethod
    def of(cls, result: RunResult) -> "RunDone":
        from .analysis.metrics import scalar_metrics

        names = {f.name for f in dataclasses.fields(cls)} - {"time", "test", "extra"}
        full = result.to_dict()
        return cls(**{k: full[k] for k in names if k in full}, test=scalar_metrics(result.test),
                   extra={k: v for k, v in full.items() if k not in names and k != "test"})



@dataclass(eq=False)
class RunWasStopped(Event):
    kind: ClassVar[str] = "stopped"
    run_dir: str | None = None
    message: str = "Stopped. The run can be resumed from its last completed epoch."


@dataclass(eq=False)
class RunFailed(Event):
    kind: ClassVar[str] = "failed"
    message: str = ""
    advice: str = ""
    details: str = ""  # the traceback, behind a Details button
    run_dir: str | None = None


@dataclass(eq=False)
class LrStep(Event):
    """A step of the learning-rate range test (the finder's curve grows)."""

    kind: ClassVar[str] = "lr_find"
    step: int = 0
    steps: int = 0
    lr: float = 0.0
    loss: float = math.nan  # smoothed
    raw_loss: float = math.nan


@dataclass(eq=False)
class LrFound(Event):
    """The range test's suggestion (None: the loss never fell over the rates tried)."""

    kind: ClassVar[str] = "lr_found"
    suggested: float | None = None
    steepest: float | None = None
    min_div10: float | None = None


@dataclass(eq=False)
class UnknownEvent(Event):
    """An event of a kind this version does not know (a newer writer, a plugin's own kind):
    kept as it came."""

    raw: dict = field(default_factory=dict)

    @property
    def kind_name(self) -> str:
        return str(self.raw.get("kind", "?"))

    def to_dict(self) -> dict:
        return dict(self.raw)


EVENT_TYPES: dict[str, type[Event]] = {c.kind: c for c in (
    RunStarted, Progress, BatchEnded, EpochEnded, StageChanged, Log, RunDone, RunWasStopped, RunFailed, LrStep, LrFound)}


def event_from_dict(d: dict) -> Event:
    """The typed event of a dict (a line of metrics.jsonl, a message from another process)."""
    cls = EVENT_TYPES.get(str(d.get("kind")))
    if cls is None or int(d.get("v", SCHEMA_VERSION) or 0) > SCHEMA_VERSION:
        return UnknownEvent(raw=dict(d), time=float(d.get("time") or 0.0))
    try:
        return cls.from_dict(d)
    except (TypeError, ValueError):
        return UnknownEvent(raw=dict(d), time=float(d.get("time") or 0.0))


def as_event(e: Event | dict) -> Event:
    return e if isinstance(e, Event) else event_from_dict(e)


class Throttle:
    """The one throttling rule: batch and progress events at most ``per_second`` a second,
    the last of an epoch (or of a progress step) always; every other kind always."""

    def __init__(self, per_second: float = EVENTS_PER_SECOND, clock=time.monotonic):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.clock = clock
        self._last: dict[str, float] = {}

    def admit(self, event: Event) -> bool:
        if isinstance(event, BatchEnded):
            last = event.batch >= event.batches
        elif isinstance(event, Progress):
            last = event.done >= event.total or event.done == 0
        else:
            return True
        now = self.clock()
        if last or now - self._last.get(event.kind, -math.inf) >= self.interval:
            self._last[event.kind] = now
            return True
        return False

    def due(self, kind: str = "batch") -> bool:
        """Would an event of ``kind`` pass now? (the engine reads losses off the GPU only then)"""
        return self.clock() - self._last.get(kind, -math.inf) >= self.interval
