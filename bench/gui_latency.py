"""Event-loop latency of the window while the sample project trains (target: p99 <= 50 ms
on 2 cores).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_latency.py [--epochs 2] [--size 64]

Opens the real window on a copy of the bundled sample project (600 digits, MobileNetV2,
fine-tuning), presses Train, and runs a QTimer probe every 20 ms in the GUI thread for the
whole run: how late each tick fires is the time a click would wait.  Prints p50, p99 and
the worst tick, with how many events the window received and how often the charts were
redrawn (at most 10 times a second by design).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--technique", default="fine-tuning")
    ap.add_argument("--interval-ms", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the run (0: all cores)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of probing with nothing training first")
    ap.add_argument("--trace", action="store_true", help="list the longest stalls and what came before them")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="tlbench-latency-"))
    os.environ["TLSTUDIO_HOME"] = str(home)

    from tlstudio.core.config import load_project

    p = load_project(REPO / "resources" / "sample" / "project.toml")
    p.data.source = str(p.resolve(p.data.source))
    p.data.split.file = ""
    p.model.image_size = args.size
    p.training.epochs = args.epochs
    p.training.device = "cpu"
    p.training.threads = args.threads
    if args.technique != p.technique.id:
        p.technique.id, p.technique.settings = args.technique, {}
    project = p.save(home / "project.toml")

    from PySide6.QtCore import QEventLoop, Qt, QTimer

    from tlstudio.gui.app import make_app
    from tlstudio.gui.mainwindow import MainWindow

    app = make_app()
    w = MainWindow()
    w.confirm = False
    w.show()
    w.start(str(project))
    while w.studio.plugins is None or w.studio.model_status is None:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)
    train = w.show_page("train")
    t_end = time.time() + 10  # let the Data page finish its report, thumbnails and preview
    while time.time() < t_end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

    lat: list[float] = []
    interval = args.interval_ms / 1000.0
    last = [0.0]

    stalls: list[tuple[float, float]] = []

    def tick():
        now = time.perf_counter()
        if last[0]:
            lat.append(max(0.0, now - last[0] - interval))
            if lat[-1] > 0.1:
                stalls.append((time.time(), lat[-1]))
        last[0] = now

    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(args.interval_ms)
    probe.timeout.connect(tick)
    # the same probe with nothing training: what the machine itself costs (other load, the scheduler)
    probe.start()
    QTimer.singleShot(int(args.idle * 1000), app.quit)
    app.exec()
    probe.stop()
    idle = [x * 1000 for x in lat]
    lat.clear()
    last[0] = 0.0
    done = []
    train.runEnded.connect(lambda d, s: (done.append(s), app.quit()))
    t0 = time.time()
    probe.start()
    if not train.start():
        raise SystemExit("Train could not start: " + "; ".join(w.studio.problems()))
    app.exec()
    probe.stop()
    wall = time.time() - t0
    n_events = len(train.events)
    batches = sum(1 for e in train.events if e.get("kind") == "batch")
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    ms = [x * 1000 for x in lat]
    print(f"GUI event-loop latency while training ({args.technique}, MobileNetV2, {args.size} px, {args.epochs} epochs, "
          f"CPU, {os.cpu_count()} CPUs, load {' '.join(load)}):")
    print(f"  run {done[0] if done else '?'} in {wall:.0f} s; {n_events} events ({batches} batch events) received, "
          f"charts redrawn {train.charts.redraws} times ({train.charts.redraws / max(wall, 1e-9):.1f}/s)")
    print(f"  probe every {args.interval_ms} ms, {len(ms)} ticks: p50 {percentile(ms, 50):.1f} ms, "
          f"p99 {percentile(ms, 99):.1f} ms, max {max(ms, default=float('nan')):.1f} ms  (target p99 <= 50 ms)")
    print(f"  idle window, same probe, {len(idle)} ticks before the run: p50 {percentile(idle, 50):.1f} ms, "
          f"p99 {percentile(idle, 99):.1f} ms, max {max(idle, default=float('nan')):.1f} ms")
    if args.trace:
        kinds = [(e.get("time", 0), e.get("kind"), e.get("task") or e.get("batch") or "") for e in train.events]
        print("  stalls over 100 ms (seconds into the run, length, the event before):")
        for t, d in sorted(stalls, key=lambda s: -s[1])[:10]:
            before = [k for k in kinds if k[0] <= t]
            print(f"    {t - t0:7.1f} s  {d * 1000:6.0f} ms  after {before[-1][1:] if before else '-'}")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
