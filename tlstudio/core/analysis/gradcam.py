"""Grad-CAM: where in an image a classifier looked when it chose a class.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization" (ICCV 2017): the activations of the last spatial layer
(:attr:`ClassifierModel.cam_layer`), each channel weighted by the mean gradient of the
class score with respect to it, summed, rectified and scaled to [0, 1].

    heat = grad_cam(model, batch)[0]          # (N, H, W) float32 in [0, 1], and the probabilities
    rgb = overlay(image, heat[0])             # H x W x 3 uint8: the image with the heat map on top
    result = explain(predictor, "scan.png")   # both, for a trained run (see tlstudio.core.delivery.predict)

Qt-free; the window calls it from a worker thread.  A call registers a forward hook on the
layer for its own duration only, so one model must not be explained from two threads at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["grad_cam", "overlay", "colorize", "explain", "CamResult"]


def _spatial(act: torch.Tensor) -> torch.Tensor:
    """Activations as (N, C, h, w): conv maps as they are; transformer tokens
    (N, 1 + h*w, C) without the class token, reshaped to a square grid."""
    if act.dim() == 4:
        return act
    if act.dim() == 3:
        n, t, c = act.shape
        side = int(round((t - 1) ** 0.5))
        if side * side == t - 1:
            tokens = act[:, 1:, :]
        else:
            side = int(round(t ** 0.5))
            if side * side != t:
                raise ValueError(f"Grad-CAM: cannot arrange {t} tokens on a square grid")
            tokens = act
        return tokens.reshape(n, side, side, c).permute(0, 3, 1, 2)
    raise ValueError(f"Grad-CAM: the layer's output has shape {tuple(act.shape)}; expected (N, C, H, W) or tokens")


def _candidates(model: nn.Module, cam_layer: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layer-group modules, input to output (the head left out), ending with
    the Grad-CAM layer: where a finer map can come from when images are small."""
    out: list[tuple[str, nn.Module]] = []
    for g in list(getattr(model, "groups", []) or [])[:-1]:
        mods = list(getattr(g, "modules", []) or [])
        for i, m in enumerate(mods):
            out.append((g.name if len(mods) == 1 else f"{g.name}[{i}]", m))
    out.append(("cam_layer", cam_layer))
    return out


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | list[int] | None = None,
             layer: nn.Module | None = None, min_cells: int = 6,
             info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heat maps of a batch ``x`` (N, 3, H, W), already preprocessed.

    ``target``: the class to explain (one for all, or one per image); None = each image's
    predicted class.  ``layer``: default ``model.cam_layer``; when that layer's map is
    smaller than ``min_cells`` a side (small images: MobileNetV2 at 64 px gives 2 x 2), the
    last layer group whose map has at least ``min_cells`` a side is used instead (0 =
    always ``cam_layer``).  Returns ``(heat, probs)``: heat maps (N, H, W) float32 in
    [0, 1] at the input's size, and the class probabilities (N, K).  ``info``, when given,
    receives the layer used and its map size.  Parameters' ``.grad`` are left untouched.

    A model that averages each image with its mirror image (``flip_average``) is explained
    the same way: the heat maps of both views, the mirror's flipped back, are averaged, for
    the class the averaged prediction chose.
    """
    if not getattr(model, "flip_average", False):
        return _grad_cam(model, x, target, layer, min_cells, info)
    was_training = model.training
    try:
        with torch.no_grad():
            probs = model.eval()(x).float().softmax(1)
        if target is None:
            target = probs.argmax(1).tolist()
        model.flip_average = False
        a, _ = _grad_cam(model, x, target, layer, min_cells, info)
        b, _ = _grad_cam(model, x.flip(-1), target, layer, min_cells)
    finally:
        model.flip_average = True
        model.train(was_training)
    heat = (a + b[..., ::-1]) / 2
    peak = heat.reshape(len(heat), -1).max(1).clip(min=1e-12).reshape(-1, 1, 1)
    heat = np.where(peak > 1e-12, heat / peak, 0.0).astype(np.float32)
    return heat, probs.cpu().numpy()


def _grad_cam(model: nn.Module, x: torch.Tensor, target: int | list[int] | None = None,
              layer: nn.Module | None = None, min_cells: int = 6,
              info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`grad_cam` of the model as it is (one view of each image)."""
    fixed = layer is not None
    layer = layer if layer is not None else getattr(model, "cam_layer", None)
    if layer is None:
        raise ValueError("Grad-CAM needs a layer: this model has no cam_layer")
    cands = [("layer", layer)] if fixed or not min_cells else _candidates(model, layer)
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def hook_for(i):
        def hook(_mod, _inp, out):
            captured[i] = out[0] if isinstance(out, (tuple, list)) else out
        return hook

    was_training = model.training
    model.eval()
    for i, (_n, m) in enumerate(cands):
        handles.append(m.register_forward_hook(hook_for(i)))
    try:
        with torch.enable_grad():
            xin = x.detach().clone().requires_grad_(True)  # a graph even through a frozen backbone
            logits = model(xin).float()
            probs = logits.softmax(1)
            if target is None:
                t = logits.argmax(1)
            elif isinstance(target, int):
                t = torch.full((len(x),), int(target), dtype=torch.long, device=logits.device)
            else:
                t = torch.as_tensor(list(target), dtype=torch.long, device=logits.device)
            score = logits.gather(1, t[:, None]).sum()
            last = len(cands) - 1
            if last not in captured:
                raise ValueError("Grad-CAM: the layer was not used by the model's forward pass")
            pick = last
            if min_cells and min(_spatial(captured[last]).shape[-2:]) < min_cells:
                for i in range(last - 1, -1, -1):
                    a = captured.get(i)
                    if a is not None and a.dim() == 4 and a.requires_grad and min(a.shape[-2:]) >= min_cells:
                        pick = i
                        break
            act = captured[pick]
            grad, = torch.autograd.grad(score, act)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    a, g = _spatial(act.detach().float()), _spatial(grad.float())
    if info is not None:
        info["layer"] = cands[pick][0]
        info["cells"] = tuple(int(v) for v in a.shape[-2:])
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
    cam = torch.where(peak > 1e-12, cam / peak, torch.zeros_like(cam))
    return cam.clamp(0, 1).cpu().numpy().astype(np.float32), probs.detach().cpu().numpy()


# --- pictures ---------------------------------------------------------------------------------
_TURBO = (  # polynomial fit of Google's Turbo colormap (R, G, B), x in [0, 1]
    (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
    (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
    (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
)


def colorize(heat: np.ndarray) -> np.ndarray:
    """A heat map in [0, 1] (H x W) as H x W x 3 uint8 colours (Turbo from blue = cold to red
    = hot; its near-black ends are left out so that both ends read on an image)."""
    x = 0.1 + 0.85 * np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    chans = []
    for c in _TURBO:
        v = np.zeros_like(x)
        for coef in reversed(c):
            v = v * x + coef
        chans.append(v)
    return (np.clip(np.stack(chans, -1), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _resize_heat(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    if heat.shape == (height, width):
        return heat
    from PIL import Image

    im = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The image (H x W x 3 uint8, or H x W grey) with the coloured heat map blended on top;
    the heat map is stretched to the image's size (as the model's input was squashed).
    Returns H x W x 3 uint8."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32)
    h = _resize_heat(heat, img.shape[0], img.shape[1])
    color = colorize(h).astype(np.float32)
    a = float(alpha) * (0.3 + 0.7 * h[..., None])  # cold areas stay readable
    return np.clip(img * (1 - a) + color * a + 0.5, 0, 255).astype(np.uint8)


@dataclass
class CamResult:
    """Grad-CAM of one image from a trained run."""

    ref: str
    image: np.ndarray  # the decoded image, H x W x 3 uint8
    heat: np.ndarray  # H x W float32 in [0, 1] (the image's size)
    overlay: np.ndarray  # H x W x 3 uint8
    probabilities: dict[str, float]
    predicted: str
    target: str  # the class the heat map explains
    layer: str = "cam_layer"  # where the map comes from ("cam_layer", or a layer group for small images)
    cells: tuple = ()  # the map's own resolution (h, w) before it was stretched to the image


def explain(predictor: Any, image: str | Path | np.ndarray, target: int | str | None = None,
            alpha: float = 0.55, ref: str | None = None) -> CamResult:
    """Grad-CAM of one image (a file, or an H x W x 3 uint8 array) with a trained run's model
    (a :class:`tlstudio.core.delivery.predict.Predictor` of an image classifier).  ``target``: a class
    index or name; None = the predicted class."""
    data = predictor.ctx.data
    if not hasattr(data, "preprocess"):
        raise ValueError(f"Grad-CAM explains image classifiers; this run's technique "
                         f"({getattr(predictor.technique, 'id', '?')}) predicts something else")
    if isinstance(image, (str, Path)):
        from ..data import decode_dicom, decode_image, is_dicom

        ref = ref or str(image)
        img = decode_dicom(image) if is_dicom(image) else decode_image(image)
    else:
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
    names = list(data.class_names)
    if isinstance(target, str):
        target = names.index(target)
    x = data.preprocess([img]).to(predictor.ctx.device)
    info: dict = {}
    heat, probs = grad_cam(predictor.model, x, target, info=info)
    p = probs[0]
    k = int(p.argmax())
    t = k if target is None else int(target)
    big = _resize_heat(heat[0], img.shape[0], img.shape[1])
    return CamResult(ref=ref or "", image=img, heat=big, overlay=overlay(img, heat[0], alpha),
                     probabilities={c: float(v) for c, v in zip(names, p)}, predicted=names[k], target=names[t],
                     layer=info.get("layer", "cam_layer"), cells=info.get("cells", ()))
