"""The model recommender: speeds measured on this machine and remembered, a ranking that
follows the time budget and the data size, and a reason for each model."""
from __future__ import annotations

import math

import pytest

from tlstudio.core.models import ModelLibrary
from tlstudio.core.analysis.recommend import Recommendation, device_kind, measure_speed, recommend, speed_of
from tlstudio.core.settings import load_settings, save_settings


def test_speed_is_measured_once_and_remembered():
    assert speed_of("mobilenet_v2", 64, "cpu") is None  # never measured here
    v = speed_of("mobilenet_v2", 64, "cpu", measure=True)
    assert v > 0 and math.isfinite(v)
    stored = load_settings().model_speed
    key = f"mobilenet_v2@64px/{device_kind('cpu')}"
    assert stored == {key: pytest.approx(v, rel=1e-3)}
    assert speed_of("mobilenet_v2", 64, "cpu") == pytest.approx(v, rel=1e-3)  # from the settings, not measured again
    assert speed_of("mobilenet_v2", 96, "cpu") is None  # another size is another measurement


def test_measure_speed_times_real_training_steps():
    # a bigger image costs more per image
    small = measure_speed("mobilenet_v2", 32, batch_size=8, device="cpu", steps=3)
    big = measure_speed("mobilenet_v2", 128, batch_size=8, device="cpu", steps=3)
    assert small > big > 0


def _remember(speeds: dict[str, float], size: int = 128) -> None:
    s = load_settings()
    s.model_speed.update({f"{k}@{size}px/{device_kind('cpu')}": v for k, v in speeds.items()})
    save_settings(s)


def test_ranking_follows_the_time_budget():
    """MobileNetV2 measured fast, EfficientNet-Lite0 (more accurate on ImageNet) slow."""
    _remember({"mobilenet_v2": 200.0, "efficientnet_lite0": 40.0})
    lib = ModelLibrary()
    kw = dict(n_images=5000, n_classes=5, image_size=128, device="cpu", library=lib)
    # a generous budget: the more accurate model
    roomy = recommend(time_budget_s=4 * 3600, **kw)
    assert [r.name for r in roomy[:2]] == ["efficientnet_lite0", "mobilenet_v2"]
    assert all(isinstance(r, Recommendation) and r.fits_budget for r in roomy[:2])
    assert roomy[0].est_seconds_per_epoch == pytest.approx(5000 * 1.07 / 40.0)
    # a tight one: only the fast model gets its epochs done
    tight = recommend(time_budget_s=5 * 60, **kw)
    assert tight[0].name == "mobilenet_v2" and tight[0].fits_budget
    lite = next(r for r in tight if r.name == "efficientnet_lite0")
    assert not lite.fits_budget and lite.score < tight[0].score
    assert "not even" in lite.reason and "5 min" in lite.reason
    # every reason is one sentence grounded in the measurement
    for r in tight + roomy:
        assert r.reason.endswith(".") and r.reason.count(". ") == 0 and "images/s" in r.reason


def test_data_size_decides_how_much_capacity_pays():
    _remember({"mobilenet_v2": 200.0, "efficientnet_lite0": 150.0})
    lib = ModelLibrary()
    few = recommend(200, 2, 128, "cpu", 3600, library=lib)
    many = recommend(50000, 100, 128, "cpu", 24 * 3600, library=lib)
    gap = lambda recs: {r.name: r.details["accuracy_term"] for r in recs}  # noqa: E731
    g_few, g_many = gap(few), gap(many)
    assert g_many["efficientnet_lite0"] - g_many["mobilenet_v2"] > g_few["efficientnet_lite0"] - g_few["mobilenet_v2"] > 0
    assert "pays only partly" in next(r for r in few if r.name == "efficientnet_lite0").reason


def test_unmeasured_models_come_after_measured_ones_and_say_so():
    _remember({"mobilenet_v2": 100.0})
    recs = recommend(500, 2, 128, "cpu", 600, library=ModelLibrary())
    assert recs[0].name == "mobilenet_v2"
    lite = next(r for r in recs if r.name == "efficientnet_lite0")
    assert lite.est_seconds_per_epoch is None and lite.fits_budget is None and "not measured" in lite.reason
