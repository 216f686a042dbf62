#!/usr/bin/env python3
"""Build the offline bundle (or reuse one), install it into a fresh virtual environment with
the network cut (``unshare -rn``), then run ``tlstudio doctor`` and a one-epoch headless
training of the sample project from the installed copy.  Prints the figures (bundle size,
build, install, doctor and training times) as JSON.

    python bench/bundle_install.py [--bundle DIR] [--work DIR] [--keep]

Without --bundle it builds one (installer/build_bundle.py) into the work folder.  Nothing in
the installed environment comes from this checkout: a new venv from the base Python, pip
--no-index from the bundle's wheels only (pip configuration switched off), no network.
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


def base_python() -> str:
    """The interpreter this venv was made from (a clean Python with no site-packages of ours)."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(exe).resolve())


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "TLSTUDIO_", "CONDA")) and k != "QT_QPA_PLATFORM"}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), TLSTUDIO_HOME=str(home / "tlstudio"),
               PATH="/usr/bin:/bin", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run(cmd: list[str], env: dict, log: Path, offline: bool = True, timeout: float = 3600) -> tuple[float, str]:
    if offline:
        cmd = ["unshare", "-rn", *cmd]
    t = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["HOME"])
    out = p.stdout + p.stderr
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n{out}\n[exit {p.returncode}]\n")
    if p.returncode != 0:
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(cmd)}\n{out[-4000:]}")
    return time.time() - t, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", help="an existing bundle folder (default: build one)")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        raise SystemExit("`unshare -rn` is not available here: cannot cut the network for the check.")
    work = Path(a.work or tempfile.mkdtemp(prefix="tlstudio-bundle-check-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    figures: dict = {"load_before": open("/proc/loadavg").read().split()[:3], "work": str(work)}
    try:
        if a.bundle:
            bundle = Path(a.bundle).resolve()
        else:
            t = time.time()
            p = subprocess.run([sys.executable, str(REPO / "installer" / "build_bundle.py"), "--out", str(work / "dist"),
                                "--json"], capture_output=True, text=True, check=True)
            figures["build_seconds"] = round(time.time() - t, 1)
            bundle = Path(json.loads(p.stdout.strip().splitlines()[-1])["bundle"])
        manifest = json.loads((bundle / "manifest.json").read_text())
        figures["bundle"] = str(bundle)
        figures["bundle_bytes"] = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
        figures["bundle_gib"] = round(figures["bundle_bytes"] / 2**30, 2)
        figures["wheels"] = len(manifest["wheels"])

        home = work / "home"
        home.mkdir(exist_ok=True)
        env = clean_env(home)
        prefix = work / "env"
        secs, out = run(["sh", str(bundle / "install.sh"), "--prefix", str(prefix), "--python", base_python()], env, log)
        figures["install_seconds"] = round(secs, 1)  # venv + pip --no-index + launcher + doctor
        figures["installed_bytes"] = sum(f.stat().st_size for f in prefix.rglob("*") if f.is_file())
        figures["installer_output_tail"] = out.strip().splitlines()[-3:]
        desktop = home / ".local" / "share" / "applications" / "tlstudio.desktop"
        figures["launcher"] = str(desktop) if desktop.exists() else None
        figures["launcher_exec"] = next((l[5:] for l in desktop.read_text().splitlines() if l.startswith("Exec=")), None) \
            if desktop.exists() else None

        tl = str(prefix / "bin" / "tlstudio")
        _, where = run([str(prefix / "bin" / "python"), "-c", "import tlstudio, torch; print(tlstudio.__file__)"], env, log)
        figures["tlstudio_imported_from"] = where.strip()
        secs, out = run([tl, "doctor", "--json"], env, log)
        figures["doctor_seconds"] = round(secs, 1)
        checks = json.loads(out)
        figures["doctor"] = {c["name"]: c["status"] for c in checks}
        sample = prefix / "share" / "tlstudio" / "sample" / "project.toml"
        secs, out = run([tl, "train", str(sample), "--epochs", "1", "--device", "cpu", "--threads", "2", "--json",
                         "--runs-dir", str(work / "runs")], env, log)
        figures["train_one_epoch_seconds"] = round(secs, 1)
        final = json.loads(out.strip().splitlines()[-1])
        figures["train"] = {k: final.get(k) for k in ("status", "test_accuracy", "test_auc", "train_seconds", "run_dir")}
        figures["load_after"] = open("/proc/loadavg").read().split()[:3]
    finally:
        if not a.keep and not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
