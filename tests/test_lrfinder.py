"""The learning-rate range test on the bundled sample project."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SAMPLE_PROJECT

from tlstudio.core.config import load_project
from tlstudio.core.engine import RunControl
from tlstudio.core.analysis.lrfinder import find_lr, suggest_lr
from tlstudio.core.settings import load_settings


def test_suggestion_is_the_steepest_descent_of_the_curve():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1.5, (x + 1.5) ** 2 * 4, 0)  # falls fastest at 1e-3
    s = suggest_lr(lrs.tolist(), loss.tolist())
    assert s["steepest"] == pytest.approx(1e-3, rel=0.3)
    assert s["suggested"] == s["steepest"] and s["suggested"] < s["lr_at_min"]
    flat = suggest_lr([1e-5, 1e-4, 1e-3], [1.0, 0.9, 0.8])  # too short for a slope: a tenth of the minimum
    assert flat["suggested"] == pytest.approx(1e-4)


def test_no_suggestion_outside_the_rates_tried():
    """A curve whose loss only rises (too few steps, or a rate range that starts too high)
    must not suggest a tenth of its first rate, a rate that was never tried."""
    lrs = np.logspace(-7, 0, 12)
    loss = [0.70, 0.69, 0.72, 0.75, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 2.4, 2.8]
    s = suggest_lr(lrs.tolist(), loss)
    assert s["suggested"] is None
    assert "did not fall" in s["note"] and s["lr_at_min"] == pytest.approx(lrs[1])


def test_lr_finder_on_the_sample_project(tmp_path):
    p = load_project(SAMPLE_PROJECT)
    p.data.split.file = str(tmp_path / "split.json")  # leave the bundled sample as it is
    p.training.device = "cpu"
    events: list[dict] = []
    res = find_lr(p, on_event=events.append, steps=60, end_lr=10.0)  # rates up to 10: the loss must explode
    s = res["suggested"]
    assert math.isfinite(s) and 1e-7 < s < 1.0
    assert len(res["lrs"]) == len(res["losses"]) and len(res["lrs"]) > 20
    assert all(b > a for a, b in zip(res["lrs"], res["lrs"][1:]))
    assert all(math.isfinite(v) for v in res["losses"])
    # the loss falls from its starting value, and the range test stops once it explodes
    assert min(res["losses"]) < res["losses"][0] * 0.9
    assert res["stopped_early"] and len(res["lrs"]) < 60
    assert s < res["lr_at_min"]
    steps = [e for e in events if e["kind"] == "lr_find"]
    assert len(steps) == len(res["lrs"]) and any(e["kind"] == "lr_found" for e in events)
    # nothing went to the run store
    runs = load_settings().runs_path()
    assert not runs.exists() or not any(runs.iterdir())


def test_lr_finder_can_be_stopped(tmp_path):
    p = load_project(SAMPLE_PROJECT)
    p.data.split.file = str(tmp_path / "split.json")
    p.training.device = "cpu"
    control = RunControl()

    def on_event(e):
        if e["kind"] == "lr_find" and e["step"] == 5:
            control.stop()

    res = find_lr(p, on_event=on_event, control=control, steps=60)
    assert res["stopped"] and len(res["lrs"]) == 5
    # five steps over the first decade: a rate within them, or no suggestion and why
    s = res["suggested"]
    assert (s is None and "did not fall" in res["note"]) or (math.isfinite(s) and s >= res["lrs"][0])
