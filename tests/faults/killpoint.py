"""Run ``tlstudio ARGS`` and kill it with SIGKILL (as the OS, a power cut or a crash would) at
a chosen point of the run:

    python killpoint.py POINT N tlstudio-args...

read        while the data are read and checked: at the N-th image
cache       while the image cache is built: at the N-th image
epoch       in the middle of epoch N (its third batch)
checkpoint  while checkpoints/last.pt is written for the N-th time: the new file complete in its
            temporary name, not yet renamed over the old one
rotate      while checkpoints/last.pt is written for the N-th time: just after the old one was kept
            as prev.pt, before the new one is written
final       during the final evaluation (the test split)

The studio's own code runs unchanged; the kill is placed by wrapping the function that marks
the point, and the process dies inside it without any chance to clean up.
"""
from __future__ import annotations

import os
import signal
import sys
import types
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _counter(n: int):
    seen = [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == n
    return hit


def _os_proxy(replace):
    """The os module with another ``replace`` (for the module that renames checkpoint files)."""
    proxy = types.ModuleType("os_proxy")
    proxy.__dict__.update(os.__dict__)
    proxy.replace = replace
    return proxy


def arm(point: str, n: int) -> None:
    hit = _counter(n)
    if point == "read":
        import tlstudio.core.data.store as S

        decode = S.decode_reduced  # every image is decoded once, through the decode store
        S.decode_reduced = lambda *a, **k: die() if hit() else decode(*a, **k)
    elif point == "cache":
        import tlstudio.core.data.store as S

        proxy = types.ModuleType("os_proxy")
        proxy.__dict__.update(os.__dict__)
        proxy.pwrite = lambda fd, data, offset: die() if hit() else os.pwrite(fd, data, offset)
        S.os = proxy  # the n-th image's pixels written into the image cache
    elif point == "epoch":
        import tlstudio.core.engine.step as S

        step = S.optimizer_step

        def optimizer_step(ctx, model, batch, i=0):
            if ctx.train.epoch + 1 == n and i == 2:
                die()
            return step(ctx, model, batch, i)
        S.optimizer_step = optimizer_step
    elif point == "checkpoint":
        import tlstudio.core.io as IO

        def replace(src, dst):
            if Path(dst).name == "last.pt" and hit():
                die()  # the new checkpoint is complete in its temporary file, not yet in place
            return os.replace(src, dst)
        IO.os = _os_proxy(replace)
    elif point == "rotate":
        import tlstudio.core.engine.checkpoint as CK

        def replace(src, dst):
            os.replace(src, dst)
            if Path(dst).name == "prev.pt" and hit():
                die()  # the old last.pt is kept as prev.pt; the new last.pt is not written yet
        CK.os = _os_proxy(replace)
    elif point == "final":
        from tlstudio.core.tasks.classification import ImageClassificationTask

        evaluate = ImageClassificationTask.evaluate

        def evaluate_split(self, ctx, split, *args, **kwargs):
            if split == "test":
                die()
            return evaluate(self, ctx, split, *args, **kwargs)
        ImageClassificationTask.evaluate = evaluate_split
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, n, *argv = sys.argv[1:]
    arm(point, int(n))
    from tlstudio.cli import main

    sys.exit(main(argv))
