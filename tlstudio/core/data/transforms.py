"""Augmentation presets (torchvision.transforms.v2 on uint8 C x H x W tensors).

The training/validation pair of the transfer-learning article, as presets:

=========  ==========================================================================
preset     training transform (validation and test: resize + normalise, always)
=========  ==========================================================================
none       no random change
light      crops keeping >= ``scale_min`` of the image, nearly square; the flips ticked
standard   the article's ImageNet recipe: RandomResizedCrop, horizontal flip, rotation,
           colour jitter (brightness, contrast, saturation, hue)
medical    medical-safe: small affine moves (rotation capped at
           :data:`MEDICAL_MAX_ROTATION` degrees, 5 % shift, zoom in to keep
           ``scale_min``), only the flips ticked, brightness/contrast only (never a
           colour change)
=========  ==========================================================================

Horizontal flips (and the test-time flip) happen in every preset only where the project
says that mirror images show the same thing (``augmentation.mirror_safe`` is True: a
cell, a skin lesion); not answered counts as no (a chest film, a digit, a letter).

On grayscale data (X-ray, ultrasound, CT: every image has equal channels) no preset
changes saturation or hue, so an image never gains a tint it could not have had.
:func:`preset_values` gives the settings each preset is meant to start from (the window
applies them when the preset is chosen).
"""
from __future__ import annotations

import math

import torch
from torchvision.transforms import v2

#: the medical preset never rotates more than this (a larger rotation changes what an image shows)
MEDICAL_MAX_ROTATION = 15.0

#: the settings each preset starts from (AugmentationConfig fields)
PRESET_VALUES: dict[str, dict] = {
    "none": {},
    "light": {"scale_min": 0.8, "rotation": 0.0, "color_jitter": 0.0, "horizontal_flip": True, "vertical_flip": False},
    # the article: RandomResizedCrop(224), RandomHorizontalFlip, RandomRotation(15), ColorJitter(0.2, 0.2, 0.2, 0.1)
    "standard": {"scale_min": 0.08, "rotation": 15.0, "color_jitter": 0.2, "horizontal_flip": True, "vertical_flip": False},
    # horizontal flips follow the project's answer (mirror_safe): a left breast, a right lung or a situs is not
    # its mirror image, a cell or a skin lesion is; vertical flips only where ticked
    "medical": {"scale_min": 0.85, "rotation": 10.0, "color_jitter": 0.1, "horizontal_flip": True, "vertical_flip": False},
}


def preset_values(preset: str) -> dict:
    """The AugmentationConfig values a preset starts from (the user can change them after)."""
    if preset not in PRESET_VALUES:
        raise ValueError(f"unknown augmentation preset '{preset}' (known: {', '.join(PRESET_VALUES)})")
    return {"preset": preset, **PRESET_VALUES[preset]}


def is_grayscale(images, sample: int = 64) -> bool:
    """True when (a sample of) the N x H x W x 3 uint8 images have equal channels."""
    import numpy as np

    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) == 0:
        return False
    idx = np.linspace(0, len(arr) - 1, min(sample, len(arr))).astype(int)
    s = arr[idx]
    return bool((s[..., 0] == s[..., 1]).all() and (s[..., 1] == s[..., 2]).all())


def make_transforms(aug, mean, std, size: int, train: bool, grayscale: bool = False) -> v2.Compose:
    """uint8 C x H x W tensor -> float32 ``size`` x ``size``, normalised with ``mean``/``std``.

    ``aug`` is a :class:`tlstudio.core.config.AugmentationConfig` (see the module
    docstring for the presets); ``grayscale`` switches saturation and hue jitter off.
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
            rot = min(aug.rotation, MEDICAL_MAX_ROTATION)
            ops.append(v2.RandomAffine(degrees=rot, translate=(0.05, 0.05), scale=(1.0, zoom)))
        else:
            raise ValueError(f"unknown augmentation preset '{aug.preset}' (known: none, light, standard, medical)")
        if aug.flips_in_training:  # only where mirror images show the same thing
            ops.append(v2.RandomHorizontalFlip())
        if aug.vertical_flip:
            ops.append(v2.RandomVerticalFlip())
        if aug.preset == "standard":
            if aug.rotation > 0:
                ops.append(v2.RandomRotation(aug.rotation))
            if jitter > 0:
                colour = {} if grayscale else {"saturation": jitter, "hue": min(0.5, jitter / 2)}
                ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter, **colour))
        elif aug.preset == "medical" and jitter > 0:
            ops.append(v2.ColorJitter(brightness=jitter, contrast=jitter))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def augmentation_preview(table, indices: list[int], aug, size: int, draws: int = 2,
                         seed: int = 0) -> list:
    """For each image: [as the model sees it without augmentation, then ``draws`` augmented
    versions] (the training transforms, without normalisation): the window's augmentation
    preview."""
    import numpy as np

    from .image import resize_image

    tf = make_transforms(aug, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), size, train=True)
    out = []
    with torch.random.fork_rng(devices=[]):  # a run training meanwhile keeps its own random numbers
        torch.manual_seed(seed)
        for i in indices:
            img = np.array(resize_image(table.load_image(i), size))  # a writable copy
            t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
            row = [img]
            for _ in range(draws):
                a = tf(t).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
                row.append(np.ascontiguousarray(a))
            out.append(row)
    return out
