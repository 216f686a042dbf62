#!/usr/bin/env python3
"""Figures of the PyInstaller one-folder build: its size, its start time (the command line's
`--help`, `doctor --quick`, and the window when the build has one), and a one-epoch headless
training with DataLoader workers from the frozen app.  Prints JSON.

    .venv/bin/pyinstaller installer/tlstudio.spec --noconfirm \
        --distpath installer/frozen/dist --workpath installer/frozen/build
    python bench/frozen_app.py [--app installer/frozen/dist/tlstudio] [--screenshot shot.png]

Start times are wall-clock, best of three (the first run also pays for a cold disk cache:
it is reported separately).  The window's start time is the time until it has drawn a
frame under Xvfb (needs `xvfb-run` and a build that includes tlstudio.gui).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict, timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    t = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.time() - t, p


def window_figures(exe: Path, env: dict, screenshot: str | None, project: Path) -> dict:
    """Start the frozen window on a private Xvfb display: seconds until its first frame
    (the window's own TLSTUDIO_STARTUP_PROBE), and optionally a screenshot (xwd + convert)."""
    import select

    disp = ":%d" % (90 + os.getpid() % 9)
    xvfb = subprocess.Popen(["Xvfb", disp, "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict = {}
    try:
        time.sleep(2)
        genv = dict(env, DISPLAY=disp, TLSTUDIO_STARTUP_PROBE="1")
        genv.pop("QT_QPA_PLATFORM", None)
        t = time.time()
        p = subprocess.Popen([str(exe), str(project)], env=genv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        visible = None
        while time.time() - t < 300 and p.poll() is None:
            r, _, _ = select.select([p.stdout], [], [], 1.0)
            if r:
                line = p.stdout.readline()
                if line.startswith("TLSTUDIO_VISIBLE"):
                    visible = float(line.split()[1])
                    break
        out["window_first_frame_seconds"] = visible  # process start -> first frame, the app's own clock
        out["window_first_frame_wall_seconds"] = round(time.time() - t, 2) if visible is not None else None
        if visible is not None and screenshot:
            time.sleep(25)  # let the background start-up (torch, plugins, model catalog) fill the pages
            grab = ("import sys; from PySide6.QtGui import QGuiApplication; app = QGuiApplication(sys.argv[:1]); "
                    "sys.exit(0 if app.primaryScreen().grabWindow(0).save(sys.argv[1]) else 1)")
            subprocess.run([sys.executable, "-c", grab, str(screenshot)], env=dict(genv, QT_QPA_PLATFORM="xcb"),
                           check=True, timeout=120)
            out["screenshot"] = str(screenshot)
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        out["window_exit"] = p.returncode
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default=str(REPO / "installer" / "frozen" / "dist" / "tlstudio"))
    ap.add_argument("--screenshot", help="save a screenshot of the frozen window here (needs xvfb-run, import)")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--window", action="store_true",
                    help="also start the window (a build that includes tlstudio.gui) on Xvfb and time it")
    a = ap.parse_args()
    app = Path(a.app).resolve()
    exe = app / ("tlstudio.exe" if os.name == "nt" else "tlstudio")
    if not exe.exists():
        raise SystemExit(f"{exe} is missing: build it first (see this script's docstring).")
    work = Path(tempfile.mkdtemp(prefix="tlstudio-frozen-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TLSTUDIO_"))}
    env.update(TLSTUDIO_HOME=str(work / "home"), PATH="/usr/bin:/bin", QT_QPA_PLATFORM="offscreen")
    fig: dict = {"app": str(app), "load_before": open("/proc/loadavg").read().split()[:3]}
    sample = work / "sample"  # a copy: a run stores its split beside the project file
    shutil.copytree(REPO / "resources" / "sample", sample)
    fig["bytes"] = sum(f.stat().st_size for f in app.rglob("*") if f.is_file() and not f.is_symlink())
    fig["gib"] = round(fig["bytes"] / 2**30, 2)
    fig["files"] = sum(1 for f in app.rglob("*") if f.is_file())
    try:
        runs = [timed([str(exe), "--help"], env)[0] for _ in range(3)]
        fig["help_seconds_first"], fig["help_seconds_best"] = round(runs[0], 2), round(min(runs), 2)
        secs, p = timed([str(exe), "doctor", "--quick", "--json"], env)
        fig["doctor_seconds"] = round(secs, 1)
        fig["doctor"] = {c["name"]: [c["status"], c["message"]] for c in json.loads(p.stdout)} if p.stdout.strip() else p.stderr[-2000:]
        fig["doctor_exit"] = p.returncode
        if not a.no_train:
            secs, p = timed([str(exe), "train", str(sample / "project.toml"), "--epochs", "1",
                             "--device", "cpu", "--threads", "2", "--set", "training.num_workers=2", "--json",
                             "--runs-dir", str(work / "runs")], env)
            fig["train_one_epoch_workers2_seconds"] = round(secs, 1)
            try:
                final = json.loads(p.stdout.strip().splitlines()[-1])
                fig["train"] = {k: final.get(k) for k in ("status", "test_accuracy", "train_seconds")}
            except (json.JSONDecodeError, IndexError):
                fig["train"] = {"status": f"exit {p.returncode}", "stderr": p.stderr[-2000:]}
        fig["has_window"] = a.window
        if fig["has_window"] and shutil.which("Xvfb"):
            fig.update(window_figures(exe, env, a.screenshot, sample / "project.toml"))
        fig["load_after"] = open("/proc/loadavg").read().split()[:3]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
