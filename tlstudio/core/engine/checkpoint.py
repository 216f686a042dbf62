"""Checkpoints of a run, written atomically, the previous one kept, read safely.

``checkpoints/last.pt`` holds everything a resume needs (weights, optimizer, scaler, the
recipe's and the task's state, where the loop stands); before a new one is written the old
one becomes ``checkpoints/prev.pt``, so that a damaged ``last.pt`` (a disk that filled up, a
copy cut short, a file edited by hand) costs one epoch, not the run.  ``checkpoints/best.pt``
holds the best epoch's model.  Every read goes through :func:`read_checkpoint`:
``torch.load(weights_only=True)`` only, and a file that cannot be used is named with what is
wrong with it, never with a library's advice to load it unsafely.  Importing this module does
not import torch (the run store and the window read checkpoints' names through it).
"""
from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import StudioError
from ..failures import mentions_unsafe_load, shorten
from ..io import atomic_torch_save

#: what a resume needs from last.pt
RESUME_KEYS = ("model", "optimizer", "epoch", "best", "bad_epochs")
PREVIOUS = "prev.pt"


class CheckpointError(StudioError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def previous_checkpoint(run) -> Path:
    return run.last_checkpoint.with_name(PREVIOUS)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return shorten(text[0], 160) if text else type(e).__name__


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ("model",)) -> dict:
    """The checkpoint at ``path`` (tensors and plain values only), or :class:`CheckpointError`
    saying which file and what is wrong: missing, empty, truncated or damaged, holding code,
    or lacking a part (``required`` keys)."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path}: the checkpoint file is missing") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {e.strerror or e}") from None
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file")
    if size == 0:
        raise CheckpointError(f"{path}: empty checkpoint file (0 bytes): it was not written completely")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if mentions_unsafe_load(str(e)) or "weights only" in str(e).lower():
            raise CheckpointError(f"{path}: refused: the file holds Python objects or code besides tensors, and "
                                  "such files are never loaded (loading them could run code). It was not written "
                                  "by the studio, or was changed afterwards.") from None
        raise CheckpointError(f"{path}: damaged checkpoint ({_first_line(e)})") from None
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as e:
        why = "truncated" if isinstance(e, EOFError) or "central directory" in str(e) else "damaged"
        raise CheckpointError(f"{path}: {why} checkpoint file ({size:,} bytes): it cannot be read") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint of the studio (it holds a {type(state).__name__})")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint: it lacks {', '.join(repr(k) for k in missing)}")
    if "model" in required and not (isinstance(state["model"], dict) and state["model"]
                                    and all(isinstance(v, torch.Tensor) for v in state["model"].values())):
        raise CheckpointError(f"{path}: the checkpoint's model is not a state dict (layer names to tensors)")
    return state


def has_checkpoint(run) -> bool:
    return run is not None and (run.last_checkpoint.exists() or previous_checkpoint(run).exists())


def save_last(run, state: dict) -> Path:
    """Write ``last.pt``; the one it replaces is kept as ``prev.pt`` first.  At every moment
    (a kill can come at any) ``last.pt`` is complete, old or new."""
    last = run.last_checkpoint
    if last.exists():
        prev = previous_checkpoint(run)
        tmp = prev.with_name(f".{prev.name}.{os.getpid()}.tmp")
        try:
            os.link(last, tmp)  # a second name for the same bytes: no copy
        except OSError:  # a file system without hard links
            shutil.copyfile(last, tmp)
        os.replace(tmp, prev)
        if tmp.exists():  # prev.pt was already this file (a kill came after this step): rename did nothing
            tmp.unlink()
    return atomic_torch_save(state, last)


def save_best(run, state: dict) -> Path:
    return atomic_torch_save(state, run.best_checkpoint)


def clean_partial_writes(run) -> int:
    """Remove the temporary files of a checkpoint write that a kill interrupted."""
    n = 0
    folder = run.last_checkpoint.parent
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
        try:
            tmp.unlink()
            n += 1
        except OSError:
            pass
    return n


def load_for_resume(run, log: Callable[[str, str], None]) -> dict | None:
    """The newest usable checkpoint of ``run`` to resume from: ``last.pt``, else (damaged or
    missing after a kill) ``prev.pt``; None when the run has none yet (it starts again from
    its first epoch).  When every checkpoint there is damaged: :class:`CheckpointError` with
    what to do."""
    clean_partial_writes(run)
    problems: list[str] = []
    if not run.last_checkpoint.exists() and previous_checkpoint(run).exists():
        problems.append(f"{run.last_checkpoint}: the checkpoint file is missing (the run was stopped while writing it)")
    for path in (run.last_checkpoint, previous_checkpoint(run)):
        if not path.exists():
            continue
        try:
            state = read_checkpoint(path, RESUME_KEYS)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems:
            log("\n".join(problems) + f"\nResuming from the previous checkpoint {path.name} (after epoch "
                f"{state['epoch']}) instead: the epochs after it are trained again.", "warning")
        return state
    if problems:
        raise CheckpointError("\n".join(problems) + "\nNo earlier checkpoint of this run can be used: start it "
                              f"again with `tlstudio train {run.project_file}` (a new run with the same settings).")
    return None


def inference_checkpoint(run, which: str = "best") -> tuple[Path, dict]:
    """The checkpoint to predict or export with: ``best.pt`` (when asked and present) else
    ``last.pt``, read safely; a plain error when the run has none or it is damaged."""
    best, last = run.best_checkpoint, run.last_checkpoint
    path = best if which == "best" and best.exists() else last
    if not path.exists():
        if not previous_checkpoint(run).exists():
            raise CheckpointError(f"{run.dir}: this run has no trained model yet (no checkpoint).")
        path = previous_checkpoint(run)
    return path, read_checkpoint(path)


def finished_summary(run, project, on_event=None) -> dict:
    """What ``--resume`` of a finished run returns: its final summary, trained no further."""
    epochs = project.training.epochs
    message = (f"Run {run.id} already finished ({epochs} epochs): nothing was trained again. To train it further, "
               f"resume it with more epochs (--epochs N, N > {epochs}); to repeat it as a new run: "
               f"tlstudio train {run.project_file}")
    if on_event is not None:
        from ..events import Log

        on_event(Log(message=message, level="warning"))
    final = dict(run.final())
    final.update(status="done", already_finished=True, message=message, run_dir=str(run.dir), run_id=run.id)
    return final


# --- a training run's checkpoints ------------------------------------------------------------
def _meta(ctx, project) -> dict:
    # "technique" holds the recipe's state (Recipe.state_dict); its id goes under "technique_id"
    return {"technique_id": ctx.technique.id, "architecture": project.model.architecture,
            "class_names": list(getattr(ctx.data, "class_names", []) or []),
            "model_info": {k: str(v) for k, v in ctx.model_info.items()},
            "task_state": ctx.task.state_dict()}


def save_best_of(ctx, project, epoch: int, value, monitor: str) -> None:
    save_best(ctx.run, {"model": ctx.model.state_dict(), "technique": ctx.recipe.state_dict(),
                        "epoch": epoch + 1, "monitor": monitor, "value": value, **_meta(ctx, project)})


def save_last_of(ctx, project, epochs_done: int, best: dict, bad_epochs: int, train_seconds: float) -> None:
    st = ctx.train
    save_last(ctx.run, {
        "model": ctx.model.state_dict(), "optimizer": st.optimizer.state_dict(),
        "scaler": st.scaler.state_dict() if st.scaler is not None else None,
        "technique": ctx.recipe.state_dict(), "epoch": epochs_done, "step": st.step,
        "best": best, "bad_epochs": bad_epochs, **_meta(ctx, project),
        "world_size": ctx.dist.world if ctx.dist else 1, "micro_batch": st.micro_batch,
        "train_seconds": train_seconds,
    })


def load_last(ctx, is_main: bool = True) -> dict | None:
    """The run's newest usable checkpoint loaded into the model, the recipe and the task (every
    process gets rank 0's copy under torchrun); None when there is none yet (the run starts
    again from its first epoch)."""
    run = ctx.run
    if ctx.dist is None:
        state = load_for_resume(run, ctx.log) if run is not None else None
    else:  # the run folder may be on rank 0's machine only
        try:
            state = load_for_resume(run, ctx.log) if is_main and run is not None else None
        except CheckpointError as e:
            state = {"__error__": str(e)}
        state = ctx.dist.broadcast(state)
        if state and "__error__" in state:
            raise CheckpointError(state["__error__"])
    if state is None:
        ctx.log("No checkpoint yet: the run starts again from its first epoch.", "warning")
        return None
    try:
        restore(ctx, state)
    except RuntimeError as e:
        raise CheckpointError(f"{run.last_checkpoint}: the checkpoint does not fit this run's model "
                              f"({str(e).splitlines()[0][:200]})") from None
    ctx.train.step = int(state.get("step", 0))
    ctx.log(f"Resuming after epoch {state['epoch']} of {ctx.training.epochs}.")
    return state


def restore(ctx, state: dict) -> None:
    """Weights, the recipe's state and the task's state of a checkpoint."""
    ctx.model.load_state_dict(state["model"])
    ctx.recipe.load_state_dict(state.get("technique") or {})
    ctx.task.load_state_dict(state.get("task_state") or {})


def load_best(ctx) -> None:
    """The best epoch's weights back into the model (before the final evaluation); when
    ``best.pt`` cannot be read (a warning names the file) the last epoch's model stays."""
    if ctx.run is None or not ctx.run.best_checkpoint.exists():
        return
    try:
        restore(ctx, read_checkpoint(ctx.run.best_checkpoint))
    except CheckpointError as e:
        ctx.log(f"{e}. The final evaluation uses the model of the last epoch instead.", "warning")
