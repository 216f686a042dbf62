"""Launch-to-visible-window time of the studio (target: 3 s or less).

    .venv/bin/python bench/gui_startup.py [--runs 5] [--platform offscreen]

Starts ``python -m tlstudio.gui resources/sample/project.toml`` as a user would (a fresh
process each time, a throw-away studio home) and measures, from the parent, the wall time
until the window has painted for the first time (the app prints a line then, because
``TLSTUDIO_STARTUP_PROBE`` is set, and quits).  Torch, the plugins and the model catalog
load after that, in a background thread.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch_once(platform: str, project: Path) -> tuple[float, float]:
    env = dict(os.environ, TLSTUDIO_STARTUP_PROBE="quit", TLSTUDIO_HOME=tempfile.mkdtemp(prefix="tlbench-start-"))
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tlstudio.gui", str(project)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    inner = float("nan")
    for line in proc.stdout:
        if line.startswith("TLSTUDIO_VISIBLE"):
            wall = time.perf_counter() - t0
            inner = float(line.split()[1])
            break
    else:
        raise SystemExit(f"the window never reported itself visible (exit code {proc.wait()})")
    proc.wait(timeout=60)
    return wall, inner


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--platform", default=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
                    help="Qt platform (offscreen, xcb under Xvfb or a desktop)")
    ap.add_argument("--project", default=str(REPO / "resources" / "sample" / "project.toml"))
    args = ap.parse_args(argv)
    walls, inners = [], []
    launch_once(args.platform, Path(args.project))  # warm the file cache (a second launch is what users see most)
    for _ in range(args.runs):
        w, i = launch_once(args.platform, Path(args.project))
        walls.append(w)
        inners.append(i)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    print(f"Launch to visible window ({args.platform}, {args.runs} launches, load {' '.join(load)}, "
          f"{os.cpu_count()} CPUs):")
    print(f"  median {statistics.median(walls):.2f} s, min {min(walls):.2f} s, max {max(walls):.2f} s  (target <= 3 s)")
    print(f"  of which inside the app (from importing tlstudio.gui.app): median {statistics.median(inners):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
