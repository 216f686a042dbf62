"""The GPU path: fp32 vs AMP + channels_last, and the share of time the GPU waits for data.

A. Compute: the same model and the same batch (synthetic images already on the GPU, so no
   data loading), timed with CUDA events over steps after a warm-up:
     fp32            - NCHW, no autocast (PyTorch's defaults: TF32 convolutions allowed)
     AMP + CL        - what the engine does on CUDA: bf16 autocast where supported (else
                       fp16 with a GradScaler), channels_last model and inputs
   and the ratio (target >= 1.5x on an H100).  cudnn.benchmark is on in both.
B. Data: the engine's own loader (RunContext.loader) over real images with the "standard"
   augmentation and the AMP + CL step, four ways: augmentation on the GPU (the default on
   CUDA: whole uint8 batches from the image cache, tlstudio.core.data.device_loader) with the
   images resident on the GPU and streamed from the host, and in the loader ("auto" worker
   processes, pinned memory, persistent workers, prefetching; and 0 workers).  Per step, CUDA events bracket the GPU work; host timers bracket the
   data fetch.  GPU waiting share = 1 - (GPU busy time / wall time).  Also with 0 workers
   (decoding/augmenting on the training thread) for contrast.
C. The engine itself: ``train()`` for two epochs; its epoch events give images/s and the
   share of the epoch the loop spent waiting for the loader.

Without a CUDA GPU the script says so and runs a small CPU version of A and B (so that it
is exercised), and prints no GPU figures.

    .venv/bin/python bench/gpu_throughput.py [--models resnet50,mobilenet_v2] [--batch-size 128]
        [--image-size 224] [--steps 30] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time

import torch
from common import bench_data, fresh_home, row


def device_name() -> str:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, torch {torch.__version__}"
    return f"no CUDA GPU; CPU {platform.processor() or platform.machine()} x {os.cpu_count()}, torch {torch.__version__}"


def build(name: str, num_classes: int = 10, weights: str = "none"):
    from tlstudio.core.models import ModelLibrary

    model, _ = ModelLibrary().build(name, num_classes, weights=weights)
    return model


def amp_dtype():
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --- A. compute only ------------------------------------------------------------------------
def compute_rate(name: str, batch: int, size: int, steps: int, warmup: int, amp: bool, dev: torch.device) -> float:
    torch.manual_seed(0)
    model = build(name).to(dev).train()
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    cuda = dev.type == "cuda"
    dtype = amp_dtype() if (amp and cuda) else None
    if amp and cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step():
        with torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - t0
    del model, opt
    if cuda:
        torch.cuda.empty_cache()
    return batch * steps / seconds


# --- B. data-fed loop through the engine's loader -------------------------------------------
def make_context(size: int, batch: int, workers: int | None, dev: torch.device, augment_on: str = "loader",
                 data_dir: str | None = None):
    from tlstudio.core.config import Project
    from tlstudio.core.engine import RunContext
    from tlstudio.core.plugins import get_plugin_manager

    data, label = (data_dir, f"{data_dir} (bench/scale.py images)") if data_dir else bench_data()
    p = Project()
    p.data.source = str(data)
    p.model.image_size = size
    p.technique.id = "fine-tuning"
    p.training.batch_size = batch
    p.training.device = dev.type
    p.augmentation.preset = "standard"
    p.training.augment_on = augment_on
    if workers is not None:
        p.training.num_workers = workers
    pm = get_plugin_manager()
    tech = pm.technique("fine-tuning").fresh()
    from tlstudio.core.engine.loop import prepare

    ctx = RunContext(p, tech, tech.make_config({}), dev, run=None, plugins=pm)
    prepare(ctx)
    return ctx, label


def fed_loop(ctx, name: str, steps: int, seconds: float) -> dict:
    dev = ctx.device
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    model = ctx.build_classifier() if name == "mobilenet_v2" else build(name, ctx.num_classes)
    model = model.to(dev).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda") if ctx.amp_dtype == torch.float16 else None
    fetch, busy, marks = 0.0, [], []
    done, epoch, seen = 0, 0, 0
    warm = 5
    t_start = None
    while done < steps + warm:
        it = iter(ctx.loader("train", train=True, epoch=epoch))
        epoch += 1
        while done < steps + warm:
            tf = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            if done >= warm:
                fetch += time.perf_counter() - tf
            x, y = ctx.to_device((x, y))
            if cuda:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
            with ctx.autocast():
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if cuda:
                e1.record()
            done += 1
            if done == warm:  # the clock starts after the warm-up (cudnn autotuning, worker start)
                if cuda:
                    torch.cuda.synchronize()
                t_start = time.perf_counter()
            elif done > warm:
                seen += len(y)
                if cuda:
                    marks.append((e0, e1))
            if t_start and time.perf_counter() - t_start > seconds:
                break
        if t_start and time.perf_counter() - t_start > seconds:
            break
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t_start
    gpu_busy = sum(a.elapsed_time(b) for a, b in marks) / 1000 if cuda else None
    ctx.close_loaders()
    return {"images_per_s": seen / wall, "steps": len(marks) if cuda else done - warm, "wall_s": wall,
            "host_fetch_share": fetch / wall, "gpu_wait_share": (1 - gpu_busy / wall) if cuda else None,
            "workers": ctx.num_workers, "augment_on": ctx.training.augment_on}


# --- C. the engine ----------------------------------------------------------------------------
def engine_run(size: int, batch: int, epochs: int, augment_on: str = "auto") -> dict:
    from tlstudio.core.config import Project
    from tlstudio.core.engine import train

    data, _ = bench_data()
    p = Project()
    p.data.source = str(data)
    p.model.image_size = size
    p.technique.id = "fine-tuning"
    p.training.batch_size = batch
    p.training.epochs = epochs
    p.training.device = "cuda"
    p.training.augment_on = augment_on
    ev: list[dict] = []
    res = train(p, on_event=ev.append)
    eps = [e for e in ev if e["kind"] == "epoch"]
    last = eps[-1] if eps else {}
    return {"status": res["status"], "images_per_s": last.get("train_images_per_s"),
            "data_wait_share": last.get("data_wait_share"), "first_epoch_s": eps[0]["seconds"] if eps else None,
            "train_seconds": res.get("train_seconds"), "augment_on": augment_on}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=40.0, help="time cap of each data-fed loop")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--data", help="images for part B (a folder of class folders; default BreastMNIST or the sample)")
    args = ap.parse_args()
    fresh_home("gpu")
    cuda = torch.cuda.is_available()
    out: dict = {"date": dt.date.today().isoformat(), "device": device_name(), "gpu": cuda}
    print(f"{out['date']}  {out['device']}")
    if cuda:
        torch.backends.cudnn.benchmark = True
        dev = torch.device("cuda")
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        bs, size, steps, warmup = args.batch_size, args.image_size, args.steps, 10
        print(f"AMP dtype: {amp_dtype()}")
    else:
        print("No CUDA GPU present: the GPU figures are NOT measured. Running a small CPU version of parts A "
              "and B so that the script is exercised (its figures say nothing about a GPU).")
        dev = torch.device("cpu")
        models, bs, size, steps, warmup = ["mobilenet_v2"], 8, 64, 3, 1

    print("\nA. compute only (synthetic batch on the device)")
    out["compute"] = {}
    for m in models:
        fp32 = compute_rate(m, bs, size, steps, warmup, amp=False, dev=dev)
        line = {"fp32_images_per_s": fp32}
        row(f"{m}, batch {bs}, {size} px, fp32", f"{fp32:9.1f} images/s")
        if cuda:
            amp = compute_rate(m, bs, size, steps, warmup, amp=True, dev=dev)
            line |= {"amp_cl_images_per_s": amp, "ratio": amp / fp32}
            row(f"{m}, AMP ({amp_dtype()}) + channels_last", f"{amp:9.1f} images/s")
            row(f"{m}, ratio (target >= 1.5 on an H100)", f"{amp / fp32:9.2f} x")
        else:
            row(f"{m}, AMP + channels_last", "n/a (a GPU path; not measured on the CPU)")
        out["compute"][m] = line

    print("\nB. data-fed training through the engine's loader (real images, 'standard' augmentation)")
    out["fed"] = {}
    fed_models = models if cuda else models[-1:]
    from tlstudio.core.data import device_loader as DL

    variants = [("device", None, "on the GPU, images resident"), ("device", None, "on the GPU, streamed"),
                ("loader", None, "in the loader, auto workers"), ("loader", 0, "in the loader, 0 workers")]
    for fed_model in fed_models:
        for augment_on, workers, what in variants:
            DL.RESIDENT_MAX = 0 if "streamed" in what else 4 << 30
            ctx, label = make_context(size, bs if cuda else 16, workers, dev, augment_on, args.data)
            r = fed_loop(ctx, fed_model, steps * (4 if cuda else 2), args.seconds if cuda else 20)
            tag = f"{fed_model}: augmentation {what}"
            out["fed"][tag] = r
            gpu = f", GPU waits {100 * r['gpu_wait_share']:.1f}% of the time" if r["gpu_wait_share"] is not None else ""
            share = ""
            if cuda and "amp_cl_images_per_s" in out["compute"].get(fed_model, {}):
                share = f", {100 * r['images_per_s'] / out['compute'][fed_model]['amp_cl_images_per_s']:.0f}% of compute-only"
            row(tag, f"{r['images_per_s']:8.1f} images/s, loader fetch {100 * r['host_fetch_share']:.1f}%{gpu}{share}")
        print(f"  (data: {label}; target: data-fed >= 85% of compute-only)")

    if cuda:
        print("\nC. the engine: train() fine-tuning MobileNetV2, 2 epochs on the small data set")
        out["engine"] = {}
        for augment_on in ("device", "loader"):
            r = engine_run(size, min(bs, 64), 2, augment_on)
            out["engine"][augment_on] = r
            row(f"engine, augmentation {augment_on}", f"{r['images_per_s']:8.1f} images/s (last epoch), waiting for "
                f"data {100 * (r['data_wait_share'] or 0):.1f}%, first epoch {r['first_epoch_s']:.1f} s, "
                f"whole run {r['train_seconds']:.1f} s ({r['status']})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
