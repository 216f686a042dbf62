"""Before the window starts: does this Linux desktop have the system libraries that Qt's X11
(xcb) platform plugin needs?

    python -m tlstudio.qtcheck          # run by `make run` and by the offline bundle's install.sh

When a library of the xcb plugin is missing, Qt aborts with a message that names
libxcb-cursor0 whatever is really missing; ``ldd`` names the real ones.  This check lists the
missing libraries, the Debian/Ubuntu packages that hold them and the one command that installs
them, and exits 1.  It prints nothing and exits 0 when everything is there, or when it does not
apply (not Linux, another Qt platform asked for with QT_QPA_PLATFORM).

Nothing of Qt is imported here: the plugin is only loaded when a window starts, and the
check must say what is wrong before Qt aborts the process.
"""
from __future__ import annotations

import argparse
import ctypes.util
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: libraries Qt opens at run time (dlopen) rather than through the plugin's own links
RUNTIME_LIBRARIES = {"xcb-cursor": "libxcb-cursor.so.0"}
#: Debian/Ubuntu package names that the rule in :func:`package_of` does not give
PACKAGES = {"libGL.so.1": "libgl1", "libEGL.so.1": "libegl1", "libOpenGL.so.0": "libopengl0",
            "libGLX.so.0": "libglx0", "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
            "libgobject-2.0.so.0": "libglib2.0-0", "libfontconfig.so.1": "libfontconfig1"}


def qt_dir() -> Path | None:
    """PySide6's Qt folder (plugins/, lib/), found without importing PySide6."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "Qt"


def xcb_plugin(qt: Path | None = None) -> Path | None:
    qt = qt or qt_dir()
    p = qt / "plugins" / "platforms" / "libqxcb.so" if qt else None
    return p if p is not None and p.exists() else None


def missing_libraries(plugin: Path, qt_lib: Path | None = None) -> list[str]:
    """Shared libraries (sonames) that ``plugin`` needs and this system lacks, by ``ldd``
    (Qt's own libraries are looked up in ``qt_lib``), plus those Qt opens at run time."""
    missing: set[str] = set()
    if shutil.which("ldd"):
        env = dict(os.environ)
        if qt_lib is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(x for x in (str(qt_lib), env.get("LD_LIBRARY_PATH", "")) if x)
        try:
            out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30, env=env).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        missing |= {line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line}
    for name, soname in RUNTIME_LIBRARIES.items():
        if ctypes.util.find_library(name) is None:
            missing.add(soname)
    return sorted(missing)


def package_of(soname: str) -> str:
    """The Debian/Ubuntu package that holds a library: libxcb-icccm.so.4 -> libxcb-icccm4,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0, libGL.so.1 -> libgl1."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    base, _, ver = soname.partition(".so.")
    ver = ver.split(".")[0]
    base = base.lower()
    return base + ("-" if base[-1:].isdigit() else "") + ver if ver else base


def install_command(packages: list[str]) -> str:
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y {' '.join(packages)}"


def report(missing: list[str]) -> str:
    """What to tell the user about ``missing`` libraries (several lines)."""
    packages = sorted(dict.fromkeys(package_of(m) for m in missing))
    lines = ["The window cannot start yet: Qt's X11 (xcb) platform plugin needs system libraries that this "
             "computer lacks:",
             *(f"  {m}  (package {package_of(m)})" for m in missing)]
    lines += ["Install them with:" if shutil.which("apt-get") else "Install them (Debian/Ubuntu; elsewhere, the "
              "packages of your distribution that provide these libraries):", f"  {install_command(packages)}"]
    lines.append("Then start the studio again (make run). The command line (tlstudio train, make demo) works "
                 "without them.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tlstudio.qtcheck", description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", help="check this platform plugin file instead of PySide6's xcb plugin")
    ap.add_argument("--libraries-only", action="store_true",
                    help="check the libraries only, not whether this session has a display (installers)")
    args = ap.parse_args(argv)
    if not sys.platform.startswith("linux"):
        return 0
    requested = os.environ.get("QT_QPA_PLATFORM", "")
    if requested and not requested.startswith("xcb"):
        return 0  # offscreen, wayland, vnc ...: another plugin, other libraries
    qt = qt_dir()
    if args.plugin:
        plugin = Path(args.plugin)
    else:
        if qt is None:
            print("PySide6 (Qt for Python) is not installed in this environment: run `make setup` first.")
            return 1
        plugin = xcb_plugin(qt)
        if plugin is None:
            print(f"Qt's X11 platform plugin is missing from {qt / 'plugins' / 'platforms'}: reinstall PySide6 "
                  "(`make clean-venv setup`).")
            return 1
    missing = missing_libraries(plugin, qt / "lib" if qt else None)
    wayland = bool(os.environ.get("WAYLAND_DISPLAY")) and not requested
    if missing:
        print(report(missing))
        if wayland:  # Qt prefers its Wayland plugin on a Wayland desktop: the window may still open
            print("(This is a Wayland session, so the window may open anyway; X11 programs need these libraries.)")
            return 0
        return 1
    if not args.libraries_only and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("No display: the window needs a desktop session (DISPLAY is not set, e.g. over ssh without -X). "
              "The command line works here: make demo, or .venv/bin/tlstudio train PROJECT.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
