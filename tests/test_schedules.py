"""Learning-rate schedules: cosine with warm restarts (T_0, T_mult), one-cycle, step and
linear warm-up, as the engine applies them step by step."""
from __future__ import annotations

import pytest
from conftest import quick_project

from tlstudio.core.techniques.blocks import lr_factor
from tlstudio.core.config import TrainingConfig
from tlstudio.core.engine import train

SPE = 10  # steps per epoch


def curve(total_epochs=20, **kw):
    t = TrainingConfig(**kw)
    return [lr_factor(s, total_epochs * SPE, SPE, t) for s in range(total_epochs * SPE)]


def test_cosine_warm_restarts_follow_t0_and_tmult():
    f = curve(schedule="cosine_warm_restarts", restart_epochs=2, restart_mult=2)
    restarts = [s for s in range(1, len(f)) if f[s] > f[s - 1] + 0.5]
    assert restarts == [2 * SPE, 6 * SPE, 14 * SPE]  # periods 2, 4, 8 epochs
    assert f[0] == pytest.approx(1.0) and f[2 * SPE - 1] < 0.02
    assert f[4 * SPE] == pytest.approx(0.505, abs=0.01)  # half-way through the 4-epoch period
    same = curve(schedule="cosine_warm_restarts", restart_epochs=3, restart_mult=1)
    assert [s for s in range(1, len(same)) if same[s] > same[s - 1] + 0.5] == [30, 60, 90, 120, 150, 180]


def test_one_cycle_rises_then_anneals():
    f = curve(schedule="onecycle")
    peak = max(range(len(f)), key=f.__getitem__)
    assert f[0] == pytest.approx(1 / 25) and f[peak] == pytest.approx(1.0, abs=1e-3)
    assert 0.25 * len(f) <= peak <= 0.35 * len(f)
    assert all(a <= b + 1e-12 for a, b in zip(f[:peak], f[1:peak + 1]))
    assert all(a >= b - 1e-12 for a, b in zip(f[peak:], f[peak + 1:]))
    assert f[-1] < 1e-3


def test_step_schedule_drops_by_gamma():
    f = curve(schedule="step", step_epochs=5, step_gamma=0.1)
    assert f[0] == f[49] == 1.0 and f[50] == pytest.approx(0.1) and f[100] == pytest.approx(0.01)


def test_linear_warm_up_then_cosine():
    f = curve(schedule="cosine", warmup_epochs=2)
    warm = f[: 2 * SPE]
    assert warm[0] == pytest.approx(1 / 20) and warm[-1] == pytest.approx(1.0)
    steps = [b - a for a, b in zip(warm, warm[1:])]
    assert max(steps) - min(steps) < 1e-9  # linear
    assert f[2 * SPE] == pytest.approx(1.0) and f[-1] < 0.02
    plain = curve(schedule="none", warmup_epochs=1)
    assert plain[5] == pytest.approx(0.6) and set(plain[SPE:]) == {1.0}


def test_engine_applies_the_schedule_every_step(tmp_path, tiny_digits):
    p = quick_project(tiny_digits, epochs=2, schedule="onecycle", lr=1e-3)
    ev: list[dict] = []
    assert train(p, on_event=ev.append, runs_dir=tmp_path)["status"] == "done"
    batches = [e for e in ev if e["kind"] == "batch"]  # at most 4 a second, the last of each epoch always
    total = max(e["step"] for e in batches)
    for e in batches:
        expect = 1e-3 * lr_factor(e["step"] - 1, total, total // 2, p.training)
        assert e["lr"]["head"] == pytest.approx(expect)
    assert max(e["lr"]["head"] for e in batches) > 10 * batches[0]["lr"]["head"]
