"""Domain-shift diagnostics: how different do two image sets look to a network?

The measure is the maximum mean discrepancy (Gretton et al., "A Kernel Two-Sample Test",
JMLR 2012) between the two sets' features: the distance between their mean embeddings in
the reproducing-kernel Hilbert space of an RBF kernel.  It is 0 when both sets come from
one distribution and grows with the shift.

- :func:`mmd_test`: unbiased MMD^2 with a median-heuristic bandwidth (or a family of
  bandwidths around it), and a permutation-test p-value.
- :func:`embed_2d`: a 2-D picture of both sets (PCA, or t-SNE from scikit-learn).
- :func:`measure_shift`: the whole diagnostic from two data sources and a model of the
  catalog (what ``tlstudio shift`` and the window call; Qt-free, safe in a worker thread).
- :func:`feature_shift`: the same on features a technique already has (DANN measures
  before and after adaptation with it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from ..errors import DataError, RunStopped

Progress = Callable[[str, int, int], None] | None
ShouldStop = Callable[[], bool] | None

#: multipliers of the median distance used by the multi-bandwidth kernel
MULTI_BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


# --- kernel two-sample test -------------------------------------------------------------------
def _as_tensor(a) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a)
    return t.detach().to("cpu", torch.float64).reshape(len(t), -1)


def pairwise_sq_distances(z: torch.Tensor) -> torch.Tensor:
    sq = (z * z).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * z @ z.T).clamp_min_(0.0)


def median_bandwidth(d2: torch.Tensor) -> float:
    """The median heuristic: sigma = median distance between distinct points of the pooled sample."""
    n = d2.shape[0]
    off = d2[~torch.eye(n, dtype=torch.bool)]
    med = float(off.sqrt().median()) if off.numel() else 1.0
    return med if med > 0 else 1.0


def rbf_kernel_matrix(d2: torch.Tensor, bandwidths: list[float]) -> torch.Tensor:
    """Mean over ``bandwidths`` of exp(-d^2 / (2 sigma^2))."""
    k = torch.zeros_like(d2)
    for s in bandwidths:
        k += torch.exp(-d2 / (2.0 * s * s))
    return k / len(bandwidths)


def _mmd2_from_masks(k: torch.Tensor, a: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Unbiased MMD^2 for every row of ``a`` (P x N, 1 = the point is in X, 0 = in Y)."""
    b = 1.0 - a
    ka = a @ k  # P x N
    kb = b @ k
    diag = torch.diagonal(k)
    sxx = (ka * a).sum(1) - a @ diag
    syy = (kb * b).sum(1) - b @ diag
    sxy = (ka * b).sum(1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd2_unbiased(x, y, bandwidths: list[float] | None = None) -> float:
    """The unbiased estimate of MMD^2 between samples ``x`` (n x d) and ``y`` (m x d) with an
    RBF kernel (median-heuristic bandwidth unless ``bandwidths`` are given)."""
    x, y = _as_tensor(x), _as_tensor(y)
    z = torch.cat([x, y])
    d2 = pairwise_sq_distances(z)
    bw = bandwidths or [median_bandwidth(d2)]
    a = torch.zeros(1, len(z), dtype=z.dtype)
    a[0, : len(x)] = 1
    return float(_mmd2_from_masks(rbf_kernel_matrix(d2, bw), a, len(x), len(y))[0])


@dataclass
class MMDResult:
    """The outcome of a kernel two-sample test between a source and a target sample."""

    mmd2: float
    p_value: float
    permutations: int
    bandwidths: list[float]
    kernel: str  # "rbf (median heuristic)" or "rbf, 5 bandwidths around the median"
    n_source: int
    n_target: int
    alpha: float = 0.05

    @property
    def shifted(self) -> bool:
        return self.p_value < self.alpha

    def explanation(self, what: str = "features") -> str:
        """The result in plain words, for the expert."""
        p = f"p = {self.p_value:.3g}" if self.p_value >= 1e-3 else f"p < {1 / (self.permutations + 1):.1g}"
        head = (f"MMD² = {self.mmd2:.4f} between {self.n_source} source and {self.n_target} target images "
                f"({p}, {self.permutations} permutations, {self.kernel}). ")
        if self.shifted:
            body = (f"The two sets differ: their {what} are further apart than random re-divisions of the pooled "
                    "images ever made them, so this is a real domain shift, not chance. A model trained on the "
                    "source alone will probably lose accuracy on the target; domain adaptation (DANN) or a little "
                    "labelled target data should help.")
        else:
            body = (f"No evidence of a shift: at this sample size the two sets' {what} are as alike as two random "
                    "halves of one data set. A model trained on the source should carry over to the target "
                    "(check with a few labelled target images).")
        return head + body + (" MMD² is 0 when both sets come from one distribution and grows with the shift; "
                              "the p-value is the share of random re-divisions that give an MMD² at least as large.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shifted"] = self.shifted
        return d


def mmd_test(x, y, permutations: int = 500, multi_bandwidth: bool = False, seed: int = 0,
             alpha: float = 0.05, chunk: int = 64) -> MMDResult:
    """Unbiased MMD^2 between ``x`` and ``y`` (arrays or tensors, one row per item) and its
    permutation-test p-value, ``(1 + #{permuted MMD^2 >= observed}) / (1 + permutations)``.

    The kernel is RBF with the median heuristic bandwidth (median distance of the pooled
    sample), or with ``multi_bandwidth`` the mean of RBF kernels at
    :data:`MULTI_BANDWIDTH_FACTORS` times that median (more power when the shift lives at
    another scale).  The kernel matrix is computed once; permutations reuse it.
    """
    x, y = _as_tensor(x), _as_tensor(y)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise DataError(f"the MMD test needs at least two items on each side (got {n} source, {m} target)")
    z = torch.cat([x, y])
    d2 = pairwise_sq_distances(z)
    med = median_bandwidth(d2)
    bw = [med * f for f in MULTI_BANDWIDTH_FACTORS] if multi_bandwidth else [med]
    k = rbf_kernel_matrix(d2, bw)
    a0 = torch.zeros(1, n + m, dtype=k.dtype)
    a0[0, :n] = 1
    observed = float(_mmd2_from_masks(k, a0, n, m)[0])
    g = torch.Generator().manual_seed(int(seed))
    exceed = 0
    done = 0
    while done < permutations:
        p = min(chunk, permutations - done)
        order = torch.argsort(torch.rand(p, n + m, generator=g), dim=1)
        a = (order < n).to(k.dtype)  # a random n-subset of the pooled sample per row
        exceed += int((_mmd2_from_masks(k, a, n, m) >= observed - 1e-12).sum())
        done += p
    kernel = f"rbf, {len(bw)} bandwidths around the median" if multi_bandwidth else "rbf (median heuristic)"
    return MMDResult(observed, (1 + exceed) / (1 + permutations), permutations, [float(b) for b in bw], kernel,
                     n, m, alpha)


def embed_2d(x, y, method: Literal["pca", "tsne"] = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the pooled sample (source rows first): PCA of the standardised
    features, or t-SNE (scikit-learn, PCA-initialised)."""
    from threadpoolctl import threadpool_limits

    z = torch.cat([_as_tensor(x), _as_tensor(y)]).numpy()
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    # one native thread: a few hundred points gain nothing from more, and OpenMP threads
    # spinning on a busy machine (or beside a training run) slow t-SNE down many times
    with threadpool_limits(1):
        return _embed(z, method, seed)


def _embed(z: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(z).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(max(2.0, min(30.0, (len(z) - 1) / 3.0)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z).astype(np.float32)
    raise ValueError(f"unknown embedding {method!r} (known: pca, tsne)")


@dataclass
class ShiftReport:
    """The diagnostic as the window shows it: the number, the words, the picture."""

    mmd: MMDResult
    embedding: np.ndarray  # (n_source + n_target, 2), source rows first
    domains: np.ndarray  # 0 = source, 1 = target, per embedding row
    labels: list[str | None] = field(default_factory=list)  # class per row (None = unlabelled)
    model: str = ""
    weights: str = ""
    image_size: int = 0
    embedding_method: str = "pca"
    source: str = ""
    target: str = ""

    @property
    def explanation(self) -> str:
        return self.mmd.explanation(f"{self.model} features" if self.model else "features")

    def to_dict(self, with_embedding: bool = True) -> dict:
        d = {"source": self.source, "target": self.target, "model": self.model, "weights": self.weights,
             "image_size": self.image_size, **self.mmd.to_dict(), "explanation": self.explanation}
        if with_embedding:
            d["embedding"] = {"method": self.embedding_method, "points": np.round(self.embedding, 4).tolist(),
                              "domains": self.domains.astype(int).tolist(), "labels": list(self.labels)}
        return d


def feature_shift(source_features, target_features, permutations: int = 500, multi_bandwidth: bool = False,
                  embedding: Literal["pca", "tsne", "none"] = "pca", seed: int = 0, max_items: int | None = None,
                  **info) -> ShiftReport:
    """MMD test and embedding of two feature matrices (at most ``max_items`` rows of each,
    drawn at random with ``seed``)."""
    xs, xt = _as_tensor(source_features), _as_tensor(target_features)
    rng = np.random.default_rng(seed)
    if max_items:
        if len(xs) > max_items:
            xs = xs[np.sort(rng.choice(len(xs), max_items, replace=False))]
        if len(xt) > max_items:
            xt = xt[np.sort(rng.choice(len(xt), max_items, replace=False))]
    res = mmd_test(xs, xt, permutations, multi_bandwidth, seed)
    emb = embed_2d(xs, xt, embedding, seed) if embedding != "none" else np.zeros((len(xs) + len(xt), 2), np.float32)
    domains = np.r_[np.zeros(len(xs), np.int8), np.ones(len(xt), np.int8)]
    return ShiftReport(res, emb, domains, embedding_method=embedding, **info)


# --- from images ------------------------------------------------------------------------------
@torch.no_grad()
def image_features(backbone: torch.nn.Module, images: np.ndarray, indices, mean, std, device="cpu",
                   batch_size: int = 64, progress: Progress = None, should_stop: ShouldStop = None,
                   task: str = "Extracting features") -> torch.Tensor:
    """Pooled features (N, D) of cached uint8 images ``images[indices]`` (N, S, S, 3),
    normalised with ``mean``/``std`` exactly as in training (no augmentation)."""
    backbone.eval()
    device = torch.device(device)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    idx = np.asarray(indices, dtype=np.int64)
    out = []
    for start in range(0, len(idx), batch_size):
        if should_stop and should_stop():
            raise RunStopped()
        chunk = np.asarray(images[idx[start:start + batch_size]], dtype=np.uint8)
        x = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2).float().div_(255)
        out.append(backbone((x - m) / s).float().cpu())
        if progress:
            progress(task, min(start + batch_size, len(idx)), len(idx))
    return torch.cat(out) if out else torch.zeros(0, 0)


def _sample(valid: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    usable = np.flatnonzero(valid)
    if len(usable) > k:
        usable = np.sort(rng.choice(usable, k, replace=False))
    return usable


def measure_shift(source: str | Path, target: str | Path, model: str = "mobilenet_v2", *, weights: str = "imagenet",
                  image_size: int = 64, source_format: str = "auto", target_format: str = "auto",
                  max_images: int = 500, permutations: int = 500, multi_bandwidth: bool = False,
                  embedding: Literal["pca", "tsne", "none"] = "pca", seed: int = 0, device: str = "cpu",
                  plugins=None, progress: Progress = None, should_stop: ShouldStop = None) -> ShiftReport:
    """How far apart two image sets are in the eyes of ``model`` (a catalog architecture
    with its offline ``weights``): MMD^2, permutation p-value and a 2-D embedding.

    Both sources are read and validated like training data (labels optional), decoded
    once into the image cache at ``image_size`` px, and at most ``max_images`` of each
    (drawn with ``seed``) pass through the backbone.  ``progress(task, done, total)`` and
    ``should_stop()`` let a window show progress and cancel.
    """
    from ..data import build_image_cache, read_data
    from ..models import ModelLibrary
    from ..settings import cache_dir

    readers = (plugins.readers() if plugins else None) or None
    lib = ModelLibrary(sources=(plugins.model_sources() if plugins else None) or None,
                       extra_architectures=(plugins.architectures() if plugins else None) or None)
    arch = lib.arch(model)
    pre = arch.preprocessing
    size = pre.image_size if pre.fixed_size else int(image_size)
    rng = np.random.default_rng(seed)
    picked = []
    for name, path, fmt in (("source", source, source_format), ("target", target, target_format)):
        table = read_data(path, fmt, {}, readers, task="image-classification")
        if not len(table):
            raise DataError(f"{path}: no usable images for the {name} side")
        images, valid = build_image_cache(table, size, cache_dir(),
                                          progress=(lambda d, t, n=name: progress(f"Decoding {n} images", d, t))
                                          if progress else None, should_stop=should_stop)
        idx = _sample(valid, max_images, rng)
        if len(idx) < 2:
            raise DataError(f"{path}: fewer than two decodable images for the {name} side")
        labels = [table.items[i].label for i in idx]
        picked.append((table, images, idx, labels))
    net, _ = lib.build(model, 1, weights=weights)
    net = net.to(device)
    feats = [image_features(net.backbone, images, idx, pre.mean, pre.std, device, progress=progress,
                            should_stop=should_stop, task=f"Extracting {side} features")
             for side, (_, images, idx, _) in zip(("source", "target"), picked)]
    rep = feature_shift(feats[0], feats[1], permutations, multi_bandwidth, embedding, seed,
                        model=model, weights=weights, image_size=size, source=str(source), target=str(target))
    rep.labels = picked[0][3] + picked[1][3]
    return rep


def run_shift(ctx, backbone: torch.nn.Module, max_images: int = 300, permutations: int = 500,
              multi_bandwidth: bool = False, embedding: Literal["pca", "tsne", "none"] = "pca",
              seed: int = 0) -> ShiftReport:
    """The shift between a run's source and target images as ``backbone`` sees them now
    (before adaptation: the pretrained network; after: the adapted one).  Held-out images
    where there are some: the source test (else validation, else training) split and the
    target's test part (else its adaptation part)."""
    data, target = ctx.data, ctx.data.target
    if target is None:
        raise DataError("this run has no target domain")
    s_split = next((s for s in ("test", "val", "train") if data.has_split(s)), "train")
    t_part = "test" if target.has_labels else "adapt"
    rng = np.random.default_rng(seed)

    def pick(idx):
        idx = np.asarray(idx)
        return np.sort(rng.choice(idx, max_images, replace=False)) if len(idx) > max_images else idx

    si, ti = pick(data.indices[s_split]), pick(target.indices[t_part])
    kw = dict(device=ctx.device, progress=ctx.progress, should_stop=lambda: ctx.control.stopped)
    was_training = backbone.training
    fs = image_features(backbone, data.images, si, data.mean, data.std, task="Features for the shift measure (source)", **kw)
    ft = image_features(backbone, target.images, ti, target.mean, target.std,
                        task="Features for the shift measure (target)", **kw)
    if was_training:
        backbone.train()
    rep = feature_shift(fs, ft, permutations, multi_bandwidth, embedding, seed, model=ctx.project.model.architecture,
                        image_size=data.size, source=f"{data.table.source} ({s_split})",
                        target=f"{target.table.source} ({t_part})")
    names = data.class_names
    lab_s = [names[k] for k in data._labels[si]]
    lab_t = [names[k] if k >= 0 else None for k in target._labels[ti]]
    rep.labels = lab_s + lab_t
    return rep
