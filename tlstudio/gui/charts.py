"""Live training charts (pyqtgraph), fed with the engine's events.

:class:`ChartModel` (no Qt) turns events into series: training loss per batch and per
epoch, validation loss, the monitored metric, the learning rate of every parameter group,
and every technique-specific series — ``series`` of epoch events and ``values`` of batch
events, charted automatically under their own names — plus ``stage`` events as vertical
markers.  :class:`LiveCharts` draws the model at most ``max_fps`` times a second (a QTimer
coalesces the redraws), whatever the event rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

# Okabe-Ito: distinguishable with colour-blindness, readable on white
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933", "#882255"]

PLOTS = {"loss": "Loss", "metric": "Validation metric", "lr": "Learning rate", "technique": "Technique"}


class Series:
    """x/y points in growable arrays; a point whose x goes back (a resumed epoch replayed)
    first drops the points at and after it."""

    def __init__(self) -> None:
        self.x = np.empty(64)
        self.y = np.empty(64)
        self.n = 0
        self.version = 0

    def append(self, x: float, y: float) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        if self.n and x <= self.x[self.n - 1] - 1e-9:
            self.n = int(np.searchsorted(self.x[: self.n], x - 1e-9, side="left"))
        elif self.n and abs(x - self.x[self.n - 1]) < 1e-9:
            self.n -= 1  # the same x again (an epoch re-run): replace
        if self.n == len(self.x):
            self.x = np.resize(self.x, 2 * self.n)
            self.y = np.resize(self.y, 2 * self.n)
        self.x[self.n] = x
        self.y[self.n] = float(y)
        self.n += 1
        self.version += 1

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n], self.y[: self.n]

    def __len__(self) -> int:
        return self.n


@dataclass
class ChartModel:
    """What the charts show, built from events (see the module docstring)."""

    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    stages: list[tuple[float, str]] = field(default_factory=list)
    monitor: str = ""
    best: tuple[float, float] | None = None
    last_x: float = 0.0
    version: int = 0

    def get(self, plot: str, name: str) -> Series:
        key = (plot, name)
        if key not in self.series:
            self.series[key] = Series()
        return self.series[key]

    def add(self, e: dict) -> bool:
        """Take one event; True when something visible changed."""
        k = e.get("kind")
        if k == "start":
            self.monitor = e.get("monitor") or self.monitor
            return False
        if k == "batch":
            nb = max(1, int(e.get("batches") or 1))
            x = (int(e.get("epoch", 1)) - 1) + int(e.get("batch", 0)) / nb
            self.last_x = x
            self.get("loss", "train (batch)").append(x, e.get("loss"))
            for g, v in (e.get("lr") or {}).items():
                if v and v > 0:
                    self.get("lr", str(g)).append(x, v)
            for n, v in (e.get("values") or {}).items():
                self.get("technique", str(n)).append(x, v)
            self.version += 1
            return True
        if k == "epoch":
            x = float(e.get("epoch", 0))
            self.last_x = x
            self.monitor = e.get("monitor") or self.monitor
            for key, plot, name in (("train_loss", "loss", "train"), ("val_loss", "loss", "validation")):
                if e.get(key) is not None:
                    self.get(plot, name).append(x, e[key])
            mon = self.monitor
            if mon and mon != "val_loss" and e.get(mon) is not None:
                self.get("metric", mon).append(x, e[mon])
                if e.get("best"):
                    self.best = (x, float(e[mon]))
            elif mon == "val_loss" and e.get("val_accuracy") is not None:
                self.get("metric", "val_accuracy").append(x, e["val_accuracy"])
            elif (shown := self.shown_metric(e)) is not None:  # "last" or "auto": the validation result to watch
                self.get("metric", shown).append(x, e[shown])
            for n, v in (e.get("series") or {}).items():
                self.get("technique", str(n)).append(x, v)
            self.version += 1
            return True
        if k == "stage":
            self.stages.append((float(e.get("x", self.last_x)), str(e.get("message") or e.get("name") or "stage")))
            self.version += 1
            return True
        return False

    def shown_metric(self, e: dict) -> str | None:
        """The validation result charted when the best-model metric is not one (monitor "last"):
        the accuracy (mAP, BLEU for other tasks; else the first val_ number of the event)."""
        for name in ("val_accuracy", "val_map_50", "val_bleu_4"):
            if e.get(name) is not None:
                return name
        return next((k for k, v in e.items() if k.startswith("val_") and k != "val_loss"
                     and isinstance(v, (int, float))), None)

    def points(self) -> dict[str, int]:
        """Number of points per series, "plot/name" -> n (what the tests and benches read)."""
        return {f"{p}/{n}": len(s) for (p, n), s in self.series.items()}


def _pg():
    import pyqtgraph as pg

    pg.setConfigOptions(background="w", foreground="#222222", antialias=True)
    return pg


def styled_plot(title: str, xlabel: str = "epoch", ylabel: str = "", legend: bool = True, parent=None):
    """A pyqtgraph PlotWidget in the studio's style (white, grid, a legend on a light box)."""
    pg = _pg()
    w = pg.PlotWidget(parent=parent)
    pi = w.getPlotItem()
    pi.setTitle(f"<span style='font-size:10pt; font-weight:600'>{title}</span>")
    pi.showGrid(x=True, y=True, alpha=0.25)
    pi.setLabel("bottom", xlabel)
    if ylabel:
        pi.setLabel("left", ylabel)
    for side in ("left", "bottom"):
        pi.getAxis(side).enableAutoSIPrefix(False)
    if legend:
        lg = pi.addLegend(offset=(-10, 10), labelTextSize="8pt")
        lg.setBrush(pg.mkBrush(255, 255, 255, 215))
        lg.setPen(pg.mkPen("#cccccc"))
    w.setMinimumHeight(170)
    return w


class EmptyNote(QObject):
    """A grey note in the middle of a chart while it has nothing to show ("no data yet"), on
    top of the plot, never over its axis labels."""

    def __init__(self, plot, text: str):
        super().__init__(plot)
        self.plot = plot
        self.label = QLabel(text, plot)
        self.label.setStyleSheet("color: #999999; background: transparent;")
        self.label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.label.adjustSize()
        plot.installEventFilter(self)
        self._place()

    def eventFilter(self, obj, e) -> bool:  # noqa: N802
        if e.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self._place()
        return False

    def _place(self) -> None:
        self.label.move(max(0, (self.plot.width() - self.label.width()) // 2),
                        max(0, (self.plot.height() - self.label.height()) // 2))

    def show(self) -> None:
        self.label.show()

    def hide(self) -> None:
        self.label.hide()

    def isVisible(self) -> bool:  # noqa: N802
        return self.label.isVisible()


class LiveCharts(QWidget):
    """The loss and the validation metric; behind ``show_details``, the learning rate of every
    parameter group and the technique's own series."""

    def __init__(self, max_fps: float = 10.0, parent=None):
        super().__init__(parent)
        self.pg = _pg()
        self.model = ChartModel()
        self.plots = {}
        self.curves: dict[tuple[str, str], object] = {}
        self._drawn: dict[tuple[str, str], int] = {}
        self._markers: list = []
        self._stage_count = 0
        self.redraws = 0
        self.grid = grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for key, title in PLOTS.items():
            w = styled_plot(title, ylabel={"loss": "loss", "lr": "learning rate"}.get(key, ""), legend=key != "metric")
            if key == "lr":
                w.getPlotItem().setLogMode(y=True)
            w.getPlotItem().setClipToView(True)
            w.getPlotItem().setDownsampling(auto=True, mode="peak")
            self.plots[key] = w
        grid.addWidget(self.plots["loss"], 0, 0)
        grid.addWidget(self.plots["metric"], 0, 1)
        self.details = True
        self._technique_shown = True
        self._show_technique_plot(False)
        self.show_details(False)
        self._empty = {k: EmptyNote(w, "no data yet") for k, w in self.plots.items()}
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / max_fps))
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def show_details(self, on: bool) -> None:
        """The second row: learning rates per layer group (and the technique's series)."""
        self.details = on
        self.plots["lr"].setVisible(on)
        self.plots["technique"].setVisible(on and self._technique_shown)
        self.grid.setRowStretch(1, 1 if on else 0)

    def _show_technique_plot(self, on: bool) -> None:
        """The technique chart appears once a technique reports a series of its own; until
        then the learning-rate chart takes the whole row."""
        if on == self._technique_shown:
            return
        self._technique_shown = on
        for key in ("lr", "technique"):
            self.grid.removeWidget(self.plots[key])
        if on:
            self.grid.addWidget(self.plots["lr"], 1, 0)
            self.grid.addWidget(self.plots["technique"], 1, 1)
        else:
            self.grid.addWidget(self.plots["lr"], 1, 0, 1, 2)
        self.plots["technique"].setVisible(on and self.details)

    # --- feeding ------------------------------------------------------------------------
    def feed(self, event: dict) -> None:
        """Take one event (cheap: drawing waits for the timer)."""
        self.model.add(event)

    def feed_many(self, events) -> None:
        for e in events:
            self.model.add(e)
        self.redraw()

    def reset(self) -> None:
        for (plot, _name), c in self.curves.items():
            self.plots[plot].removeItem(c)
        for plot, m in self._markers:
            self.plots[plot].removeItem(m)
        self._markers.clear()
        self.curves.clear()
        self._drawn.clear()
        self._stage_count = 0
        self._show_technique_plot(False)
        lg = self.plots["lr"].getPlotItem().legend
        if lg is not None:
            lg.setColumnCount(1)
        self.model = ChartModel()
        for ti in self._empty.values():
            ti.show()
        self.redraw()

    # --- drawing ------------------------------------------------------------------------
    def _curve(self, plot: str, name: str):
        key = (plot, name)
        c = self.curves.get(key)
        if c is None:
            pg = self.pg
            same = [k for k in self.curves if k[0] == plot]
            color = PALETTE[len(same) % len(PALETTE)]
            if plot == "loss":
                color = {"train (batch)": "#9ecae1", "train": "#0072B2", "validation": "#D55E00"}.get(name, color)
            epoch_level = plot in ("loss", "metric") and name != "train (batch)"
            pen = pg.mkPen(color, width=2.2 if epoch_level else 1.4)
            kw = dict(symbol="o", symbolSize=6, symbolBrush=color, symbolPen=None) if epoch_level else {}
            label = name[4:] if plot == "metric" and name.startswith("val_") else name
            c = self.plots[plot].plot([], [], pen=pen, name=label, **kw)
            self.curves[key] = c
            self._empty[plot].hide()
            if plot == "technique":
                self._show_technique_plot(True)
            if plot == "lr":
                lg = self.plots["lr"].getPlotItem().legend
                n = len([k for k in self.curves if k[0] == "lr"])
                if lg is not None and n in (5, 9):
                    lg.setColumnCount(2 if n == 5 else 3)
        return c

    def redraw(self) -> None:
        changed = False
        for key, s in list(self.model.series.items()):
            if not len(s) or self._drawn.get(key) == s.version:
                continue
            x, y = s.data()
            self._curve(*key).setData(x, y)
            self._drawn[key] = s.version
            changed = True
        while self._stage_count < len(self.model.stages):
            x, label = self.model.stages[self._stage_count]
            for plot, w in self.plots.items():
                line = self.pg.InfiniteLine(pos=x, angle=90, movable=False,
                                            pen=self.pg.mkPen("#7f7f7f", width=1, style=self.pg.QtCore.Qt.PenStyle.DashLine),
                                            label=label if plot == "loss" else None,
                                            labelOpts={"position": 0.9, "color": "#555555", "rotateAxis": (1, 0)})
                w.addItem(line)
                self._markers.append((plot, line))
            self._stage_count += 1
            changed = True
        shown = next((n for p, n in self.model.series if p == "metric"), None) or self.model.monitor
        if shown:
            title = f"Validation {shown[4:] if shown.startswith('val_') else shown}"
            if self.model.monitor == "last":
                title += " (the last epoch's model is kept)"
            self.plots["metric"].getPlotItem().setTitle(f"<span style='font-size:10pt; font-weight:600'>{title}</span>")
        if changed:
            self.redraws += 1

    def points(self) -> dict[str, int]:
        return self.model.points()


