"""The training engine: one loop for the window, the command line, tests and torchrun.

=================  ===========================================================================
module             what it holds
=================  ===========================================================================
``loop``           ``train``/``resume`` and the Trainer: a run from data to report
``step``           one training epoch (torchvision's train_one_epoch, robust)
``context``        what techniques and tasks get during a run: RunContext, TrainState
``services``       what building a model needs: ModelContext, InferenceContext (predictions)
``checkpoint``     best.pt and last.pt
``control``        Stop/Pause, devices, seeds
``inference``      a trained run's model for prediction and export
``project``        from a project to its technique, settings and best-epoch metric
``sequential``     a run that starts from an earlier run's model
``distributed``    several processes through torchrun
=================  ===========================================================================
"""
from __future__ import annotations

import importlib
from typing import Any

# names load on first use: ``engine.control`` and ``engine.distributed`` (the window's job
# control) import without torch
_NAMES = {"InferenceContext": "services", "ModelContext": "services", "RunContext": "context", "TrainState": "context",
          "RunControl": "control", "describe_device": "control", "seed_everything": "control",
          "select_device": "control", "Trainer": "loop", "monitor_of": "project", "open_context": "loop",
          "resume": "loop", "technique_for": "project", "train": "loop", "open_run_model": "inference"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
