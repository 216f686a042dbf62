"""Leakage check: the same or a near-identical image on two sides of a split.

A test image that is also in the training split (copied, resized, re-saved as JPEG, slightly
cropped) makes every test figure look better than the model is.  Two signals, each with a
threshold measured on BreastMNIST (``bench/leakage.py``, docs/results.md):

- a perceptual hash (``imagehash.phash``: the 64-bit sign pattern of the image's low DCT
  frequencies, robust to resizing and re-encoding), of the whole image and of two central
  crops (a slightly cropped copy matches a crop): pairs at most ``MAX_HAMMING`` bits apart;
- frozen-feature cosine similarity (ImageNet MobileNetV2, global pooled, at 64 px; robust to
  small crops): pairs at least ``MIN_COSINE`` alike.

A pair found by either is listed.  Only pairs across splits count (train-val, train-test,
val-test); identical images inside one split are the validation report's "duplicates".

    rep = find_leaks(images, splits, refs, feature_fn=frozen_feature_fn(library))
    rep.leaks[0].a_ref, rep.leaks[0].b_ref
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

#: perceptual hashes at most this many bits apart (of 64) make a candidate pair (measured: docs/results.md)
MAX_HAMMING = 6
#: a candidate pair is the same image when its grey thumbnails (the matching crop) are this alike (SSIM)
MIN_SSIM = 0.955
#: frozen-feature cosine similarity from which two images are the same image (measured: docs/results.md)
MIN_COSINE = 0.98
THUMB = 32
FEATURE_MODEL = "mobilenet_v2"
FEATURE_SIZE = 64
SPLIT_PAIRS = (("test", "train"), ("val", "train"), ("test", "val"))


@dataclass
class Leak:
    a_ref: str  # the val/test image
    a_split: str
    b_ref: str  # its twin on the other side
    b_split: str
    hamming: int
    cosine: float | None
    found_by: str  # "hash", "features" or "hash and features"


@dataclass
class LeakReport:
    leaks: list[Leak] = field(default_factory=list)
    checked: dict = field(default_factory=dict)  # images per split
    features: bool = False
    max_hamming: int = MAX_HAMMING
    min_cosine: float = MIN_COSINE
    note: str = ""

    @property
    def count(self) -> int:
        """Val/test images with a twin on another side."""
        return len({(lk.a_split, lk.a_ref) for lk in self.leaks})

    def to_dict(self, max_pairs: int | None = 2000) -> dict:
        """JSON-able; at most ``max_pairs`` pairs listed (``pairs_total`` counts them all; None: every pair)."""
        return {"count": self.count, "pairs": [asdict(lk) for lk in self.leaks[:max_pairs]],
                "pairs_total": len(self.leaks), "checked": self.checked,
                "features": self.features, "max_hamming": self.max_hamming, "min_cosine": self.min_cosine,
                "method": self.method, "note": self.note}

    @classmethod
    def from_dict(cls, d: dict) -> "LeakReport":
        return cls([Leak(**p) for p in d.get("pairs", [])], d.get("checked", {}), bool(d.get("features")),
                   int(d.get("max_hamming", MAX_HAMMING)), float(d.get("min_cosine", MIN_COSINE)), d.get("note", ""))

    @property
    def method(self) -> str:
        m = (f"perceptual hash (pHash of the image and two central crops, at most {self.max_hamming} of 64 bits apart) "
         f"confirmed by thumbnail SSIM at least {MIN_SSIM}")
        if self.features:
            m += f" or frozen {FEATURE_MODEL} features at {FEATURE_SIZE} px (cosine at least {self.min_cosine:.2f})"
        return m

    def summary(self) -> str:
        n = sum(self.checked.values())
        if not self.leaks:
            return f"Leakage check: no image of one split found again in another ({n:,} images; {self.method})."
        eg = self.leaks[0]
        return (f"Leakage: {self.count:,} {eg.a_split}/val image(s) have a twin in another split "
                f"({len(self.leaks):,} pairs), e.g. {eg.a_ref} ({eg.a_split}) = {eg.b_ref} ({eg.b_split}). "
                f"Figures on those images overstate the model. Method: {self.method}.")


#: central crops hashed besides the whole image: a copy cropped by a few per cent matches one of them
CROPS = (1.0, 0.92, 0.84)


def _grey_views(a: np.ndarray, crops: tuple, size: int, resample) -> np.ndarray:
    """(len(crops), size, size) uint8: the image in grey and its central crops (``crops``:
    shares of the side kept), each resized to ``size`` x ``size`` with ``resample``."""
    from PIL import Image

    im = Image.fromarray(np.asarray(a, dtype=np.uint8)).convert("L")
    w, h = im.size
    out = np.empty((len(crops), size, size), dtype=np.uint8)
    for k, c in enumerate(crops):
        dx, dy = round(w * (1 - c) / 2), round(h * (1 - c) / 2)
        out[k] = np.asarray((im.crop((dx, dy, w - dx, h - dy)) if c < 1.0 else im).resize((size, size), resample))
    return out


def perceptual_hashes(images, crops: tuple = CROPS, batch: int = 1024) -> np.ndarray:
    """(N, len(crops)) uint64: the 64-bit pHash of each H x W x 3 uint8 image (grey) and of
    its central crops (``crops``: shares of the side kept).  The bits of ``imagehash.phash``
    (grey, Lanczos to 32 x 32, 2-D DCT, the 8 x 8 lowest frequencies above their median),
    with the DCTs and medians of a batch of images done at once."""
    from PIL import Image
    from scipy.fftpack import dct

    n = len(images)
    out = np.zeros((n, len(crops)), dtype=np.uint64)
    for s in range(0, n, batch):
        chunk = images[s:s + batch]
        px = np.stack([_grey_views(a, crops, 32, Image.Resampling.LANCZOS) for a in chunk])
        low = dct(dct(px, axis=2), axis=3)[..., :8, :8].reshape(len(chunk), len(crops), 64)
        bits = low > np.median(low, axis=2, keepdims=True)
        out[s:s + len(chunk)] = np.packbits(bits, axis=2).view(">u8")[..., 0]
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len a, len b) bit distances between two sets of hashes: (N,) 64-bit hashes, or (N, C)
    hashes of crops, where the distance is the smallest between a whole image and any crop
    of the other (a copy may be cropped, or the original may be)."""
    if a.ndim == 1:
        return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.int64)
    d = np.bitwise_count(a[:, None, 0] ^ b[None, :, 0]).astype(np.int64)
    for k in range(1, a.shape[1]):
        d = np.minimum(d, np.bitwise_count(a[:, None, 0] ^ b[None, :, k]))
        d = np.minimum(d, np.bitwise_count(a[:, None, k] ^ b[None, :, 0]))
    return d


def frozen_feature_fn(library=None, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """A function: uint8 images (N, S, S, 3) -> L2-normalised pooled features of the ImageNet
    MobileNetV2 at 64 px.  Raises the library's error when its weights are not installed."""
    import torch

    from .diagnostics import image_features
    from ..models import ModelLibrary

    lib = library or ModelLibrary()
    net, _ = lib.build(FEATURE_MODEL, 1, weights="imagenet")
    backbone = net.backbone.to(device).eval()
    pre = lib.arch(FEATURE_MODEL).preprocessing

    @torch.no_grad()
    def features(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        if x.shape[-1] != FEATURE_SIZE:
            x = torch.nn.functional.interpolate(x, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear",
                                                antialias=True, align_corners=False)
        small = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        f = image_features(backbone, small, np.arange(len(small)), pre.mean, pre.std, device)
        return torch.nn.functional.normalize(f, dim=1).numpy()

    return features


MAX_TWINS = 5  # twins listed per val/test image (the closest first)


def thumbnails(a: np.ndarray, crops: tuple = CROPS) -> np.ndarray:
    """(len(crops), THUMB, THUMB) uint8: the grey thumbnails of an image and of its central crops."""
    from PIL import Image

    return _grey_views(a, crops, THUMB, Image.Resampling.BILINEAR)


#: pairs whose SSIM is computed at once (about 10 arrays of SSIM_BATCH x 32 x 32 float64: 80 MB)
SSIM_BATCH = 1024
#: (crop of a, crop of b) compared: the whole images, and each whole image against the other's crops
CROP_PAIRS = ((0, 0), *((i, j) for k in range(1, len(CROPS)) for i, j in ((0, k), (k, 0))))


def ssim_batch(x: np.ndarray, y: np.ndarray, win_size: int = 7) -> np.ndarray:
    """Mean SSIM of each pair of (P, H, W) images in [0, 1]: scikit-image's
    ``structural_similarity(x[i], y[i], data_range=1.0)`` (uniform 7 x 7 window, sample
    covariance, K1 = 0.01, K2 = 0.03, the border of half a window left out) for all pairs at
    once."""
    from scipy.ndimage import uniform_filter

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    size = (1, win_size, win_size)
    return _ssim(x, y, uniform_filter(x, size=size), uniform_filter(y, size=size), uniform_filter(x * x, size=size),
                 uniform_filter(y * y, size=size), win_size)


def _ssim(x, y, ux, uy, uxx, uyy, win_size: int = 7) -> np.ndarray:
    """:func:`ssim_batch` from each image's local means of x and x² (computed once per image)."""
    from scipy.ndimage import uniform_filter

    uxy = uniform_filter(x * y, size=(1, win_size, win_size))
    cov_norm = win_size ** 2 / (win_size ** 2 - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def thumbnail_similarities(thumbs: np.ndarray, a, b) -> np.ndarray:
    """(P,) the SSIM of the P pairs (a[k], b[k]) of images whose :func:`thumbnails` are
    ``thumbs`` (M, crops, T, T): the best over the whole images and each whole image against
    the other's central crops.  The local means of each image are computed once."""
    from scipy.ndimage import uniform_filter

    t = np.asarray(thumbs, dtype=np.float64) / 255.0
    u, uu = uniform_filter(t, size=(1, 1, 7, 7)), uniform_filter(t * t, size=(1, 1, 7, 7))
    a, b = np.asarray(a), np.asarray(b)
    best = np.full(len(a), -1.0)
    for i, j in CROP_PAIRS:
        if i < t.shape[1] and j < t.shape[1]:
            best = np.maximum(best, _ssim(t[a, i], t[b, j], u[a, i], u[b, j], uu[a, i], uu[b, j]))
    return best


def thumbnail_similarity(a: np.ndarray, b: np.ndarray, crops: tuple = CROPS) -> float:
    """SSIM of two images' grey 32 x 32 thumbnails, the best over the whole image against the
    other's central crops (and the other way round)."""
    return float(thumbnail_similarities(np.stack([thumbnails(a, crops), thumbnails(b, crops)]), [0], [1])[0])


def _pairs(qh, qf, rh, rf, max_hamming: int, min_cosine: float):
    """Per query chunk: the nearest reference by hash (bits) and by features (cosine), and every
    reference within the thresholds (index, bits, cosine), closest first."""
    n = len(qh)
    chunk = max(1, 4_000_000 // max(1, len(rh)))  # about 32 MB of distances at a time
    near_bits, near_cos = np.zeros(n, np.int64), np.full(n, np.nan)
    twins: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]
    for s in range(0, n, chunk):
        d = hamming(qh[s:s + chunk], rh)
        near_bits[s:s + chunk] = d.min(1)
        c = qf[s:s + chunk] @ rf.T if qf is not None else None
        if c is not None:
            near_cos[s:s + chunk] = c.max(1)
        hit = d <= max_hamming
        if c is not None:
            hit |= c >= min_cosine
        for qi, ri in zip(*np.nonzero(hit)):
            twins[s + qi].append((int(ri), int(d[qi, ri]), float(c[qi, ri]) if c is not None else float("nan")))
    for t in twins:
        t.sort(key=lambda x: (x[1], -x[2] if x[2] == x[2] else 0.0))
        del t[4 * MAX_TWINS:]  # candidates; find_leaks confirms them
    return near_bits, near_cos, twins


def nearest_across_splits(hashes: np.ndarray, feats: np.ndarray | None, splits, max_hamming: int = MAX_HAMMING,
                          min_cosine: float = MIN_COSINE) -> dict:
    """{(query split, reference split): (query indices, nearest bits, nearest cosine, twins)}
    with the twins' indices into the whole table."""
    splits = np.asarray(splits, dtype=object)
    out = {}
    for qs, rs in SPLIT_PAIRS:
        q, r = np.flatnonzero(splits == qs), np.flatnonzero(splits == rs)
        if not len(q) or not len(r):
            continue
        bits, cos, twins = _pairs(hashes[q], None if feats is None else feats[q], hashes[r],
                                  None if feats is None else feats[r], max_hamming, min_cosine)
        out[(qs, rs)] = (q, bits, cos, [[(int(r[j]), b, c) for j, b, c in t] for t in twins])
    return out


def find_leaks(images, splits, refs: list[str], feature_fn: Callable | None = None, *,
               max_hamming: int = MAX_HAMMING, min_cosine: float = MIN_COSINE, min_ssim: float = MIN_SSIM,
               hashes: np.ndarray | None = None, feats: np.ndarray | None = None, note: str = "") -> LeakReport:
    """The cross-split twins among ``images`` (uint8, N x S x S x 3, or a list of H x W x 3)."""
    splits = np.asarray(splits, dtype=object)
    hashes = perceptual_hashes(images) if hashes is None else hashes
    if feats is None and feature_fn is not None and len(images):
        feats = np.concatenate([feature_fn(np.asarray(images[s:s + 256])) for s in range(0, len(images), 256)])
    rep = LeakReport(checked={s: int((splits == s).sum()) for s in ("train", "val", "test")}, features=feats is not None,
                     max_hamming=max_hamming, min_cosine=min_cosine, note=note)
    found = [(qs, rs, i, j, b, c) for (qs, rs), (q, _bits, _cos, twins)
             in nearest_across_splits(hashes, feats, splits, max_hamming, min_cosine).items()
             for i, tw in zip(q, twins) for j, b, c in tw]
    # the hash candidates are confirmed by their thumbnails' SSIM, compared in batches (the
    # thumbnails of a batch's images made once; memory does not grow with the data)
    by_hash = [k for k, f in enumerate(found) if f[4] <= max_hamming]
    ssim = np.full(len(found), -1.0)
    for s in range(0, len(by_hash), SSIM_BATCH):
        ks = by_hash[s:s + SSIM_BATCH]
        pos = {i: n for n, i in enumerate(sorted({x for k in ks for x in found[k][2:4]}))}
        thumbs = np.stack([thumbnails(images[i]) for i in pos])
        ssim[ks] = thumbnail_similarities(thumbs, [pos[found[k][2]] for k in ks], [pos[found[k][3]] for k in ks])
    for (qs, rs, i, j, b, c), sim in zip(found, ssim):
        feat_hit = feats is not None and c >= min_cosine
        hash_hit = b <= max_hamming and sim >= min_ssim
        if not (hash_hit or feat_hit):
            continue
        how = "hash and features" if hash_hit and feat_hit else ("hash" if hash_hit else "features")
        rep.leaks.append(Leak(refs[i], qs, refs[j], rs, int(b), None if feats is None else float(c), how))
    return rep


def check_table_leaks(table, assignments: list[str], images: np.ndarray | None = None, valid: np.ndarray | None = None,
                      library=None, features: bool = True, device: str = "cpu", progress=None,
                      should_stop=None) -> LeakReport:
    """The leakage check of a data table and its split: its images from the image cache
    (decoded once; ``images``/``valid`` when the caller has them), frozen features where the
    ImageNet MobileNetV2 weights are installed (else the hash alone, and the note says so)."""
    if images is None:
        from ..data import build_image_cache
        from ..settings import cache_dir

        images, valid = build_image_cache(table, FEATURE_SIZE, cache_dir(), progress=progress, should_stop=should_stop)
    ok = np.ones(len(table), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    idx = np.flatnonzero(ok)
    fn, note = None, ""
    if features:
        try:
            fn = frozen_feature_fn(library, device)
        except Exception as e:  # noqa: BLE001 - no weights here: the hash still finds copies
            note = f"frozen features unavailable ({e}); perceptual hash only"
    refs = [table.items[i].ref for i in idx]
    if len(idx) == len(images):  # every image usable: the memory-mapped cache as it is, not a copy in memory
        sub = images
    else:
        sub = np.asarray(images)[idx] if not isinstance(images, list) else [images[i] for i in idx]
    return find_leaks(sub, np.asarray(assignments, dtype=object)[idx], refs, fn, note=note)
