"""Feature caching: a frozen backbone runs once per image and preprocessing.

The cache key holds everything that changes the features: architecture, the weights'
identity, image size and normalisation, the data's fingerprint, the split's items and,
for augmented views, the augmentation settings.  Change any of them and the features are
computed anew.

The features are written batch by batch into a ``.npy`` file and read back memory-mapped:
100,000 images of 1,280 features are 512 MB on disk that the system pages in as the head
trains, not 512 MB more that the process holds (bench/scale.py).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from ..io import atomic_path, stable_hash
from .base import Callback


def cache_key(ctx, split: str, view: int = 0, extra=None) -> str:
    """``extra``: anything else that changes the features (a pooling grid ...), JSON-able."""
    d = ctx.data
    info = ctx.model_info
    weights_id = info.get("weights_sha256") or f"{info.get('weights_path')}"
    aug = ctx.project.augmentation.model_dump() if view else None
    idx = np.asarray(d.indices[split])
    parts = ["features-v1", ctx.project.model.architecture, weights_id, d.size, d.mean, d.std,
             d.fingerprint, stable_hash(idx.tolist()), view, aug]
    return stable_hash(*parts, *(() if extra is None else (extra,)))


def inference_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a frozen network made for fast forward passes: every BatchNorm that follows
    a convolution folded into it (torch.fx; the same outputs up to float rounding) and the
    weights in channels-last order. About 3.5x faster for MobileNetV2 on the CPU
    (bench/frozen_cache.py). A network that torch.fx cannot trace, or one that works through
    forward hooks (a tracer would drop them), is only reordered."""
    m = copy.deepcopy(module).eval()
    hooked = any(x._forward_hooks or x._forward_pre_hooks for x in m.modules())
    if not hooked:
        try:
            from torch.fx.experimental.optimization import fuse

            m = fuse(m)
        except Exception:  # noqa: BLE001 - control flow fx cannot trace: run it unfused
            pass
    return m.to(memory_format=torch.channels_last)


def _checked_copy(backbone: torch.nn.Module, x: torch.Tensor, ctx) -> torch.nn.Module:
    """The inference copy when it gives the backbone's own outputs on a few images of the
    first batch, else the backbone itself: features that go into the cache must be right."""
    fast = inference_copy(backbone)
    probe = x[:4]
    try:
        with ctx.autocast():
            a, b = backbone(probe).float(), fast(probe).float()
        if a.shape == b.shape and torch.allclose(a, b, rtol=1e-2, atol=1e-3 * (1.0 + float(a.abs().max()))):
            return fast
    except Exception:  # noqa: BLE001 - the copy cannot run what the network runs
        pass
    return backbone


@torch.no_grad()
def extract_features(backbone: torch.nn.Module, loader, ctx, task: str,
                     out: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's features of every batch of ``loader`` and the labels, in order.  With
    ``out``, the features are written into that ``.npy`` file as they come (memory-mapped:
    the process never holds them all) and returned memory-mapped."""
    backbone.eval()
    net = None
    n = len(loader.dataset)
    feats: np.ndarray | None = None
    labels = np.zeros(n, dtype=np.int64)
    pos, total = 0, len(loader)
    for i, (x, y) in enumerate(loader):
        x = ctx.to_device(x)
        if net is None:
            net = _checked_copy(backbone, x, ctx)
        with ctx.autocast():
            f = net(x).float().cpu().numpy()
        if feats is None:
            shape = (n, *f.shape[1:])
            feats = (np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape) if out is not None
                     else np.empty(shape, dtype=np.float32))
        feats[pos:pos + len(f)] = f
        labels[pos:pos + len(f)] = y.cpu().numpy()
        pos += len(f)
        ctx.progress(task, i + 1, total)
    if feats is None:
        raise ValueError(f"{task}: no images to extract features from")
    if isinstance(feats, np.memmap):
        feats.flush()
    return torch.from_numpy(feats[:pos]), torch.from_numpy(labels[:pos])


def _load_cached(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            labels = z["labels"]
            name = z["features_file"].item()
        feats = np.load(path.parent / name, mmap_mode="c", allow_pickle=False)
        if len(feats) != len(labels):
            raise ValueError("features and labels differ in length")
        return torch.from_numpy(feats), torch.from_numpy(labels.astype(np.int64))
    except Exception:  # noqa: BLE001 - a damaged or partial cache entry is recomputed
        return None


def cached_features(ctx, backbone: torch.nn.Module, split: str, view: int = 0,
                    batch_size: int = 64, extra=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``split`` from the frozen ``backbone``: from the disk cache when the
    same model, weights, preprocessing and data were seen before, else computed and stored.
    ``view`` 0 is the plain (validation-style) preprocessing; views 1.. are augmented.
    ``extra`` goes into the cache key (settings of ``backbone`` that change its output)."""
    key = cache_key(ctx, split, view, extra)
    folder = Path(ctx.cache_dir) / "features"
    index = folder / f"{key}.npz"  # the labels, and the name of the features' .npy file (written first)
    if index.exists():
        cached = _load_cached(index)
        if cached is not None:
            return cached
        index.unlink(missing_ok=True)
    if view:  # augmented view: seeded so that the cache is repeatable
        torch.manual_seed(ctx.training.seed * 131 + view)
    ds = ctx.data.dataset(split, train=bool(view))
    loader = ctx.loader(split, train=False, dataset=ds, batch_size=batch_size, shuffle=False)
    what = f"Extracting features ({split}{f', view {view}' if view else ''})"
    with atomic_path(folder / f"{key}.features.npy", suffix=".npy") as tmp:
        f, y = extract_features(backbone, loader, ctx, what, out=tmp)
        del f  # the file is closed before it is moved into place (Windows cannot move an open one)
    with atomic_path(index, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, labels=y.numpy(), features_file=np.array(f"{key}.features.npy"))
    cached = _load_cached(index)
    if cached is None:
        raise OSError(f"the feature cache {index} could not be read back just after it was written")
    return cached


# --- as a callback any technique can list ---------------------------------------------------------
class FeatureCache(Callback):
    """Train a head on cached features of a frozen backbone: the backbone runs once per image
    (and per augmented view) and the features are stored; each epoch then trains the head
    on them, and evaluation reads them too.  ``views`` augmented versions of each training
    image are cached as well, one used per epoch (0: the plain images only).

    Predictions of such a run are of single images (no test-time flip), so that they agree
    with the figures measured on the cached features."""

    def __init__(self, views: int = 0):
        self.views = int(views)
        self.features: dict = {}
        self.augmented: list = []

    def on_build(self, ctx, model) -> None:
        model.flip_average = False  # evaluated on the cached features of the plain images

    def setup(self, ctx) -> None:
        backbone = ctx.model.backbone
        self.features = {s: cached_features(ctx, backbone, s) for s in ("train", "val", "test") if ctx.data.has_split(s)}
        self.augmented = [cached_features(ctx, backbone, "train", v) for v in range(1, self.views + 1)]

    def _loader(self, ctx, feats, train: bool, epoch: int = 0):
        return ctx.loader("train", train=train, epoch=epoch, dataset=torch.utils.data.TensorDataset(*feats))

    def train_batches(self, ctx, epoch: int):
        views = [self.features["train"], *self.augmented]
        return self._loader(ctx, views[epoch % len(views)], train=True, epoch=epoch)

    def eval_batches(self, ctx, split: str):
        return self._loader(ctx, self.features[split], train=False)

    def forward(self, ctx, x):
        return ctx.model.head(x) if x.dim() == 2 else None  # a batch of features, not of images
