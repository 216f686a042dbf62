"""The simple path's proposals: the technique that fits the data (with the reason shown), and
quick / standard / thorough with their expected time from the speed measured here."""
from __future__ import annotations

from tlstudio.core.analysis.guide import (duration_epochs, estimate_seconds, recommend_technique, smallest_training_class,
                                          split_sizes, training_plan)
from tlstudio.core.config import SplitConfig
from tlstudio.core.data import read_data
from tlstudio.core.plugins import get_plugin_manager

from conftest import REPO, make_digit_folder


def test_the_technique_follows_the_data():
    techs = get_plugin_manager().techniques()
    a = recommend_technique(techs, "image-classification", n_train=546, smallest_class=147)
    assert a.id == "progressive-unfreezing" and "546 training images" in a.reason and "docs/results.md" in a.detail
    a = recommend_technique(techs, "image-classification", n_train=30, smallest_class=6)
    assert a.id == "frozen-features" and "only 6 training images" in a.reason
    assert recommend_technique(techs, "image-classification", 546, 147, has_target=True).id == "dann"
    assert recommend_technique(techs, "text-classification").id == "bert-text-classification"
    assert recommend_technique(techs, "detection").id == "faster-rcnn"
    assert recommend_technique({}, "image-classification") is None


def test_durations_and_their_expected_time():
    assert duration_epochs(10) == {"quick": 4, "standard": 10, "thorough": 20}
    assert duration_epochs(2) == {"quick": 1, "standard": 2, "thorough": 4}
    counts = {"train": 546, "val": 78, "test": 156}
    plan = training_plan(10, counts, images_per_s=50.0)
    secs = [d.seconds for d in plan.durations]
    assert secs == sorted(secs) and secs[0] > 0
    # 10 epochs of 546 training and 78 validation images at 50 images/s, then the test images
    assert abs(plan.durations[1].seconds - (10 * (546 + 78 * 0.35) + 156 * 0.35) / 50) < 1e-6
    assert plan.matching(10) == "standard" and plan.matching(7) is None
    assert estimate_seconds(30, counts, 50.0, frozen=True) < estimate_seconds(4, counts, 50.0)
    assert all(d.seconds is None for d in training_plan(10, counts, None).durations)


def test_split_sizes_of_the_medical_sample(tmp_path):
    table = read_data(REPO / "resources" / "samples" / "breast-ultrasound" / "breastmnist.npz")
    assert split_sizes(table, SplitConfig()) == {"train": 546, "val": 78, "test": 156}  # the data set's own split
    assert smallest_training_class(table, SplitConfig()) == 147
    few = read_data(make_digit_folder(tmp_path / "few", classes=(0, 1), per_class=10))
    assert smallest_training_class(few, SplitConfig(mode="stratified")) < 20
