"""Augmentation presets: the article's training/validation pair and the medical-safe preset."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from tlstudio.core.config import AugmentationConfig
from tlstudio.core.data import is_grayscale, make_transforms, preset_values

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def aug(preset: str, **kw) -> AugmentationConfig:
    return AugmentationConfig(**{**preset_values(preset), **kw})


def kinds(t: v2.Compose) -> list[str]:
    return [type(x).__name__ for x in t.transforms]


def arrow(gray: bool = True) -> torch.Tensor:
    """A 3 x 64 x 64 image whose left half is bright: a flip is plain to see."""
    img = torch.zeros(3, 64, 64, dtype=torch.uint8)
    img[:, 8:56, 4:28] = 220
    img[:, 28:36, 28:60] = 120
    if not gray:
        img[0] = img[0] // 2
    return img


def test_standard_is_the_articles_training_validation_pair():
    a = aug("standard", mirror_safe=True)  # the article's pair flips: images whose mirror shows the same thing
    assert (a.scale_min, a.rotation, a.color_jitter, a.horizontal_flip) == (0.08, 15.0, 0.2, True)
    train = make_transforms(a, MEAN, STD, 64, train=True)
    assert kinds(train) == ["Resize", "RandomResizedCrop", "RandomHorizontalFlip", "RandomRotation", "ColorJitter",
                            "ToDtype", "Normalize"]
    jitter = train.transforms[4]
    assert jitter.saturation is not None and jitter.hue is not None
    val = make_transforms(a, MEAN, STD, 64, train=False)
    assert kinds(val) == ["Resize", "ToDtype", "Normalize"]
    x = arrow(gray=False)
    assert torch.equal(val(x), val(x))  # validation is deterministic
    assert val(x).dtype == torch.float32 and val(x).shape == (3, 64, 64)


def test_no_colour_jitter_on_grayscale_images():
    a = aug("standard")
    t = make_transforms(a, MEAN, STD, 64, train=True, grayscale=True)
    jitter = next(x for x in t.transforms if isinstance(x, v2.ColorJitter))
    assert jitter.saturation is None and jitter.hue is None and jitter.brightness is not None
    torch.manual_seed(0)
    for preset in ("standard", "medical"):
        tt = make_transforms(aug(preset), MEAN, STD, 64, train=True, grayscale=True)
        for _ in range(10):
            y = tt(arrow())
            assert torch.allclose(y[0], y[1]) and torch.allclose(y[1], y[2]), f"{preset} tinted a gray image"


def test_medical_preset_small_rotations_and_no_flips_where_anatomy_has_a_side():
    a = aug("medical")  # the mirror question not answered: anatomy may have a side
    assert not a.flips_in_training and a.vertical_flip is False and a.rotation <= 15
    t = make_transforms(a, MEAN, STD, 64, train=True, grayscale=True)
    assert "RandomHorizontalFlip" not in kinds(t) and "RandomVerticalFlip" not in kinds(t)
    affine = t.transforms[1]
    assert isinstance(affine, v2.RandomAffine) and max(abs(d) for d in affine.degrees) <= 15
    # the bright half stays on the left, whatever the random draw
    torch.manual_seed(0)
    for _ in range(30):
        y = t(arrow())
        assert y[0, :, :32].mean() > y[0, :, 32:].mean()
    # a rotation asked beyond the safe range is capped
    wild = make_transforms(aug("medical", rotation=90), MEAN, STD, 64, train=True)
    assert max(abs(d) for d in wild.transforms[1].degrees) == 15
    # a cell or a skin lesion: mirror images show the same thing, the flips come back
    flips = make_transforms(aug("medical", mirror_safe=True), MEAN, STD, 64, train=True)
    assert "RandomHorizontalFlip" in kinds(flips)
    seen_flipped = False
    for _ in range(30):
        y = flips(arrow())
        seen_flipped |= bool(y[0, :, :32].mean() < y[0, :, 32:].mean())
    assert seen_flipped


def test_grayscale_detection_and_the_data_uses_it(tmp_path, tiny_digits):
    gray = np.repeat(np.random.default_rng(0).integers(0, 255, (5, 8, 8, 1), dtype=np.uint8), 3, axis=3)
    assert is_grayscale(gray)
    colour = gray.copy()
    colour[2, 3, 3, 0] ^= 1
    assert not is_grayscale(colour)
    from finetune_helpers import technique_context

    p_aug = preset_values("standard")
    _, ctx, _ = technique_context(tiny_digits, "fine-tuning")
    for k, v in p_aug.items():
        setattr(ctx.project.augmentation, k, v)
    ctx.data.augmentation = ctx.project.augmentation
    assert ctx.data.grayscale  # MNIST digits
    jitter = next(x for x in ctx.data.transform(True).transforms if isinstance(x, v2.ColorJitter))
    assert jitter.saturation is None


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        preset_values("fancy")


@pytest.mark.parametrize("preset", ["light", "standard", "medical"])
def test_no_mirror_answer_no_flips_in_any_preset(preset):
    """Flips (and the test-time flip) only where the project says mirror images show the same
    thing: not answered and no both keep every image the right way round."""
    for answer in (None, False):
        a = aug(preset, mirror_safe=answer)
        assert a.horizontal_flip  # ticked in the preset, but the answer decides
        assert not a.flips_in_training and not a.flips_at_test
        t = make_transforms(a, MEAN, STD, 64, train=True, grayscale=True)
        assert "RandomHorizontalFlip" not in kinds(t)
        assert "not used" in a.flips_summary()
    yes = aug(preset, mirror_safe=True)
    assert yes.flips_in_training and yes.flips_at_test
    assert "RandomHorizontalFlip" in kinds(make_transforms(yes, MEAN, STD, 64, train=True))
    assert "used in training" in yes.flips_summary()
    assert not aug(preset, mirror_safe=True, horizontal_flip=False).flips_in_training  # unticked: never
