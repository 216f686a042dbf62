"""Peak memory of ``tlstudio validate-data`` on a folder holding decompression bombs.

A folder of two classes x 5 real digits, plus a VALID 20000 x 20000 grey PNG (about 0.4 MB on
disk, 400 MB decoded: within the decode budget, reduced to 4096 px while decoding) and a VALID
45000 x 45000 grey PNG (about 2 MB on disk, 2 GB decoded: refused from its header).  The peak
resident memory of the validate-data process is read with getrusage(RUSAGE_CHILDREN) around
it; the same folder without the two bombs gives the baseline.  validate-data's leakage check
runs as it does by default (perceptual hash and thumbnail similarity, no torch).

    .venv/bin/python bench/decode_memory.py          # a table
    .venv/bin/python bench/decode_memory.py --json   # one JSON object (tests/faults read it)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path


def png_header(width: int, height: int, idat: bytes = b"", color_type: int = 0) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height`` (8-bit), with the given IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + (chunk(b"IDAT", idat) if idat else b"") + chunk(b"IEND", b"")


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A VALID grey PNG of ``width`` x ``height`` black pixels that is only a few hundred KB:
    one compressed block of rows repeated (a decompression bomb)."""
    row = b"\0" + bytes(width)
    per = max(1, (1 << 22) // len(row))
    block_rows = row * per
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(block_rows) + c.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no history: repeatable
    full, rest = divmod(height, per)
    c2 = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = c2.compress(row * rest) + c2.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(block_rows, adler)
    adler = zlib.adler32(row * rest, adler)
    path.write_bytes(png_header(width, height, b"\x78\xda" + block * full + tail + struct.pack(">I", adler)))
    return path


def digits(root: Path) -> Path:
    """Two classes x 5 real digits (scikit-learn's 8 x 8 digits, scaled to 32 px)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    for c in (0, 1):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(y == c)[:5]:
            img = Image.fromarray((X[i].reshape(8, 8) * 16).clip(0, 255).astype("uint8")).resize((32, 32))
            img.save(root / str(c) / f"{c}-{i}.png")
    return root


def peak_rss_mb(folder: Path, budget_mb: int | None = None) -> tuple[float, float, dict]:
    """(peak RSS of `tlstudio validate-data folder --json` in MB, wall seconds, its report),
    measured in a process of its own so that no earlier child counts; ``budget_mb`` sets
    TLSTUDIO_DECODE_MEMORY_MB for it."""
    env = dict(os.environ)
    if budget_mb:
        env["TLSTUDIO_DECODE_MEMORY_MB"] = str(budget_mb)
    code = ("import json, resource, subprocess, sys, time\n"
            "t = time.time()\n"
            f"r = subprocess.run([sys.executable, '-m', 'tlstudio.cli', 'validate-data', {str(folder)!r}, '--json'], "
            "capture_output=True, text=True)\n"
            "print(json.dumps({'rc': r.returncode, 'seconds': time.time() - t, 'stderr': r.stderr[-2000:], "
            "'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'report': r.stdout}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=env).stdout)
    if out["rc"] != 0:
        raise SystemExit(f"validate-data failed: {out['stderr']}")
    return out["maxrss_kb"] / 1024, out["seconds"], json.loads(out["report"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--work", help="folder for the files (default: a temporary one, removed)")
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("ru_maxrss is read in KB on Linux only")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tl-decode-memory-"))
    try:
        plain = digits(work / "plain")
        bombs = work / "bombs"
        shutil.copytree(plain, bombs)
        t = time.time()
        bomb_png(bombs / "0" / "bomb-20000.png", 20_000, 20_000)
        bomb_png(bombs / "1" / "bomb-45000.png", 45_000, 45_000)
        made = time.time() - t
        pair = work / "pair"  # two 20000^2 images: the thread pool decodes them at once unless the budget says no
        shutil.copytree(plain, pair)
        bomb_png(pair / "0" / "bomb-20000-a.png", 20_000, 20_000)
        bomb_png(pair / "1" / "bomb-20000-b.png", 20_000, 20_000)
        base_mb, base_s, _ = peak_rss_mb(plain)
        peak_mb, peak_s, rep = peak_rss_mb(bombs)
        pair_mb, pair_s, pair_rep = peak_rss_mb(pair)
        free_mb, free_s, _ = peak_rss_mb(pair, budget_mb=4096)
        from tlstudio.core.data.budget import decode_budget, machine_memory

        result = {
            "peak_rss_mb": round(peak_mb, 1), "baseline_rss_mb": round(base_mb, 1), "seconds": round(peak_s, 2),
            "baseline_seconds": round(base_s, 2), "bombs_written_seconds": round(made, 2),
            "pair_rss_mb": round(pair_mb, 1), "pair_seconds": round(pair_s, 2), "pair_counts": pair_rep["counts"],
            "pair_rss_mb_budget_4gb": round(free_mb, 1), "pair_seconds_budget_4gb": round(free_s, 2),
            "bomb_sizes_bytes": {p.name: p.stat().st_size for p in bombs.rglob("bomb-*.png")},
            "decode_budget_mb": round(decode_budget() / 2**20), "machine_memory_gb": round(machine_memory() / 2**30, 1),
            "counts": rep["counts"], "skipped": rep["skipped"], "sizes": rep["sizes"],
            "loadavg": open("/proc/loadavg").read().split()[:3],
        }
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"validate-data on 10 digits + a 20000^2 and a 45000^2 PNG (load average {' '.join(result['loadavg'])})")
    print(f"  peak RSS                       {result['peak_rss_mb']:.0f} MB   ({result['seconds']:.1f} s)")
    print(f"  peak RSS without the two bombs {result['baseline_rss_mb']:.0f} MB   ({result['baseline_seconds']:.1f} s)")
    print(f"  two 20000^2 PNGs (both used)   {result['pair_rss_mb']:.0f} MB   ({result['pair_seconds']:.1f} s): "
          "decoded one after the other")
    print(f"  the same, budget raised to 4 GB {result['pair_rss_mb_budget_4gb']:.0f} MB   "
          f"({result['pair_seconds_budget_4gb']:.1f} s): decoded at once")
    print(f"  decode budget                  {result['decode_budget_mb']} MB of {result['machine_memory_gb']} GB")
    print(f"  bomb files                     " + ", ".join(f"{k} {v / 1e3:.0f} KB" for k, v in result["bomb_sizes_bytes"].items()))
    print(f"  usable images                  {result['counts']}   (largest {result['sizes'].get('max_width')} px)")
    for s in result["skipped"]:
        print(f"  skipped {os.path.basename(s['ref'])}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
