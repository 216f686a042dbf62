"""`make run` checks the system libraries of Qt's X11 (xcb) platform plugin before it starts the
window, and prints the missing ones with the command that installs them (Qt itself aborts
naming libxcb-cursor0 whatever is missing).  A missing library is faked with a copy of the real
plugin whose link to one library is renamed to a library no system has."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tlstudio import qtcheck

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                                reason="the xcb check is for Linux (ldd)")

FAKE = "libtlfake-missing.so.7"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":99", **extra)  # a desktop session (the check only reads the variable)
    return env


def _check(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tlstudio.qtcheck", *args], capture_output=True, text=True,
                          env=_env(**env), timeout=120)


def _plugin_with_a_missing_library(tmp_path):
    """The real xcb plugin, with its link to libxcb-keysyms.so.1 renamed to FAKE (same length)."""
    real = qtcheck.xcb_plugin()
    if real is None:
        pytest.skip("PySide6's xcb plugin is not installed here")
    data = real.read_bytes()
    old = b"\0libxcb-keysyms.so.1\0"
    new = b"\0" + FAKE.encode().ljust(len(old) - 2, b"x")[: len(old) - 2] + b"\0"
    assert data.count(old) == 1 and len(new) == len(old)
    fake = tmp_path / "platforms" / "libqxcb.so"
    fake.parent.mkdir()
    fake.write_bytes(data.replace(old, new))
    fake.chmod(0o755)
    return fake, new.strip(b"\0").decode()


def test_a_missing_library_is_named_with_its_package_and_the_install_command(tmp_path):
    plugin, soname = _plugin_with_a_missing_library(tmp_path)
    assert soname in qtcheck.missing_libraries(plugin, qtcheck.qt_dir() / "lib")
    p = _check("--plugin", str(plugin))
    assert p.returncode == 1, p.stdout + p.stderr
    package = qtcheck.package_of(soname)
    assert f"  {soname}  (package {package})" in p.stdout
    command = next(line.strip() for line in p.stdout.splitlines() if "apt-get install -y" in line)
    assert package in command.split()
    assert "Then start the studio again (make run)" in p.stdout


def test_nothing_missing_says_nothing(tmp_path):
    """A plugin whose libraries are all present (Qt's minimal platform) passes silently."""
    qt = qtcheck.qt_dir()
    minimal = qt / "plugins" / "platforms" / "libqminimal.so"
    if not minimal.exists() or qtcheck.missing_libraries(minimal, qt / "lib"):
        pytest.skip("Qt's minimal platform plugin is absent or lacks libraries here")
    p = _check("--plugin", str(minimal))
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr


def test_another_platform_or_no_display(tmp_path):
    plugin, _ = _plugin_with_a_missing_library(tmp_path)
    p = _check("--plugin", str(plugin), QT_QPA_PLATFORM="offscreen")
    assert p.returncode == 0 and p.stdout == ""  # offscreen does not load the xcb plugin
    qt = qtcheck.qt_dir()
    minimal = qt / "plugins" / "platforms" / "libqminimal.so"
    if qtcheck.missing_libraries(minimal, qt / "lib"):
        pytest.skip("Qt's minimal platform plugin lacks libraries here")
    env = _env()
    env.pop("DISPLAY")
    p = subprocess.run([sys.executable, "-m", "tlstudio.qtcheck", "--plugin", str(minimal)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 1 and "No display" in p.stdout and "make demo" in p.stdout


@pytest.mark.parametrize("soname,package", [("libxcb-icccm.so.4", "libxcb-icccm4"),
                                            ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
                                            ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
                                            ("libxcb-cursor.so.0", "libxcb-cursor0"),
                                            ("libX11-xcb.so.1", "libx11-xcb1"),
                                            ("libGL.so.1", "libgl1"),
                                            ("libglib-2.0.so.0", "libglib2.0-0")])
def test_debian_package_names(soname, package):
    assert qtcheck.package_of(soname) == package


def test_installers_check_the_libraries_without_a_display(tmp_path):
    plugin, soname = _plugin_with_a_missing_library(tmp_path)
    env = _env()
    env.pop("DISPLAY")
    args = [sys.executable, "-m", "tlstudio.qtcheck", "--libraries-only", "--plugin"]
    p = subprocess.run(args + [str(plugin)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1 and soname in p.stdout and "No display" not in p.stdout
    qt = qtcheck.qt_dir()
    minimal = qt / "plugins" / "platforms" / "libqminimal.so"
    if not qtcheck.missing_libraries(minimal, qt / "lib"):
        p = subprocess.run(args + [str(minimal)], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0 and p.stdout == ""
