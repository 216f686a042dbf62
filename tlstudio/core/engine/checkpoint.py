"""Checkpoints of a run: ``best.pt`` (the weights the run keeps) and ``last.pt`` (everything
a resume needs: weights, optimizer, scaler, the recipe's state, where the loop stands).
Written atomically, read only with ``weights_only=True``."""
from __future__ import annotations

import torch

from ..io import atomic_torch_save


def _meta(ctx, project) -> dict:
    # "technique" holds the recipe's state (Recipe.state_dict); its id goes under "technique_id"
    return {"technique_id": ctx.technique.id, "architecture": project.model.architecture,
            "class_names": list(getattr(ctx.data, "class_names", []) or []),
            "model_info": {k: str(v) for k, v in ctx.model_info.items()},
            "task_state": ctx.task.state_dict()}


def save_best(ctx, project, epoch: int, value, monitor: str) -> None:
    atomic_torch_save({"model": ctx.model.state_dict(), "technique": ctx.recipe.state_dict(),
                       "epoch": epoch + 1, "monitor": monitor, "value": value, **_meta(ctx, project)},
                      ctx.run.best_checkpoint)


def save_last(ctx, project, epochs_done: int, best: dict, bad_epochs: int) -> None:
    st = ctx.train
    atomic_torch_save({
        "model": ctx.model.state_dict(), "optimizer": st.optimizer.state_dict(),
        "scaler": st.scaler.state_dict() if st.scaler is not None else None,
        "technique": ctx.recipe.state_dict(), "epoch": epochs_done, "step": st.step,
        "best": best, "bad_epochs": bad_epochs, **_meta(ctx, project),
        "world_size": ctx.dist.world if ctx.dist else 1, "micro_batch": st.micro_batch,
    }, ctx.run.last_checkpoint)


def read(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_last(ctx, is_main: bool = True) -> dict | None:
    """The run's last checkpoint loaded into the model and the recipe (every process gets
    rank 0's copy under torchrun); None when there is none yet."""
    path = ctx.run.last_checkpoint if ctx.run is not None else None
    state = read(path) if is_main and path is not None and path.exists() else None
    if ctx.dist is not None:  # the run folder may be on rank 0's machine only
        state = ctx.dist.broadcast(state)
    if state is None:
        ctx.log("No checkpoint yet: the run starts again from its first epoch.", "warning")
        return None
    restore(ctx, state)
    ctx.train.step = int(state.get("step", 0))
    ctx.log(f"Resuming after epoch {state['epoch']} of {ctx.training.epochs}.")
    return state


def restore(ctx, state: dict) -> None:
    """Weights, the recipe's state and the task's state of a checkpoint."""
    ctx.model.load_state_dict(state["model"])
    ctx.recipe.load_state_dict(state.get("technique") or {})
    ctx.task.load_state_dict(state.get("task_state") or {})


def load_best(ctx) -> None:
    """The best epoch's weights back into the model (before the final evaluation)."""
    if ctx.run is not None and ctx.run.best_checkpoint.exists():
        restore(ctx, read(ctx.run.best_checkpoint))
