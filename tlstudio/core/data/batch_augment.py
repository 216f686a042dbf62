"""Augmentation of whole uint8 batches on the device, with random parameters per image.

:func:`compile_transform` reads the transform that :func:`tlstudio.core.data.transforms.make_transforms`
built from the project's AugmentationConfig (so the presets, the flips and whatever decides
them are followed to the letter: there is one source of truth) and returns a
:class:`BatchAugment` that applies it to a (B, 3, H, W) uint8 batch already on the device:

- ``Resize``, ``ToDtype`` and ``Normalize`` are the same for every image: torchvision.transforms.v2
  applies them to the whole batch (the evaluation path is exactly the loader's);
- the random geometric ops (``RandomResizedCrop``, ``RandomAffine``, ``RandomRotation``,
  ``RandomHorizontalFlip``, ``RandomVerticalFlip``) become one 2 x 3 matrix per image and a
  single bilinear ``grid_sample`` warps the batch (outside the image: 0, as torchvision
  fills); torchvision resamples once per op, with nearest neighbours for rotations;
- ``ColorJitter`` with a factor per image: brightness, contrast and saturation as the blends
  torchvision's ``adjust_*`` make, hue as a shift in HSV; the order of the four is drawn per
  batch (torchvision draws it per image).

The parameters follow torchvision's distributions and are drawn with a ``torch.Generator`` on
the CPU, so the same seed gives the same batch on any device; the same code runs on CPU
tensors in the tests.  A transform with an op this module does not know is not compiled
(:class:`Unsupported`): the engine then keeps augmenting in the loader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


class Unsupported(ValueError):
    """The transform holds an op that cannot be applied per image on whole batches."""


@dataclass
class _Geo:
    kind: str  # crop, hflip, vflip, rotate, affine
    args: dict = field(default_factory=dict)


@dataclass
class BatchAugment:
    """What :func:`compile_transform` made of a v2.Compose; call it on uint8 batches."""

    resize: v2.Resize | None
    geometric: list[_Geo]
    jitter: dict | None  # {"brightness": (lo, hi) | None, ...}
    normalize: v2.Normalize | None
    out_dtype: torch.dtype = torch.float32

    @property
    def random(self) -> bool:
        return bool(self.geometric or self.jitter)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, 3, S, S) float, normalised; random parameters per image
        drawn from ``generator`` (a CPU generator)."""
        if x.dim() != 4 or x.dtype != torch.uint8:
            raise ValueError(f"expected a (B, C, H, W) uint8 batch, got {tuple(x.shape)} {x.dtype}")
        if self.resize is not None:
            x = self.resize(x)
        x = TF.to_dtype(x, self.out_dtype, scale=True)
        if self.geometric:
            x = self._warp(x, generator)
        if self.jitter:
            x = self._colour(x, generator)
        if self.normalize is not None:
            x = self.normalize(x)
        return x

    # --- geometry: one matrix per image, one resampling --------------------------------
    def _warp(self, x: torch.Tensor, g) -> torch.Tensor:
        B, _, H, W = x.shape
        if all(op.kind in ("hflip", "vflip") for op in self.geometric):  # exact, no resampling
            for op in self.geometric:
                flip = (torch.rand(B, generator=g, dtype=torch.float64) < op.args["p"]).to(x.device)
                dim = -1 if op.kind == "hflip" else -2
                x = torch.where(flip.view(B, 1, 1, 1), x.flip(dim), x)
            return x
        inv = torch.eye(3, dtype=torch.float64).repeat(B, 1, 1)  # output pixel -> input pixel (continuous)
        h, w = H, W
        for op in self.geometric:  # each op's inverse map, applied to the right
            m, (h, w) = _inverse(op, B, h, w, g)
            inv = inv @ m
        to_norm_in = torch.tensor([[2 / W, 0, -1], [0, 2 / H, -1], [0, 0, 1]], dtype=torch.float64)
        from_norm_out = torch.tensor([[w / 2, 0, w / 2], [0, h / 2, h / 2], [0, 0, 1]], dtype=torch.float64)
        theta = (to_norm_in @ inv @ from_norm_out)[:, :2].to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [B, x.shape[1], h, w], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # --- colour: a factor per image ----------------------------------------------------
    def _colour(self, x: torch.Tensor, g) -> torch.Tensor:
        B = x.shape[0]
        ops = [k for k in ("brightness", "contrast", "saturation", "hue") if self.jitter.get(k) is not None]
        order = torch.randperm(len(ops), generator=g).tolist()
        for k in (ops[i] for i in order):
            lo, hi = self.jitter[k]
            f = (lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)).to(x.device, x.dtype)
            f = f.view(B, 1, 1, 1)
            if k == "brightness":
                x = (x * f).clamp_(0, 1)
            elif k == "contrast":
                mean = TF.rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
                x = (x * f + mean * (1 - f)).clamp_(0, 1)
            elif k == "saturation":
                x = (x * f + TF.rgb_to_grayscale(x) * (1 - f)).clamp_(0, 1)
            else:
                x = _shift_hue(x, f)
        return x


def _uniform(g, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _about_centre(a: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The (B, 2, 2) linear maps ``a`` applied about the image centre, as (B, 3, 3)."""
    c = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    m = torch.eye(3, dtype=torch.float64).repeat(len(a), 1, 1)
    m[:, :2, :2] = a
    m[:, :2, 2] = c - (a @ c)
    return m


def _rotation(deg: torch.Tensor) -> torch.Tensor:
    r = torch.deg2rad(deg)
    cos, sin = torch.cos(r), torch.sin(r)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _inverse(op: _Geo, B: int, h: int, w: int, g) -> tuple[torch.Tensor, tuple[int, int]]:
    """The inverse map of ``op`` (its output pixel -> its input pixel) per image, and its output size."""
    m = torch.eye(3, dtype=torch.float64).repeat(B, 1, 1)
    if op.kind == "crop":
        i, j, ch, cw = _crop_params(g, B, h, w, op.args["scale"], op.args["ratio"])
        oh, ow = op.args["size"]
        m[:, 0, 0], m[:, 0, 2] = cw / ow, j
        m[:, 1, 1], m[:, 1, 2] = ch / oh, i
        return m, (oh, ow)
    if op.kind in ("hflip", "vflip"):
        flip = torch.rand(B, generator=g, dtype=torch.float64) < op.args["p"]
        axis, extent = (0, w) if op.kind == "hflip" else (1, h)
        m[flip, axis, axis], m[flip, axis, 2] = -1.0, float(extent)
        return m, (h, w)
    if op.kind == "rotate":
        lo, hi = op.args["degrees"]
        return _about_centre(_rotation(_uniform(g, B, lo, hi)), h, w), (h, w)
    if op.kind == "affine":  # inverse: in = c + R(-a) (out - c - t) / s (torchvision turns affine clockwise)
        lo, hi = op.args["degrees"]
        angle = _uniform(g, B, lo, hi)
        tx, ty = op.args["translate"] or (0.0, 0.0)
        t = torch.stack([torch.round(_uniform(g, B, -tx * w, tx * w)), torch.round(_uniform(g, B, -ty * h, ty * h))], -1)
        s0, s1 = op.args["scale"] or (1.0, 1.0)
        s = _uniform(g, B, s0, s1)
        m = _about_centre(_rotation(-angle) / s.view(B, 1, 1), h, w)
        shift = torch.eye(3, dtype=torch.float64).repeat(B, 1, 1)
        shift[:, :2, 2] = -t
        return m @ shift, (h, w)
    raise Unsupported(op.kind)


def _crop_params(g, B: int, H: int, W: int, scale, ratio, tries: int = 10):
    """RandomResizedCrop's parameters for B images at once (torchvision's draw: up to 10 tries
    of area and log-uniform aspect ratio, else the whole image clamped to the ratio range)."""
    area = H * W * _uniform(g, B * tries, scale[0], scale[1]).view(B, tries)
    log_r = _uniform(g, B * tries, math.log(ratio[0]), math.log(ratio[1])).view(B, tries)
    aspect = torch.exp(log_r)
    cw = torch.round(torch.sqrt(area * aspect))
    ch = torch.round(torch.sqrt(area / aspect))
    ok = (cw > 0) & (cw <= W) & (ch > 0) & (ch <= H)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((B,), -1))
    in_ratio = W / H
    if in_ratio < min(ratio):
        fw, fh = W, round(W / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(H * max(ratio)), H
    else:
        fw, fh = W, H
    pick = first.clamp(min=0).view(B, 1)
    cw = torch.where(first >= 0, cw.gather(1, pick).squeeze(1), torch.full((B,), float(fw), dtype=torch.float64))
    ch = torch.where(first >= 0, ch.gather(1, pick).squeeze(1), torch.full((B,), float(fh), dtype=torch.float64))
    u, v = torch.rand(B, generator=g, dtype=torch.float64), torch.rand(B, generator=g, dtype=torch.float64)
    i = torch.where(first >= 0, torch.floor(u * (H - ch + 1)), torch.floor(torch.tensor((H - fh) / 2.0)))
    j = torch.where(first >= 0, torch.floor(v * (W - cw + 1)), torch.floor(torch.tensor((W - fw) / 2.0)))
    return i, j, ch, cw


def _shift_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Hue shifted by ``f`` (a fraction of the circle, per image): RGB -> HSV -> RGB as
    torchvision's adjust_hue, batched with a factor per image."""
    r, g, b = x.unbind(-3)
    maxc, _ = x.max(-3)
    minc, _ = x.min(-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = ((hr + hg + hb) / 6.0 + 1.0) % 1.0
    h = (h + f.view(-1, 1, 1)) % 1.0
    v = maxc
    i = torch.floor(h * 6.0)
    frac = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp_(0.0, 1.0)
    q = (v * (1.0 - s * frac)).clamp_(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - frac))).clamp_(0.0, 1.0)
    table = torch.stack([torch.stack(c, -3) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], -4)
    idx = i.unsqueeze(-3).unsqueeze(-4).expand(-1, 1, 3, -1, -1)
    return table.gather(-4, idx).squeeze(-4)


def compile_transform(transform) -> BatchAugment:
    """A :class:`BatchAugment` doing what ``transform`` (a v2.Compose of the ops this module
    knows, as make_transforms builds them) does to each image; :class:`Unsupported` otherwise."""
    ops = list(getattr(transform, "transforms", [transform]))
    resize, normalize, jitter, geo = None, None, None, []
    seen_float = False
    for t in ops:
        name = type(t).__name__
        if isinstance(t, v2.Resize) and not geo and not seen_float:
            resize = t
        elif isinstance(t, v2.RandomResizedCrop):
            geo.append(_Geo("crop", {"size": tuple(t.size), "scale": tuple(t.scale), "ratio": tuple(t.ratio)}))
        elif isinstance(t, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)):
            geo.append(_Geo("hflip" if isinstance(t, v2.RandomHorizontalFlip) else "vflip", {"p": float(t.p)}))
        elif isinstance(t, v2.RandomRotation):
            if t.expand or t.center is not None or t.fill not in (0, None):
                raise Unsupported(f"{name} with expand, a centre or a fill")
            geo.append(_Geo("rotate", {"degrees": tuple(float(d) for d in t.degrees)}))
        elif isinstance(t, v2.RandomAffine):
            if t.shear is not None or t.center is not None or t.fill not in (0, None):
                raise Unsupported(f"{name} with shear, a centre or a fill")
            geo.append(_Geo("affine", {"degrees": tuple(float(d) for d in t.degrees), "translate": t.translate,
                                       "scale": t.scale}))
        elif isinstance(t, v2.ColorJitter):
            jitter = {k: getattr(t, k) for k in ("brightness", "contrast", "saturation", "hue")}
        elif isinstance(t, v2.ToDtype):
            if not t.scale or t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise Unsupported(f"{name} to {t.dtype} without scaling")
            seen_float = True
        elif isinstance(t, v2.Normalize):
            normalize = t
        else:
            raise Unsupported(name)
    if not seen_float:
        raise Unsupported("no ToDtype(float, scale=True)")
    return BatchAugment(resize, geo, jitter if jitter and any(v is not None for v in jitter.values()) else None,
                        normalize)
