"""Augmentation presets (torchvision.transforms.v2 on uint8 C x H x W tensors)."""
from __future__ import annotations

import math

import torch
from torchvision.transforms import v2


def make_transforms(aug, mean, std, size: int, train: bool) -> v2.Compose:
    """uint8 C x H x W tensor -> float32 ``size`` x ``size``, normalised with ``mean``/``std``.

    ``aug`` is a :class:`tlstudio.core.config.AugmentationConfig`.  Presets (training only):
    none: no random change; light: crops of at least ``scale_min`` of the image, nearly
    square, and the flips switched on; standard: crops, flips, rotation, colour jitter;
    medical: small affine moves (rotation, 5 % shift, zoom in to keep at least ``scale_min``
    of the image), the flips switched on, brightness/contrast jitter only (no colour change).
    """
    ops: list = [v2.Resize((size, size), antialias=True)]  # a no-op on cached images
    if train and aug.preset != "none":
        crop = (aug.scale_min, 1.0)
        jitter = aug.color_jitter
        if aug.preset == "light":
            ops.append(v2.RandomResizedCrop(size, scale=crop, ratio=(0.9, 1.1), antialias=True))
        elif aug.preset == "standard":
            ops.append(v2.RandomResizedCrop(size, scale=crop, antialias=True))
        elif aug.preset == "medical":
            zoom = 1.0 / math.sqrt(aug.scale_min)  # zooming in by this keeps scale_min of the area
            ops.append(v2.RandomAffine(degrees=aug.rotation, translate=(0.05, 0.05), scale=(1.0, zoom)))
        else:
            raise ValueError(f"unknown augmentation preset '{aug.preset}' (known: none, light, standard, medical)")
        if aug.horizontal_flip:
            ops.append(v2.RandomHorizontalFlip())
        if aug.vertical_flip:
            ops.append(v2.RandomVerticalFlip())
        if aug.preset == "standard":
            if aug.rotation > 0:
                ops.append(v2.RandomRotation(aug.rotation))
            if jitter > 0:
                ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
        elif aug.preset == "medical" and jitter > 0:
            ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)
