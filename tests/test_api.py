"""The public API a plugin author reads: every name in tlstudio.api resolves, importing it
imports no torch, and the built-in plugins and the examples import from it alone."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tlstudio.core.tasks.traits import TaskTraits

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves():
    import tlstudio.api as api

    missing = []
    for name in api.__all__:
        try:
            getattr(api, name)
        except (AttributeError, ImportError) as e:
            missing.append(f"{name}: {e}")
    assert not missing, missing


def test_importing_the_api_imports_no_torch():
    code = "import sys, tlstudio.api; from tlstudio.api import hookimpl, TechniqueConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _studio_imports(path: Path) -> list[str]:
    """The tlstudio modules a file imports (``from tlstudio.x import ...``, ``import tlstudio.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "tlstudio" or node.module.startswith("tlstudio."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "tlstudio" or a.name.startswith("tlstudio.")]
    return found


def test_plugins_use_only_the_public_api():
    files = sorted((ROOT / "plugins").glob("*.py")) + sorted(
        p for p in (ROOT / "docs" / "examples").rglob("*.py") if "build" not in p.parts and "tests" not in p.parts)
    assert len(files) > 10
    private = {str(f.relative_to(ROOT)): m for f in files for m in _studio_imports(f) if m != "tlstudio.api"}
    assert not private, f"plugins must import tlstudio.api only: {private}"


def test_listing_the_plugins_imports_no_torch():
    """`tlstudio plugins` lists the built-ins from their manifests, without importing them."""
    code = ("import contextlib, io, json, sys\nfrom tlstudio.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    rc = main(['plugins', '--json'])\n"
            "rows = json.loads(buf.getvalue())\n"
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'rows': rows}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0 and res["torch"] is False
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["fine-tuning"]["status"] == "loaded" and rows["fine-tuning"]["from_manifest"]
    assert rows["fine-tuning"]["provides"] == {"tlstudio_techniques": ["fine-tuning"]}


def test_each_builtin_manifest_says_what_its_plugin_offers():
    from tlstudio.core.plugins import PluginManager

    loaded = PluginManager()
    loaded.collect_all()
    listed = PluginManager(manifests=True)
    listed.collect_all()
    builtins = {n: p for n, p in loaded.plugins.items() if p.builtin}
    assert builtins and all(listed.plugins[n].from_manifest for n in builtins)
    assert {n: p.provides for n, p in builtins.items()} == {n: listed.plugins[n].provides for n in builtins}
    import tlstudio_plugins.manifest as M

    techniques, tasks = loaded.techniques(), loaded.tasks()
    for name in builtins:
        manifest = getattr(M, name.upper().replace("-", "_"))
        for item in manifest.get("tlstudio_techniques", []):
            t = techniques[item["id"]]
            assert (item["title"], item["task"]) == (t.title, t.task)
        for item in manifest.get("tlstudio_tasks", []):
            assert item["title"] == tasks[item["id"]].title
            assert TaskTraits.from_manifest(item) == tasks[item["id"]].traits  # the window's words and tools


def test_a_task_is_described_before_its_plugin_loads(tmp_path):
    """The window asks a task's traits (its words, its tools) from the manifests, without
    importing the plugins or torch; once loaded, the task itself answers the same."""
    code = ("import sys, json; from tlstudio.core.tasks.traits import task_traits; "
            "t = task_traits('text-classification'); d = task_traits('detection'); u = task_traits('no-such-task'); "
            "print(json.dumps([t.texts, t.data_title, d.annotation_kind.plural, d.can('leakage-check'), "
            "task_traits('image-classification').can('leakage-check'), u.abilities == frozenset(), "
            "'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, "Texts", "boxes", False, True, True, False]
