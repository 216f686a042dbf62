"""Helpers of the fault-injection suite (no tests here): run the command line as a user
does, check what the user reads, and make malformed files."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FAULTS = Path(__file__).resolve().parent
BENCH = FAULTS.parents[1] / "bench"
sys.path.insert(0, str(BENCH))
from decode_memory import bomb_png, png_header  # noqa: E402 - the bench script's decompression bombs

__all__ = ["bomb_png", "png_header"]
#: what must never reach a user: a traceback, or a library's advice to load a file unsafely
FORBIDDEN = ("Traceback (most recent call last)", "weights_only", "allow_pickle", "add_safe_globals",
             "arbitrary code execution")


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self):
        return json.loads(self.out)


def cli(*args: str) -> Outcome:
    """``tlstudio ARGS`` in this process: exit code, stdout, stderr."""
    from tlstudio.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse, or a usage message
            code = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
    return Outcome(code, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict | None = None, timeout: float = 900) -> Outcome:
    """``tlstudio ARGS`` in a new process (a kill, a plugin that must be found on sys.path)."""
    r = subprocess.run([sys.executable, "-m", "tlstudio.cli", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return Outcome(r.returncode, r.stdout, r.stderr)


def assert_plain(o: Outcome) -> None:
    """No traceback, no advice to load unsafely, and short lines (no file dumped at the user)."""
    for bad in FORBIDDEN:
        assert bad not in o.text, f"{bad!r} reached the user:\n{o.text[-3000:]}"
    longest = max((len(line) for line in o.err.splitlines()), default=0)
    assert longest < 2000, f"a message line of {longest} characters reached the user"


def env_with(**extra) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --- files -------------------------------------------------------------------------------------
def digits_folder(root: Path, classes=(0, 1), per_class: int = 5) -> Path:
    from conftest import make_digit_folder

    return make_digit_folder(root, classes=classes, per_class=per_class)


def png_bytes(arr: np.ndarray | None = None, **kw) -> bytes:
    arr = np.full((16, 16), 128, np.uint8) if arr is None else arr
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **kw)
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray | None = None, **kw) -> bytes:
    arr = np.full((16, 16, 3), 90, np.uint8) if arr is None else arr
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def code_carrying_pickle(path: Path, wrap_state: bool = True) -> Path:
    """A torch file whose unpickling would run code (os.system) if it were loaded unsafely."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo PAYLOAD-RAN > /dev/null",))

    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload()} if wrap_state else Payload(), path)
    return path


def report(o: Outcome) -> dict:
    """validate-data --json's report."""
    assert o.code == 0, o.text
    return o.json()


def skipped_reason(rep: dict, needle: str) -> str:
    """The reason given for the skipped item whose ref contains ``needle``."""
    hits = [s["reason"] for s in rep["skipped"] if needle in s["ref"]]
    assert hits, f"{needle} not among the skipped: {[s['ref'] for s in rep['skipped']]}"
    return hits[0]
