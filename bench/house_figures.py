"""Figures of the house (issue #15): how the code is laid out, measured, not described.

    .venv/bin/python bench/house_figures.py [--root .] [--no-timing]

Prints: files per folder of tlstudio/ and plugins/, the longest files, import circles
(function-level imports count, as ../shared/hooks/house-check counts them), task-name
comparisons outside the task plugins, names the built-in plugins import from tlstudio other
than through tlstudio.api, and the time of `tlstudio plugins` with whether it imported torch.
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

TASK_IDS = ("image-classification", "detection", "captioning", "text-classification")
# a comparison with a task id: == / != / in ( ... ) / a dict keyed by task ids ({"detection": "boxes"})
TASK_CMP = re.compile(r"""(==|!=|\bin\b|\bnot in\b)\s*\(?\s*["'](%s)["']|["'](%s)["']\s*(==|!=)"""
                      r"""|["'](%s)["']\s*:\s*["'(]""" % (("|".join(TASK_IDS),) * 3))


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for base, pkg in (("tlstudio", "tlstudio"), ("plugins", "tlstudio_plugins")):
        for f in (root / base).rglob("*.py"):
            rel = f.relative_to(root / base).with_suffix("")
            out[".".join([pkg] + [p for p in rel.parts if p != "__init__"])] = f
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        base = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                b = base
                for _ in range(max(0, n.level - 1)):
                    b = b.rpartition(".")[0]
                mod = (b + "." + n.module if n.module else b) if n.level else (n.module or "")
                targets = [mod] + [mod + "." + a.name for a in n.names]
            for t in targets:
                r = resolve(t)
                if r and r != m and not (mods[r].name == "__init__.py" and m.startswith(r + ".")):
                    graph[m].add(r)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    sys.setrecursionlimit(10000)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def task_comparisons(root: Path) -> list[str]:
    """Lines outside the task modules that compare a task's id (the window and the CLI should
    ask the task instead)."""
    task_files = {"classification.py", "detection.py", "captioning.py", "text.py", "annotated.py"}
    hits = []
    for f in sorted((root / "tlstudio").rglob("*.py")):
        if "tasks" in f.parts or f.name in task_files or f.name == "config.py":
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if TASK_CMP.search(line):
                hits.append(f"{f.relative_to(root)}:{i}: {line.strip()[:100]}")
    return hits


def private_imports(root: Path) -> list[str]:
    """Names the built-in plugins import from tlstudio other than through tlstudio.api."""
    hits = []
    for f in sorted((root / "plugins").rglob("*.py")):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").startswith("tlstudio") \
                    and n.module != "tlstudio.api" and not n.module.startswith("tlstudio_plugins"):
                hits += [f"{f.relative_to(root)}: {n.module}.{a.name}" for a in n.names]
            elif isinstance(n, ast.Import):
                hits += [f"{f.relative_to(root)}: {a.name}" for a in n.names
                         if a.name.startswith("tlstudio") and a.name not in ("tlstudio.api",)
                         and not a.name.startswith("tlstudio_plugins")]
    return hits


def plugins_command(root: Path) -> tuple[float, bool]:
    code = ("import sys, time; t=time.perf_counter(); from tlstudio.cli import main; import io, contextlib\n"
            "buf=io.StringIO()\nwith contextlib.redirect_stdout(buf): main(['plugins'])\n"
            "print(round(time.perf_counter()-t, 2), 'torch' in sys.modules)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True).stdout.split()
    wall = time.perf_counter() - t0
    return wall, (out[-1] == "True") if out else True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=".")
    ap.add_argument("--no-timing", action="store_true")
    a = ap.parse_args()
    root = Path(a.root).resolve()
    mods = modules(root)
    per_folder = Counter(str(p.parent.relative_to(root)) for p in mods.values())
    print("files per folder:")
    for folder, n in sorted(per_folder.items()):
        print(f"  {folder}: {n}")
    sizes = sorted(((len(p.read_text(encoding='utf-8').splitlines()), str(p.relative_to(root))) for p in mods.values()),
                   reverse=True)
    print("longest files:", ", ".join(f"{name} ({n})" for n, name in sizes[:5]))
    print("files over 600 lines:", sum(n > 600 for n, _ in sizes))
    g = import_graph(mods)
    cyc = circles(g)
    print(f"import arrows: {sum(len(v) for v in g.values())}; import circles (function-level imports count): {len(cyc)}")
    for c in cyc:
        print("  circle:", " ".join(c))
    tc = task_comparisons(root)
    print(f"task-name comparisons outside the task modules: {len(tc)}")
    for h in tc:
        print("  ", h)
    pi = private_imports(root)
    print(f"names the built-in plugins import from tlstudio but not through tlstudio.api: {len(pi)}")
    for h in pi:
        print("  ", h)
    if not a.no_timing:
        wall, torch_loaded = plugins_command(root)
        print(f"`tlstudio plugins`: {wall:.2f} s wall; imported torch: {torch_loaded}; load {open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
