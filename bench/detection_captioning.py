"""Detection and captioning on real handwritten digits placed on canvases: longer runs than
the tests, each against the same model untrained, through the studio's engine.

Detection: Faster R-CNN on the ImageNet MobileNetV2 (no COCO detector exists offline),
scenes of 1-3 digits of all ten classes, boxes = each digit's ink.  Captioning: scenes of
two digits described by where they lie ("a 3 left of a 7", two captions per image),
frozen MobileNetV2 encoder with cached features, LSTM and Transformer decoders.

    nice -n 10 .venv/bin/python bench/detection_captioning.py            # both, defaults below
    .venv/bin/python bench/detection_captioning.py --only captioning --images 200 --epochs 10

Prints test mAP@0.5 / mAP@[.5:.95] and BLEU-1..4 / CIDEr-D of each model and of its
untrained twin, the training time and the machine load; --json FILE keeps them.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from common import fresh_home, row


def untrained_test_metrics(project) -> dict:
    """The project's model before any training, on the same test images."""
    from tlstudio.core.engine import open_context

    return open_context(project, device="cpu").evaluate("test")


def run(project, label: str) -> dict:
    from tlstudio.core.engine import train

    def show(e):
        if e["kind"] == "epoch":
            vals = "  ".join(f"{k[4:]} {v:.3f}" for k, v in e.items() if k in ("val_map_50", "val_map", "val_bleu_4", "val_cider"))
            print(f"    {label} epoch {e['epoch']}/{e['epochs']}  loss {e.get('train_loss', float('nan')):.3f}  {vals}  "
                  f"{e['seconds']:.0f}s", flush=True)
        elif e["kind"] == "failed":
            print(e["message"], e.get("details", ""))

    load0 = os.getloadavg()[0]
    final = train(project, on_event=show, runs_dir=Path(os.environ["TLSTUDIO_HOME"]) / "runs")
    if final.get("status") != "done":
        raise SystemExit(f"{label}: {final.get('message')}")
    final["untrained"] = untrained_test_metrics(project)
    final["load"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    return final


def detection(args, folder: Path) -> list[dict]:
    from tlstudio.core.config import Project
    from tlstudio.core.data.digit_scenes import write_digit_scenes

    write_digit_scenes(folder / "scenes", n=args.images, canvas_size=args.size, per_image=(1, 3), seed=11)
    out = []
    for groups in args.backbone_groups:
        p = Project(name="bench detection", task="detection")
        p.data.source = str(folder / "scenes" / "boxes.csv")
        p.model.architecture, p.model.image_size = "mobilenet_v2", args.size
        p.technique.id = "faster-rcnn"
        p.technique.settings = {"trainable_backbone_groups": groups, "fpn_channels": 64, "box_head_size": 128,
                                "rois_per_image": 64}
        p.augmentation.preset = "none"
        tr = p.training
        tr.epochs, tr.batch_size, tr.lr, tr.warmup_epochs, tr.grad_clip = args.epochs, 8, 2e-3, 0.5, 10.0
        tr.device, tr.threads = "cpu", args.threads
        label = f"faster-rcnn (backbone groups trained: {groups})"
        print(f"  {label} ...", flush=True)
        f = run(p, label)
        f["label"] = label
        out.append(f)
    return out


def captioning(args, folder: Path) -> list[dict]:
    from tlstudio.core.config import Project
    from tlstudio.core.data.digit_scenes import write_digit_scenes

    write_digit_scenes(folder / "pairs", n=args.images, canvas_size=args.size, per_image=(2, 2), seed=12)
    out = []
    for decoder in ("lstm", "transformer"):
        p = Project(name="bench captioning", task="captioning")
        p.data.source = str(folder / "pairs" / "captions.csv")
        p.model.architecture, p.model.image_size = "mobilenet_v2", args.size
        p.technique.id = "captioning"
        p.technique.settings = {"decoder": decoder, "embed_size": 128, "hidden_size": 256, "decoding": "beam"}
        tr = p.training
        tr.epochs, tr.batch_size, tr.lr, tr.grad_clip = args.epochs * 2, 32, 3e-3, 5.0
        tr.device, tr.threads = "cpu", args.threads
        label = f"captioning ({decoder})"
        print(f"  {label} ...", flush=True)
        f = run(p, label)
        f["label"] = label
        out.append(f)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("detection", "captioning"))
    ap.add_argument("--images", type=int, default=400, help="scenes per task (70/15/15 split)")
    ap.add_argument("--size", type=int, default=64, help="canvas and model image size")
    ap.add_argument("--epochs", type=int, default=12, help="detection epochs (captioning trains twice as many)")
    ap.add_argument("--backbone-groups", type=int, nargs="+", default=[0, 3],
                    help="detection: backbone groups that learn, one run each")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    home = fresh_home("detcap")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    print(f"Detection and captioning on digit scenes: {args.images} images of {args.size} px per task, "
          f"{args.threads} thread(s), load at start {os.getloadavg()[0]:.1f}")
    results = []
    if args.only != "captioning":
        results += detection(args, home)
    if args.only != "detection":
        results += captioning(args, home)
    print()
    for f in results:
        u = f["untrained"]
        print(f"{f['label']}: {f['train_seconds']:.0f} s of training (load {f['load'][0]} -> {f['load'][1]})")
        if "test_map_50" in f:
            row("test mAP@0.5 (untrained)", f"{f['test_map_50']:.3f} ({u['map_50']:.3f})")
            row("test mAP@[.5:.95] (untrained)", f"{f['test_map']:.3f} ({u['map']:.3f})")
            ap50 = {c: pc["ap50"] for c, pc in f["test"]["per_class"].items()}
            row("test AP@0.5 per class", " ".join(f"{c}:{v:.2f}" for c, v in ap50.items() if v is not None))
        else:
            for n in (1, 2, 3, 4):
                row(f"test BLEU-{n} (untrained)", f"{f[f'test_bleu_{n}']:.3f} ({u[f'bleu_{n}']:.3f})")
            row("test CIDEr-D (untrained)", f"{f['test_cider']:.3f} ({u['cider']:.3f})")
    print(f"total {time.time() - t0:.0f} s; load at end {os.getloadavg()[0]:.1f}")
    if args.json:
        keep = [{k: v for k, v in f.items() if k != "test"} | {"per_class": f["test"].get("per_class")} for f in results]
        Path(args.json).write_text(json.dumps(keep, indent=2, default=str))


if __name__ == "__main__":
    main()
