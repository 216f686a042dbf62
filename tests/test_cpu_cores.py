"""Thread pools sized from the cores other programs leave free."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from tlstudio.core.engine import cpu


@pytest.mark.skipif(cpu.usable_cores() < 2 or cpu._system_busy() is None, reason="needs 2 cores and /proc/stat")
def test_a_program_spinning_on_a_core_is_seen_and_its_core_is_not_counted_free():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start
        meter = cpu.CpuMeter()
        time.sleep(1.0)
        assert meter.others_busy() >= 0.7
        assert meter.free() <= cpu.usable_cores() - 1
    finally:
        spinner.kill()
        spinner.wait()


def test_the_cores_can_be_fixed_and_a_run_says_how_many_threads_it_uses(tmp_path, monkeypatch):
    from conftest import make_digit_folder, quick_project

    from tlstudio.core.engine import train

    monkeypatch.setenv("TLSTUDIO_CORES", "1")
    assert cpu.free_cores() == 1 and cpu.CpuMeter().free() == 1
    before = torch.get_num_threads()
    project = quick_project(make_digit_folder(tmp_path / "d", classes=(0, 1), per_class=12), epochs=2, batch_size=8)
    project.model.image_size = 32
    events: list[dict] = []
    res = train(project, on_event=events.append, runs_dir=tmp_path / "runs")
    assert res["status"] == "done"
    said = [e["message"] for e in events if e["kind"] == "log" and "thread" in e["message"]]
    if before > 1:
        assert said and "training uses 1 thread" in said[0]
    assert torch.get_num_threads() == before  # the window's process gets its setting back
